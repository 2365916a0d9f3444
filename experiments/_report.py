"""Writing the report folder: report.md, report.html, metrics.json, manifest.json.

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
import shutil
import tempfile
from pathlib import Path

from lesson._common import Claim, Figure

GENERATOR = "mlemap experiments/run.py"


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


# -- the output folder ------------------------------------------------------------------------


def check_out(out: Path) -> str | None:
    """Why ``out`` cannot receive a report, or None. Creates nothing."""
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
    manifest = dict(manifest, generator=GENERATOR, summary=summary(claims))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "report.md").write_text(markdown(folder, results, manifest))
    (folder / "report.html").write_text(to_html(folder, results, manifest))


def summary(claims: list[Claim]) -> dict:
    counts = {"claims": len(claims), "pass": 0, "fail": 0, "error": 0}
    for c in claims:
        counts[c.status] += 1
    return counts


_MARK = {"pass": "✅ pass", "fail": "❌ FAIL", "error": "⚠️ ERROR"}


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _headline(manifest: dict) -> list[str]:
    s = manifest["summary"]
    settings = manifest["settings"]
    return [
        f"{s['pass']} of {s['claims']} claims pass, {s['fail']} fail, {s['error']} "
        f"{'error' if s['error'] == 1 else 'errors'}.",
        f"Run {manifest['started']} · {'quick' if settings['quick'] else 'full'} settings · "
        f"seed {settings['seed']} · {settings['precision']} · JAX on "
        f"{manifest['device']['platform']} ({manifest['device']['device_kind']}) · "
        f"{manifest['total_seconds']:.1f} s.",
    ]


def markdown(folder: Path, results: list[ExperimentResult], manifest: dict) -> str:
    lines = ["# MLE and MAP, checked: the lesson's claims on real data", ""]
    lines += [" ".join(_headline(manifest)), ""]
    lines += ["## Claims", "",
              "| # | experiment | claim | evidence (this run) | tolerance | result |",
              "| --- | --- | --- | --- | --- | --- |"]
    number = 0
    for r in results:
        for c in r.claims:
            number += 1
            evidence = c.evidence if c.error is None else f"`{c.error}`"
            lines.append(
                f"| {number} | {r.name} | {_md_cell(c.claim)} | {_md_cell(evidence)} | "
                f"{_md_cell(c.tolerance)} | {_MARK[c.status]} |"
            )
    corrections = [c for r in results for c in r.claims if c.correction]
    if corrections:
        lines += ["", "## Corrections to the lesson", ""]
        lines += [f"- **{c.experiment}**: {c.correction}" for c in corrections]
    lines += ["", "## Experiments", ""]
    for index, r in enumerate(results, 1):
        lines += [f"### {index}. {r.title} (`{r.name}`)", ""]
        timing = f"{r.seconds:.1f} s, of which {r.compile_seconds:.1f} s compiling."
        lines += [timing, ""]
        if r.error:
            lines += ["The experiment raised:", "", "```", r.error.rstrip(), "```", ""]
        lines += [f"{note}" for note in r.notes] + ([""] if r.notes else [])
        if r.demos:
            lines += ["An interactive version of this figure is in `report.html`.", ""]
        for f in r.figures:
            rel = f.path.relative_to(folder).as_posix()
            lines += [f"![{f.caption}]({rel})", "", f"*{f.caption}*", ""]
    lines += ["## Reproduce", "", "```", manifest["command"], "```", "",
              "Versions, device and timings: `manifest.json`. Every number above: "
              "`metrics.json`.", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;width:100%;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f3f3f3} td.pass{color:#17692a;font-weight:600}
td.fail,td.error{color:#b00020;font-weight:700} code,pre{background:#f6f6f6}
pre{padding:0.6em;overflow-x:auto} figure{margin:1em 0} img{max-width:100%}
figcaption{font-size:0.9em;color:#555} .headline{font-size:1.1em}
"""


def to_html(folder: Path, results: list[ExperimentResult], manifest: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<title>MLE and MAP, checked</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>MLE and MAP, checked: the lesson's claims on real data</h1>"]
    parts += [f"<p class='headline'>{e(line)}</p>" for line in _headline(manifest)]
    parts += ["<h2>Claims</h2><table><tr><th>#</th><th>experiment</th><th>claim</th>"
              "<th>evidence (this run)</th><th>tolerance</th><th>result</th></tr>"]
    number = 0
    for r in results:
        for c in r.claims:
            number += 1
            evidence = e(c.evidence) if c.error is None else f"<code>{e(c.error)}</code>"
            parts.append(
                f"<tr><td>{number}</td><td><a href='#{e(r.name)}'>{e(r.name)}</a></td>"
                f"<td>{e(c.claim)}</td><td>{evidence}</td><td>{e(c.tolerance)}</td>"
                f"<td class='{c.status}'>{e(_MARK[c.status])}</td></tr>"
            )
    parts.append("</table>")
    corrections = [c for r in results for c in r.claims if c.correction]
    if corrections:
        parts.append("<h2>Corrections to the lesson</h2><ul>")
        parts += [f"<li><b>{e(c.experiment)}</b>: {e(c.correction)}</li>" for c in corrections]
        parts.append("</ul>")
    parts.append("<h2>Experiments</h2>")
    for index, r in enumerate(results, 1):
        parts.append(f"<h3 id='{e(r.name)}'>{index}. {e(r.title)} (<code>{e(r.name)}</code>)</h3>")
        parts.append(f"<p>{r.seconds:.1f} s, of which {r.compile_seconds:.1f} s compiling.</p>")
        if r.error:
            parts.append(f"<p>The experiment raised:</p><pre>{e(r.error.rstrip())}</pre>")
        parts += [f"<p>{e(note)}</p>" for note in r.notes]
        parts += r.demos
        for f in r.figures:
            data = base64.b64encode(f.path.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{e(f.caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(f.caption)}</figcaption></figure>")
    parts += ["<h2>Reproduce</h2>", f"<pre>{e(manifest['command'])}</pre>",
              "<details><summary>manifest.json</summary>",
              f"<pre>{e(json.dumps(manifest, indent=2))}</pre></details>", "</body></html>"]
    return "\n".join(parts) + "\n"
