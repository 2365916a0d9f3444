"""Writing the report folder: report.md, report.html, metrics.json, manifest.json.

The page follows the lesson: a summary line computed from the claims, a table of contents,
then one section per experiment (its explanation, its figures, its claims beneath as the
evidence), the full claims table, and how to reproduce the run. report.html is one file that
opens offline (figures embedded as data, the demo's data and script inline, no request
leaves the page) and reads on a phone (a viewport, figures that stack, tables that scroll
in their own box).

The folder is built in a temporary sibling of ``--out`` and renamed into place only when it
is complete (:func:`atomic_folder`), so an interrupted or failed run leaves the previous
report whole. No JAX here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from lesson._common import CSS_PX_PER_INCH, SAVE_DPI, Claim, Figure, png_size

GENERATOR = "mlemap experiments/run.py"
TITLE = "MLE and MAP, checked: the lesson's claims on real data"
INTRODUCTION = (
    "Every common loss is a negative log-likelihood and every common penalty a log-prior: "
    "minimizing loss + penalty finds the MAP, the mode of a posterior that can also be "
    "sampled. Each section below takes one idea of the lesson, shows it on data (mostly "
    "scikit-learn's shipped datasets) and checks it against scikit-learn, statsmodels, scipy "
    "or a closed form. The claims under each figure are the evidence: every number on this "
    "page was computed by the run that wrote it."
)


@dataclasses.dataclass
class ExperimentResult:
    name: str
    title: str
    claims: list[Claim]
    metrics: dict
    figures: list[Figure]
    demos: list[str]
    notes: list[str]
    seconds: float
    compile_seconds: float
    error: str | None = None
    cpu_seconds: float = 0.0  # the process's CPU time (all its threads) during the experiment
    explanation: str = ""  # the section's idea, in paragraphs (its module's EXPLANATION)


# -- the output folder ------------------------------------------------------------------------


def check_out(out: Path) -> str | None:
    """Why ``out`` cannot receive a report, or None.

    Besides the permissions it tries what the run will do, creating and removing a folder
    where the report's would be built, so that a file system which refuses (``/proc``, a
    read-only mount) is a usage error before anything runs. Leaves nothing behind.
    """
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            return f"--out {out} exists and is not a folder."
        if any(out.iterdir()) and not is_report(out):
            return (f"--out {out} is a folder that holds something other than an mlemap report "
                    "(no manifest.json written by experiments/run.py); it would be replaced. "
                    "Choose a new or empty folder.")
    ancestor = out.parent
    while not ancestor.exists():
        if ancestor.is_symlink():
            return f"--out {out}: {ancestor} is a broken link."
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"--out {out}: {ancestor} is a file, so no folder can be created under it."
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"--out {out}: {ancestor} is not writable."
    try:
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=ancestor)
        os.rmdir(probe)
    except OSError as exc:
        return (f"--out {out}: no folder can be created in {ancestor} "
                f"({exc.strerror or exc}). Choose a folder you can write to, e.g. "
                "--out results/report.")
    return None


def is_report(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


@contextlib.contextmanager
def atomic_folder(out: Path):
    """Yield a fresh temporary folder next to ``out``; on success it replaces ``out``.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and ``out``
    is left as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- writers ----------------------------------------------------------------------------------


def write(folder: Path, results: list[ExperimentResult], manifest: dict) -> None:
    metrics = {r.name: r.metrics for r in results}
    claims = [c for r in results for c in r.claims]
    metrics["_summary"] = summary(claims)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    manifest = dict(manifest, generator=GENERATOR, summary=summary(claims),
                    summary_line=summary_line(results))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "report.md").write_text(markdown(folder, results, manifest))
    (folder / "report.html").write_text(to_html(folder, results, manifest))


def summary(claims: list[Claim]) -> dict:
    counts = {"claims": len(claims), "pass": 0, "fail": 0, "error": 0}
    for c in claims:
        counts[c.status] += 1
    return counts


_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _count(n: int, noun: str) -> str:
    word = _WORDS[n] if n < len(_WORDS) else str(n)
    return f"{word} {noun}{'' if n == 1 else 's'}"


def summary_line(results: list[ExperimentResult]) -> str:
    """"41 of 41 claims pass; one claim of the lesson corrected: 100x is 5.03x", from the
    claims of this run (failures and errors named first when there are any)."""
    claims = [c for r in results for c in r.claims]
    s = summary(claims)
    parts = [f"{s['pass']} of {s['claims']} claims pass"]
    if s["fail"]:
        parts.append(f"{s['fail']} {'fails' if s['fail'] == 1 else 'fail'}")
    if s["error"]:
        parts.append(f"{s['error']} {'experiment raised' if s['error'] == 1 else 'raised'}")
    line = ", ".join(parts)
    corrected = [c.corrected or c.claim for c in claims if c.correction]
    if corrected:
        line += (f"; {_count(len(corrected), 'claim')} of the lesson corrected: "
                 + "; ".join(corrected))
    return line


def _numbered(results):
    """(result, [(global number, claim), ...]) in report order."""
    number, out = 0, []
    for r in results:
        rows = []
        for c in r.claims:
            number += 1
            rows.append((number, c))
        out.append((r, rows))
    return out


def _status_counts(claims) -> str:
    s = summary(claims)
    if not s["claims"]:
        return "no claims"
    if s["pass"] == s["claims"]:
        return f"{s['claims']} of {s['claims']} pass"
    bad = s["fail"] + s["error"]
    return f"{s['pass']} of {s['claims']} pass, {bad} {'does' if bad == 1 else 'do'} not"


def _run_line(manifest: dict) -> str:
    settings = manifest["settings"]
    return (f"Run {manifest['started']} · {'quick' if settings['quick'] else 'full'} settings · "
            f"seed {settings['seed']} · {settings['precision']} · JAX on "
            f"{manifest['device']['platform']} ({manifest['device']['device_kind']}) · "
            f"{manifest['total_seconds']:.1f} s.")


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


_MD_MARK = {"pass": "pass", "fail": "**FAIL**", "error": "**ERROR**"}


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def markdown(folder: Path, results: list[ExperimentResult], manifest: dict) -> str:
    numbered = _numbered(results)
    lines = [f"# {TITLE}", "", f"**{manifest['summary_line']}.**", "", _run_line(manifest), "",
             INTRODUCTION, "", "## Contents", ""]
    lines += [f"{i}. [{r.title}](#{r.name}) ({_status_counts(r.claims)})"
              for i, (r, _) in enumerate(numbered, 1)]
    lines += [f"{len(numbered) + 1}. [All claims](#all-claims)", ""]
    for index, (r, rows) in enumerate(numbered, 1):
        lines += [f'<a id="{r.name}"></a>', "", f"## {index}. {r.title}", ""]
        lines += [p + "\n" for p in _paragraphs(r.explanation)]
        if r.error:
            lines += ["The experiment raised:", "", "```", r.error.rstrip(), "```", ""]
        if r.demos:
            lines += ["*An interactive version of this section is in `report.html`.*", ""]
        for f in r.figures:
            rel = f.path.relative_to(folder).as_posix()
            lines += [f"![{_md_cell(f.alt or f.caption)}]({rel})", "", f"*{f.caption}*", ""]
        lines += [p + "\n" for n in r.notes for p in _paragraphs(n)]
        lines += [f"**Evidence** ({_status_counts(r.claims)}):", ""]
        for number, c in rows:
            evidence = c.evidence if c.error is None else f"`{c.error}`"
            lines.append(f"{number}. {_MD_MARK[c.status]}: {c.claim}. Measured: {evidence}"
                         + (f". Needs: {c.tolerance}." if c.tolerance else ""))
        lines += ["", f"*{r.seconds:.1f} s, of which {r.compile_seconds:.1f} s compiling.*", ""]
    lines += ['<a id="all-claims"></a>', "", "## All claims", "",
              "| # | experiment | claim | evidence (this run) | tolerance | result |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r, rows in numbered:
        for number, c in rows:
            evidence = c.evidence if c.error is None else f"`{c.error}`"
            lines.append(f"| {number} | {r.name} | {_md_cell(c.claim)} | {_md_cell(evidence)} | "
                         f"{_md_cell(c.tolerance)} | {_MD_MARK[c.status]} |")
    corrections = [c for r in results for c in r.claims if c.correction]
    if corrections:
        lines += ["", "## Corrections to the lesson", ""]
        lines += [f"- **{c.experiment}**: {c.correction}" for c in corrections]
    lines += ["", "## Reproduce", "", "After the set-up in README.md "
              "(`bash scripts/bootstrap.sh`):", "", "```", manifest["reproduce"], "```", "",
              "Versions, device and timings: `manifest.json`. Every number above: "
              "`metrics.json`.", ""]
    return "\n".join(lines)


_CSS = """
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;
color:#1f2328;background:#fff;overflow-wrap:break-word}
main{max-width:1100px;margin:0 auto;padding:0 16px 4em}
h1{font-size:1.75em;line-height:1.2;margin:1.2em 0 .5em}
h2{font-size:1.35em;line-height:1.25;margin:0 0 .5em}
a{color:#0a58ca} code{font-size:.92em;background:#f3f4f6;padding:0 .2em;border-radius:3px}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;max-width:100%;font-size:.85em}
pre.cmd{white-space:pre-wrap;overflow-wrap:anywhere}
.summary{font-size:1.15em;font-weight:650;margin:.4em 0;padding:.6em .9em;
border-left:6px solid #1a7f37;background:#effaf1}
.summary.bad{border-left-color:#b42318;background:#fdf0ef}
.run,.timing{color:#57606a;font-size:.88em}
nav.toc{background:#f6f8fa;padding:.6em 1em;border-radius:6px;margin:1.2em 0}
nav.toc h2{font-size:1.05em;margin:.2em 0} nav.toc ol{margin:.3em 0;padding-left:1.6em}
nav.toc .count{color:#57606a;font-size:.88em;white-space:nowrap}
section{border-top:1px solid #d0d7de;margin-top:2.4em;padding-top:1.2em}
.lede{max-width:46em}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,430px),1fr));
gap:1.4em 1.6em;align-items:start;margin:1.2em 0}
figure{margin:0;min-width:0} figure img{display:block;width:100%;height:auto;margin:0 auto}
figcaption{font-size:.9em;color:#444c56;margin-top:.35em}
.status{display:inline-block;font-weight:700;font-size:.78em;letter-spacing:.04em;
text-transform:uppercase;padding:.05em .45em;border-radius:4px;white-space:nowrap;
vertical-align:.1em}
.status.pass{color:#0f5323;background:#dafbe1;border:1px solid #8fd19e}
.status.fail,.status.error{color:#fff;background:#b42318;border:1px solid #b42318}
details.evidence{margin:1em 0;border:1px solid #d0d7de;border-radius:6px;padding:.3em .9em}
details.evidence summary{cursor:pointer;font-weight:600;padding:.3em 0}
ol.claims{padding-left:1.6em;margin:.4em 0} ol.claims li{margin:.7em 0}
ol.claims .measure{font-size:.92em;color:#30363d;margin:.15em 0 0}
ol.claims .measure b{font-weight:600;color:#57606a}
.correction{border-left:6px solid #9a6700;background:#fff8c5;padding:.5em .9em;margin:1em 0}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #d0d7de;border-radius:6px}
table{border-collapse:collapse;font-size:.88em;min-width:760px;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f6f8fa;position:sticky;top:0}
:focus-visible{outline:3px solid #0a58ca;outline-offset:2px}
@media (max-width:600px){body{font-size:15px} h1{font-size:1.45em} main{padding:0 12px 3em}}
"""


def _image(f: Figure) -> str:
    e = html.escape
    width, height = png_size(f.path)
    css_w = round(width * CSS_PX_PER_INCH / SAVE_DPI)
    css_h = round(height * CSS_PX_PER_INCH / SAVE_DPI)
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{e(f.alt or f.caption, quote=True)}' width='{css_w}' "
            f"height='{css_h}' style='max-width:{css_w}px' "
            f"src='data:image/png;base64,{data}'><figcaption>{e(f.caption)}</figcaption>"
            "</figure>")


def _inline(text: str) -> str:
    """Escape, then `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _evidence_html(rows, open_: bool) -> list[str]:
    e = html.escape
    claims = [c for _, c in rows]
    parts = [f"<details class='evidence'{' open' if open_ else ''}><summary>The evidence: "
             f"{_count(len(claims), 'claim')}, {_status_counts(claims)}</summary>",
             "<ol class='claims'>"]
    for number, c in rows:
        evidence = e(c.evidence) if c.error is None else f"<code>{e(c.error)}</code>"
        parts.append(
            f"<li value='{number}'><span class='status {c.status}'>{c.status}</span> "
            f"{e(c.claim)}<p class='measure'><b>Measured:</b> {evidence}"
            + (f"<br><b>Needs:</b> {e(c.tolerance)}" if c.tolerance else "") + "</p></li>")
    parts += ["</ol></details>"]
    return parts


def _section_html(index: int, r: ExperimentResult, rows) -> list[str]:
    e = html.escape
    bad = any(c.status != "pass" for _, c in rows)
    parts = [f"<section id='{e(r.name)}' aria-labelledby='{e(r.name)}-h'>",
             f"<h2 id='{e(r.name)}-h'>{index}. {e(r.title)}</h2><div class='lede'>"]
    parts += [f"<p>{_inline(p)}</p>" for p in _paragraphs(r.explanation)]
    parts.append("</div>")
    if r.error:
        parts.append(f"<p>The experiment raised:</p><pre>{e(r.error.rstrip())}</pre>")
    parts += r.demos
    if r.figures:
        parts += ["<div class='figs'>", *map(_image, r.figures), "</div>"]
    parts += [f"<p>{_inline(p)}</p>" for n in r.notes for p in _paragraphs(n)]
    parts += [f"<p class='correction'><b>The lesson corrected:</b> {e(c.correction)}</p>"
              for _, c in rows if c.correction]
    parts += _evidence_html(rows, open_=bad)
    parts += [f"<p class='timing'>{r.seconds:.1f} s, of which {r.compile_seconds:.1f} s "
              "compiling.</p></section>"]
    return parts


def _claims_table_html(numbered) -> list[str]:
    e = html.escape
    parts = ["<section id='all-claims' aria-labelledby='all-claims-h'>",
             "<h2 id='all-claims-h'>All claims</h2>",
             "<div class='scroll' tabindex='0' role='region' aria-label='All claims, a table "
             "that scrolls sideways'><table><thead><tr><th scope='col'>#</th>"
             "<th scope='col'>experiment</th><th scope='col'>claim</th>"
             "<th scope='col'>evidence (this run)</th><th scope='col'>tolerance</th>"
             "<th scope='col'>result</th></tr></thead><tbody>"]
    for r, rows in numbered:
        for number, c in rows:
            evidence = e(c.evidence) if c.error is None else f"<code>{e(c.error)}</code>"
            parts.append(
                f"<tr><td>{number}</td><td><a href='#{e(r.name)}'>{e(r.name)}</a></td>"
                f"<td>{e(c.claim)}</td><td>{evidence}</td><td>{e(c.tolerance)}</td>"
                f"<td><span class='status {c.status}'>{c.status}</span></td></tr>")
    parts.append("</tbody></table></div></section>")
    return parts


def to_html(folder: Path, results: list[ExperimentResult], manifest: dict) -> str:
    e = html.escape
    numbered = _numbered(results)
    s = manifest["summary"]
    good = s["fail"] == 0 and s["error"] == 0
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{e(TITLE)}</title>", f"<style>{_CSS}</style></head><body><main>",
             f"<h1>{e(TITLE)}</h1>",
             f"<p class='summary{'' if good else ' bad'}' role='status'>"
             f"{e(manifest['summary_line'])}.</p>",
             f"<p class='run'>{e(_run_line(manifest))}</p>", f"<p>{e(INTRODUCTION)}</p>",
             "<nav class='toc' aria-labelledby='toc-h'><h2 id='toc-h'>Contents</h2><ol>"]
    parts += [f"<li><a href='#{e(r.name)}'>{e(r.title)}</a> <span class='count'>"
              f"({_status_counts(r.claims)})</span></li>" for r, _ in numbered]
    parts += ["<li><a href='#all-claims'>All claims</a></li>",
              "<li><a href='#reproduce'>Reproduce</a></li></ol></nav>"]
    for index, (r, rows) in enumerate(numbered, 1):
        parts += _section_html(index, r, rows)
    parts += _claims_table_html(numbered)
    parts += ["<section id='reproduce' aria-labelledby='reproduce-h'>",
              "<h2 id='reproduce-h'>Reproduce</h2>",
              "<p>After the set-up in README.md (<code>bash scripts/bootstrap.sh</code>):</p>",
              f"<pre class='cmd'>{e(manifest['reproduce'])}</pre>",
              "<details><summary>manifest.json: versions, device, timings</summary>",
              f"<pre>{e(json.dumps(manifest, indent=2))}</pre></details></section>",
              "</main></body></html>"]
    return "\n".join(parts) + "\n"
