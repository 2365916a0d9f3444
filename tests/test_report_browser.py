"""report.html in a real browser: Debian's chromium, driven by playwright.

The system browser (``.ci/run`` installs it with ``apt-get install -y chromium`` when it is
missing) is launched through ``executable_path``; playwright never downloads one. The page is
opened at a desktop and a phone width, and must: not scroll sideways at 390 px, log no
console error, request nothing but the file itself, show every image, and answer its
controls, from the keyboard: the "toggle the prior" demo shows exact zeros under a strong
Laplace prior, and under a Gaussian prior its MAP moves towards 0 at every step of the
strength slider.

Two pages: one built here from scikit-learn's ridge and lasso paths (fast, in every run),
and the ``--quick`` report itself (slow: it needs the end-to-end run).
"""

import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import _report  # noqa: E402
from lesson import prior_sweep  # noqa: E402
from lesson._common import Claim, Figure, diabetes, panels  # noqa: E402

WIDTHS = (1280, 390)
# Without the background-networking flags chromium keeps trying to reach Google's services,
# which a machine without internet answers with refused connections.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
EMOJI_STATUS = ("✅", "❌", "⚠")


def _chromium() -> str | None:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless chromium with a fresh profile (a temporary user-data-dir)."""
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium found (on PATH or /usr/bin/chromium): install Debian's "
                    "with `apt-get install -y chromium`, as .ci/run does")
    from playwright.sync_api import sync_playwright  # the test extra: pip install -e '.[test]'

    with tempfile.TemporaryDirectory(prefix="mlemap-chromium-") as profile:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
            try:
                yield context
            finally:
                context.close()


# -- what every page must do ------------------------------------------------------------------


def _open(browser, html: Path, width: int):
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    seen = {"errors": [], "requests": []}
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    return page, seen


def check_page(browser, html: Path) -> None:
    url = html.resolve().as_uri()
    for width in WIDTHS:
        page, seen = _open(browser, html, width)
        try:
            images = page.evaluate("Array.from(document.images, i => "
                                   "[i.complete, i.naturalWidth, i.alt])")
            assert images, "no figure on the page"
            for complete, natural_width, alt in images:
                assert complete and natural_width > 0, "an image did not load"
                assert alt.strip(), "an image without alt text"
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"the page scrolls sideways at {width} px ({scroll} px)"
            assert page.locator("meta[name=viewport]").count() == 1
            text = page.inner_text("body")
            assert not any(mark in text for mark in EMOJI_STATUS)
            if page.locator("#prior-demo").count():
                check_demo(page)
            page.wait_for_timeout(200)  # let a late error or request show
            assert seen["errors"] == [], seen["errors"]
            others = [u for u in seen["requests"] if u != url and not u.startswith("data:")]
            assert others == [], f"requests other than the file itself: {others}"
        finally:
            page.close()


def _shown_map(page) -> tuple[np.ndarray, list[bool]]:
    cells = page.eval_on_selector_all(
        "#pd-table td[data-map]", "cells => cells.map(c => [c.dataset.map, c.dataset.zero])")
    return np.array([float(v) for v, _ in cells]), [z == "true" for _, z in cells]


def check_demo(page) -> None:
    """The controls are labelled and work from the keyboard; L1 at a strong prior shows
    exact zeros; under L2 every step to a stronger prior moves the MAP towards 0."""
    unlabelled = page.evaluate("Array.from(document.querySelectorAll('#prior-demo input, "
                               "#prior-demo select'), e => e.labels.length).filter(n => !n)")
    assert unlabelled == [], "a demo control without a label"
    slider = page.locator("#pd-strength")
    steps = int(slider.get_attribute("max")) + 1
    # Gaussian (L2), the default: from the weakest prior to the strongest, one key at a time.
    page.focus("input[name=pd-prior][value=l2]")
    assert page.evaluate("document.querySelector('input[name=pd-prior]:checked').value") == "l2"
    slider.focus()
    page.keyboard.press("Home")
    norms = []
    for step in range(steps):
        shown, zeros = _shown_map(page)
        norms.append(float(np.linalg.norm(shown)))
        assert not any(zeros), "a Gaussian prior set a coefficient to exactly 0"
        if step < steps - 1:
            page.keyboard.press("ArrowRight")
    assert int(slider.input_value()) == steps - 1
    assert all(b < a for a, b in zip(norms, norms[1:])), norms
    assert norms[-1] < 0.05 * norms[0]
    # Laplace (L1) from the keyboard (the radio group's arrow keys), at the strongest prior.
    page.focus("input[name=pd-prior][value=l2]")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.querySelector('input[name=pd-prior]:checked').value") == "l1"
    shown, zeros = _shown_map(page)
    readout = page.locator("#pd-readout")
    assert sum(zeros) >= 1 and all(shown[zeros] == 0.0)
    assert int(readout.get_attribute("data-zeros")) == sum(zeros)
    assert f"{sum(zeros)} of {len(zeros)} coefficients exactly 0" in readout.inner_text()
    assert "Lasso(alpha" in readout.inner_text()
    # No prior: the MAP shown is the MLE, whatever the slider says.
    page.check("input[name=pd-prior][value=none]")
    mle, _ = _shown_map(page)
    assert slider.is_disabled()
    assert float(np.linalg.norm(mle)) > norms[0] * 0.99


# -- a page built here, fast ------------------------------------------------------------------


def _demo_payload(steps=9):
    """The demo's data from scikit-learn and numpy, not from mlemap: this test is about the
    page, and the lesson's claims check mlemap's numbers against these references."""
    from sklearn.linear_model import Lasso, LinearRegression

    X, y, names = diabetes()
    n, d = X.shape
    sigma = prior_sweep.SIGMA
    sds = np.logspace(*prior_sweep.SD_RANGE, steps)
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    l2, l2_sd = [], []
    for s in sds:
        cov = np.linalg.inv(Xc.T @ Xc / sigma**2 + np.eye(d) / s**2)
        l2.append(cov @ Xc.T @ yc / sigma**2)
        l2_sd.append(np.sqrt(np.diag(cov)))
    lasso_alpha = sigma**2 / (n * sds / math.sqrt(2))
    l1 = [Lasso(alpha=a, tol=1e-10, max_iter=100_000).fit(X, y).coef_ for a in lasso_alpha]
    return {"names": names, "n": n, "sigma": sigma, "sd": sds,
            "mle": LinearRegression().fit(X, y).coef_, "l2": np.array(l2),
            "l2_sd": np.array(l2_sd), "l1": np.array(l1), "ridge_alpha": sigma**2 / sds**2,
            "lasso_alpha": lasso_alpha, "focus": names.index(prior_sweep.FOCUS)}


def _page_here(folder: Path) -> Path:
    (folder / "figures").mkdir()
    fig, (ax,) = panels(1)
    ax.plot([0, 1], [0, 1])
    ax.set_title("A figure")
    path = folder / "figures" / "demo_line.png"
    fig.savefig(path)
    claims = [Claim("demo", "a claim that holds", "1 = 1", "exact", True),
              Claim("demo", "the lesson's number", "5.03 against 100", "exact", True,
                    correction="It is 5.03x, not 100x.", corrected="100x is 5.03x")]
    result = _report.ExperimentResult(
        "demo", "Toggle the prior", claims, {}, [Figure(path, "A caption.", "A line.")],
        [prior_sweep.demo_html(_demo_payload())], ["A note."], 1.0, 0.5,
        explanation="A paragraph with `code`.\n\nAnd a second, long enough to wrap on a phone.")
    manifest = {"started": "2026-12-01T00:00:00+00:00", "reproduce":
                ".venv/bin/python experiments/run.py --quick --out /a/very/long/path/" + "x" * 80,
                "settings": {"quick": True, "seed": 0, "precision": "float64"},
                "device": {"platform": "cpu", "device_kind": "cpu"}, "total_seconds": 1.0}
    _report.write(folder, [result], manifest)
    return folder / "report.html"


def test_a_page_built_here_reads_and_answers_in_a_browser(browser, tmp_path):
    html = _page_here(tmp_path)
    assert "2 of 2 claims pass; one claim of the lesson corrected: 100x is 5.03x" in (
        html.read_text())
    check_page(browser, html)


# -- the --quick report -----------------------------------------------------------------------


@pytest.mark.slow
def test_quick_report_reads_and_answers_in_a_browser(browser, quick_report):
    result, out, only = quick_report
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    check_page(browser, out / "report.html")
