"""experiments/run.py end to end (`--quick`, what CI runs), its command line, and the report
folder's atomic replacement."""

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import run_experiments

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "experiments" / "run.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_runner():
    spec = importlib.util.spec_from_file_location("mlemap_experiments_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
_report = sys.modules["_report"]
_runner = sys.modules["_runner"]
lesson = sys.modules["lesson"]


def _run(*args, timeout=60):
    return run_experiments(*args, timeout=timeout)


# -- end to end (the quick_report fixture, in conftest.py, runs --quick once per session) -----


@pytest.mark.slow
def test_quick_run_passes_and_writes_every_file(quick_report):
    result, out, only = quick_report
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in ("report.md", "report.html", "metrics.json", "manifest.json", "figures"):
        assert (out / name).exists(), name
    # A line when each experiment starts, and one when it ends, in that order.
    for name in only:
        assert f"  start {name}:" in result.stdout
        assert f"] {name}:" in result.stdout
        assert result.stdout.index(f"  start {name}:") < result.stdout.index(f"] {name}:")
    # No temporary folder is left next to the report.
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".report.")] == []


@pytest.mark.slow
def test_quick_report_contents(quick_report):
    result, out, only = quick_report
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert manifest["settings"]["quick"] is True
    assert manifest["settings"]["seed"] == 0
    assert manifest["device"]["platform"] == "cpu"
    for package in ("mlemap", "jax", "numpyro", "optax", "arviz", "scikit-learn", "statsmodels"):
        assert manifest["versions"][package], package
    assert set(manifest["experiments"]) == set(only)
    assert manifest["settings"]["jobs"] == min(2, os.cpu_count() or 1, len(only))
    assert "--xla_backend_optimization_level=" in manifest["xla_flags"]
    for timing in manifest["experiments"].values():
        assert timing["seconds"] >= timing["compile_seconds"] >= 0
        assert timing["status"] == "pass"
    assert set(only) <= set(metrics)
    assert metrics["_summary"]["fail"] == 0 and metrics["_summary"]["error"] == 0
    assert metrics["_summary"]["claims"] == metrics["_summary"]["pass"] >= 2 * len(only)

    figures = sorted((out / "figures").glob("*.png"))
    assert figures
    for figure in figures:
        assert figure.read_bytes()[:8] == PNG_MAGIC, figure

    markdown = (out / "report.md").read_text()
    assert "| claim | evidence (this run) | tolerance | result |" in markdown
    assert markdown.count(" | pass |") == metrics["_summary"]["claims"]
    for figure in figures:
        assert f"(figures/{figure.name})" in markdown

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "http://" not in html and "https://" not in html
    assert "<img src='figures/" not in html  # embedded, not linked
    if "prior_sweep" in only:
        assert "id='prior_sweep'" in html and 'id="prior-demo"' in html
        assert '<script type="application/json" id="pd-data">' in html
    for text in (markdown, html):  # status in words, never an emoji box
        assert not any(mark in text for mark in ("✅", "❌", "⚠"))


@pytest.mark.slow
def test_quick_report_reads_as_the_lesson(quick_report):
    """The summary line first, computed; then the sections in the lesson's order, each with
    its claims as evidence; the full table at the end; a reproduce line that works."""
    result, out, only = quick_report
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["_summary"]
    line = manifest["summary_line"]
    assert line.startswith(f"{s['pass']} of {s['claims']} claims pass")
    if "quick_checks" in only:  # the lesson's 100x, corrected by the number this run measured
        ratio = metrics["quick_checks"]["confident_mistake.ratio"]
        assert f"one claim of the lesson corrected: 100x is {ratio:.2f}x" in line
    markdown = (out / "report.md").read_text()
    assert markdown.splitlines()[2] == f"**{line}.**"
    titles = [lesson.BY_NAME[name].title for name in only]
    positions = [markdown.index(f"## {i}. {title}") for i, title in enumerate(titles, 1)]
    assert positions == sorted(positions)
    assert markdown.index("## All claims") > positions[-1]
    assert "**Evidence**" in markdown and "Measured:" in markdown
    assert ".venv/bin/python experiments/run.py --quick" in markdown
    html = (out / "report.html").read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    assert "<nav class='toc'" in html and html.count("<details class='evidence'") == len(only)
    assert html.index("class='summary") < html.index("<nav class='toc'") < html.index(
        "id='all-claims'")


# -- command line -----------------------------------------------------------------------------


def test_list_prints_every_experiment():
    result = _run("--list")
    assert result.returncode == 0, result.stderr
    for experiment in lesson.EXPERIMENTS:
        assert experiment.name in result.stdout


def test_help_explains_every_flag():
    result = _run("--help")
    assert result.returncode == 0
    for flag in ("--quick", "--only", "--list", "--out", "--seed", "--platform", "--precision",
                 "--cache-dir", "--jobs"):
        assert flag in result.stdout


def test_unknown_experiment_is_a_usage_error(tmp_path):
    out = tmp_path / "report"
    result = _run("--only", "quick_checks,no_such_thing", "--out", out)
    assert result.returncode == 2
    assert "unknown experiment 'no_such_thing'" in result.stderr
    assert "gaussian_mle" in result.stderr  # lists the valid names
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_out_where_no_folder_can_be_made_is_a_usage_error():
    result = _run("--only", "quick_checks", "--out", "/proc/report")
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr and "no folder can be created in /proc" in result.stderr
    assert "Traceback" not in result.stderr


def test_out_under_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = _run("--only", "quick_checks", "--out", blocker / "report")
    assert result.returncode == 2
    assert "is a file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_out_that_is_a_foreign_folder_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = _run("--only", "quick_checks", "--out", tmp_path)
    assert result.returncode == 2
    assert "other than an mlemap report" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("args", [["--bogus"], ["--precision", "float16"],
                                  ["--platform", "abacus"], ["--seed", "x"], ["--jobs", "0"]])
def test_bad_flags_are_usage_errors(tmp_path, args):
    result = _run(*args, "--out", tmp_path / "report")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_quick_xla_flags_leave_a_level_that_is_set_alone(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert _runner.add_xla_flags(_runner.QUICK_XLA_FLAGS) == "--xla_backend_optimization_level=0"
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=2 --xla_dump_to=/tmp/x")
    assert _runner.add_xla_flags(_runner.QUICK_XLA_FLAGS) == (
        "--xla_backend_optimization_level=2 --xla_dump_to=/tmp/x")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert _runner.add_xla_flags(_runner.QUICK_XLA_FLAGS) == (
        "--xla_dump_to=/tmp/x --xla_backend_optimization_level=0")


# -- in process: atomic folder, failing experiments -------------------------------------------


def _old_report(folder: Path) -> None:
    folder.mkdir()
    (folder / "report.md").write_text("old")
    (folder / "manifest.json").write_text(json.dumps({"generator": _report.GENERATOR}))


def test_interrupted_build_leaves_previous_report_whole(tmp_path):
    out = tmp_path / "report"
    _old_report(out)
    with pytest.raises(KeyboardInterrupt):
        with _report.atomic_folder(out) as tmp:
            (tmp / "report.md").write_text("half")
            raise KeyboardInterrupt
    assert (out / "report.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_completed_build_replaces_previous_report(tmp_path):
    out = tmp_path / "report"
    _old_report(out)
    assert _report.check_out(out) is None  # an earlier report may be replaced
    with _report.atomic_folder(out) as tmp:
        (tmp / "report.md").write_text("new")
    assert (out / "report.md").read_text() == "new"
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_raising_experiment_becomes_an_error_row(tmp_path, capsys):
    def explode(ctx):
        ctx.check("a claim checked before the error", evidence="1 = 1", tolerance="exact",
                  passed=True)
        raise ValueError("the data were wrong")

    experiment = lesson.Experiment("boom", "An experiment that raises", "unused")
    object.__setattr__(experiment, "load", lambda: explode)
    args = runner.build_parser().parse_args(["--quick"])
    result = runner.run_experiment(experiment, 1, 1, args, tmp_path, runner.CompileClock())
    assert [c.status for c in result.claims] == ["pass", "error"]
    assert result.claims[-1].error == "ValueError: the data were wrong"
    assert "Traceback" in result.error
    assert "ERROR ValueError: the data were wrong" in capsys.readouterr().out


def test_heartbeat_says_what_runs_and_for_how_long(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "HEARTBEAT_SECONDS", 0.3)

    def sleeper(ctx):
        time.sleep(2.0)
        ctx.check("a claim that holds", evidence="1 = 1", tolerance="exact", passed=True)

    experiment = lesson.Experiment("sleeper", "An experiment that takes its time", "unused")
    object.__setattr__(experiment, "load", lambda: sleeper)
    args = runner.build_parser().parse_args(["--quick"])
    runner.run_experiment(experiment, 1, 1, args, tmp_path, runner.CompileClock())
    out = capsys.readouterr().out
    beat = re.search(r"\.\.\. (\d+) s elapsed, 0 of 1 done; running: sleeper \((\d+) s\)", out)
    assert beat, out
    assert out.index("  start sleeper: An experiment") < beat.start() < out.index("[1/1] sleeper")


FAKES = {
    "passes": """
def run(ctx):
    ctx.check("a claim that holds", evidence="1 = 1", tolerance="exact", passed=True)
    ctx.metric("value", 1.0)
""",
    "raises": """
def run(ctx):
    ctx.check("a claim checked before the error", evidence="1 = 1", tolerance="exact",
              passed=True)
    raise ValueError("the data were wrong")
""",
    "dies": """
import os

def run(ctx):
    os._exit(3)
""",
}


def test_workers_isolate_a_raising_and_a_dying_experiment(tmp_path, monkeypatch, capsys):
    """With --jobs 2, an experiment that raises and one whose worker process dies are error
    rows; the others still run (on a replacement worker), and the report is written."""
    package = tmp_path / "fake_experiments"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in FAKES.items():
        (package / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned workers get this sys.path
    fakes = [  # the costs make the dying one start first
        lesson.Experiment("dies", "Its worker dies", "fake_experiments.dies", cost=3),
        lesson.Experiment("raises", "It raises", "fake_experiments.raises", cost=2),
        lesson.Experiment("first", "It passes", "fake_experiments.passes", cost=1),
        lesson.Experiment("second", "It passes too", "fake_experiments.passes", cost=0),
    ]
    monkeypatch.setattr(lesson, "EXPERIMENTS", tuple(fakes))
    monkeypatch.setattr(lesson, "BY_NAME", {e.name: e for e in fakes})
    out = tmp_path / "report"
    code = runner.main(["--only", "dies,raises,first,second", "--jobs", "2", "--no-cache",
                        "--out", str(out)])
    assert code == 1
    printed = capsys.readouterr().out
    for name in ("raises", "first", "second"):  # said when it starts, and when it ends
        assert printed.index(f"  start {name}:") < printed.index(f"] {name}:")
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: v["status"] for k, v in manifest["experiments"].items()} == {
        "dies": "error", "raises": "error", "first": "pass", "second": "pass"}
    assert list(manifest["experiments"]) == ["dies", "raises", "first", "second"]  # report order
    assert manifest["settings"]["jobs"] == 2
    markdown = (out / "report.md").read_text()
    assert "the worker process running it died (exit code 3)" in markdown
    assert "ValueError: the data were wrong" in markdown
    assert markdown.count(" | pass |") == 3
