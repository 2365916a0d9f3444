"""What every experiment shares: the run context, claims, tolerances, data and figures.

An experiment is a function ``run(ctx: Context) -> None``. It measures, then records through
``ctx``: claims (``ctx.check``, ``ctx.compare``), the numbers the report quotes
(``ctx.metric``), figures (``ctx.figure``) and, for the prior sweep, an interactive HTML
fragment (``ctx.demo``). Nothing here imports JAX at module level: the runner configures
JAX's platform and precision before any experiment module is imported.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of the claims table.

    ``passed`` is ``None`` for an experiment that raised (``error`` then holds the message).
    ``correction`` holds the corrected wording when the lesson's own statement is wrong, and
    ``corrected`` the same in a few words for the report's summary line ("100x is 5.03x").
    """

    experiment: str
    claim: str
    evidence: str
    tolerance: str
    passed: bool | None
    error: str | None = None
    correction: str | None = None
    corrected: str | None = None

    @property
    def status(self) -> str:
        if self.passed is None:
            return "error"
        return "pass" if self.passed else "fail"


@dataclasses.dataclass
class Figure:
    path: Path  # absolute, inside the report being built
    caption: str
    alt: str = ""  # what the figure shows, for a reader who cannot see it


# -- figures -----------------------------------------------------------------------------------

#: Figures are drawn narrow, with panels stacked, so that a phone (390 px wide) shows them at
#: about three quarters of their size: 5.2 in at 96 CSS px per inch is 500 px, and 12 pt
#: labels stay about 12 px high on the phone. The page sets two side by side on a wide screen.
FIG_WIDTH = 5.2
SAVE_DPI = 150
CSS_PX_PER_INCH = 96
STYLE = {
    "font.size": 12, "axes.titlesize": 12.5, "axes.labelsize": 12, "xtick.labelsize": 11,
    "ytick.labelsize": 11, "legend.fontsize": 10, "legend.title_fontsize": 10,
    "axes.titlelocation": "left", "axes.titleweight": "bold", "axes.spines.top": False,
    "axes.spines.right": False, "figure.constrained_layout.use": True, "figure.dpi": 100,
    "savefig.dpi": SAVE_DPI, "lines.linewidth": 1.8, "axes.grid": True, "grid.alpha": 0.25,
}


def use_style() -> None:
    """The report's figure style (matplotlib's rcParams), for this process."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)


def panels(nrows=1, *, height=3.2, width=FIG_WIDTH, **kwargs):
    """A figure of ``nrows`` stacked panels, ``height`` inches each: (figure, axes)."""
    import matplotlib.pyplot as plt

    use_style()
    fig, axes = plt.subplots(nrows, 1, figsize=(width, height * nrows), squeeze=False,
                             **kwargs)
    return fig, list(axes[:, 0])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, read from a PNG's header."""
    with open(path, "rb") as f:
        header = f.read(24)
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


class Context:
    """The state an experiment records into, and the settings it reads.

    Parameters
    ----------
    name : str
        The experiment's registry name; figure files and metric keys are prefixed with it.
    quick : bool
        Smaller settings, same claims.
    seed : int
        The run's seed; each experiment derives its own generator from ``(seed, name)`` so
        that ``--only`` does not change any experiment's numbers.
    precision : {"float64", "float32"}
    figures_dir : Path
    progress : callable
        ``progress(message)`` prints one indented line under the experiment's progress line.
    """

    def __init__(self, name, *, quick, seed, precision, figures_dir, progress):
        self.name = name
        self.quick = bool(quick)
        self.seed = int(seed)
        self.precision = precision
        self.figures_dir = Path(figures_dir)
        self.progress = progress
        self.rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        use_style()
        self.claims: list[Claim] = []
        self.metrics: dict[str, Any] = {}
        self.figures: list[Figure] = []
        self.demos: list[str] = []
        self.notes: list[str] = []

    # -- settings ---------------------------------------------------------------------------

    def tol(self, float64: float, float32: float) -> float:
        """A tolerance for the run's precision."""
        return float64 if self.precision == "float64" else float32

    def size(self, full, quick):
        return quick if self.quick else full

    # -- recording --------------------------------------------------------------------------

    def metric(self, key: str, value):
        """Record a number (or list, or string) that the report quotes; return it."""
        self.metrics[key] = _plain(value)
        return value

    def check(self, claim, *, evidence, tolerance, passed, correction=None,
              corrected=None) -> bool:
        """Record a claim; ``correction`` (and its short form ``corrected``) when the lesson's
        own statement is wrong."""
        passed = bool(passed)
        self.claims.append(
            Claim(self.name, claim, evidence, tolerance, passed, correction=correction,
                  corrected=corrected if correction else None)
        )
        return passed

    def compare(self, claim, ours, reference, *, tol, key, ours_name="mlemap",
                reference_name="reference") -> bool:
        """Claim that two arrays agree: max|ours - reference| / max|reference| <= tol."""
        err = rel_error(ours, reference)
        self.metric(f"{key}.rel_error", err)
        self.metric(f"{key}.tolerance", tol)
        return self.check(
            claim,
            evidence=f"max |{ours_name} − {reference_name}| / max |{reference_name}| = {err:.1e}",
            tolerance=f"≤ {tol:.0e}",
            passed=err <= tol,
        )

    def figure(self, fig, name: str, caption: str, alt: str | None = None) -> Path:
        """Save a matplotlib figure as ``figures/<experiment>_<name>.png`` and close it.

        ``caption`` is printed under it; ``alt`` (default: the caption) describes it for a
        reader who cannot see it.
        """
        import matplotlib.pyplot as plt

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        path = self.figures_dir / f"{self.name}_{name}.png"
        fig.savefig(path, dpi=SAVE_DPI, bbox_inches="tight", pad_inches=0.06)
        plt.close(fig)
        self.figures.append(Figure(path, caption, alt or caption))
        return path

    def demo(self, html_fragment: str) -> None:
        """An interactive, self-contained HTML fragment (inline JS and data) for report.html."""
        self.demos.append(html_fragment)

    def note(self, text: str) -> None:
        """A sentence for the experiment's section of the report."""
        self.notes.append(text)


def quietly(fn, *args, **kwargs):
    """Call fn, returning (result, [mlemap warning messages]); other warnings are dropped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    messages = [f"{w.category.__name__}: {w.message}" for w in caught
                if type(w.message).__module__.startswith("mlemap")]
    return out, messages


def rel_error(ours, reference) -> float:
    """max|ours - reference| / max|reference| (scale-aware, safe at zero entries)."""
    ours = np.asarray(ours, dtype=float)
    reference = np.asarray(reference, dtype=float)
    scale = max(float(np.max(np.abs(reference))), np.finfo(float).tiny)
    return float(np.max(np.abs(ours - reference)) / scale)


def _plain(value):
    """numpy / jax values -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return array.tolist()
    if array.dtype.kind in "iu":
        return array.tolist()
    if array.dtype.kind == "f":
        out = array.astype(float).tolist()
        return _finite(out)
    return str(value)


def _finite(x):
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x if math.isfinite(x) else str(x)


# -- data (all shipped with the packages: nothing is downloaded) -----------------------------


def standardize(X):
    X = np.asarray(X, dtype=float)
    return (X - X.mean(axis=0)) / X.std(axis=0)


def diabetes():
    """scikit-learn's diabetes: 442 patients, 10 standardized features, disease progression."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    return standardize(bunch.data), bunch.target.astype(float), list(bunch.feature_names)


BREAST_CANCER_FEATURES = [
    "mean radius", "mean texture", "mean smoothness", "mean concavity", "mean symmetry",
]
WINE_FEATURES = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash"]


def breast_cancer(features=BREAST_CANCER_FEATURES):
    """scikit-learn's breast cancer (569 tumours, 1 = benign), standardized features.

    The default five features have a finite MLE; all thirty separate the classes almost
    perfectly, so their MLE does not exist (statsmodels' Logit fails) while the MAP does.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = list(bunch.feature_names)
    columns = [names.index(f) for f in features] if features is not None else range(len(names))
    X = bunch.data[:, list(columns)]
    return standardize(X), bunch.target.astype(float), [names[c] for c in columns]


def wine(features=WINE_FEATURES):
    """scikit-learn's wine (178 wines, 3 cultivars), standardized features."""
    from sklearn.datasets import load_wine

    bunch = load_wine()
    names = list(bunch.feature_names)
    columns = [names.index(f) for f in features] if features is not None else range(len(names))
    X = bunch.data[:, list(columns)]
    return standardize(X), bunch.target.astype(int), [names[c] for c in columns]


def fmt(x, digits=4) -> str:
    """A number as the report prints it."""
    return f"{float(x):.{digits}g}"
