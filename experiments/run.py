#!/usr/bin/env python
"""Run the MLE/MAP lesson's experiments and write the report folder.

    python experiments/run.py                 # everything, full settings -> results/report/
    python experiments/run.py --quick         # the same claims on smaller settings (CI)
    python experiments/run.py --only gaussian_mle,quick_checks --out /tmp/report

The folder holds report.md, report.html (self-contained: figures embedded, opens offline),
figures/*.png, metrics.json (every number the report quotes) and manifest.json (versions,
seed, device, seconds per experiment). It is built in a temporary folder next to --out and
renamed into place when complete, so an interrupted run leaves the previous report whole.

Exit status: 0 when every claim passes; 1 when a claim fails or an experiment raises;
2 for a usage error (nothing is run and nothing is written).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform as platform_module
import shlex
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _report  # noqa: E402  (no JAX in these two)
import lesson  # noqa: E402
from lesson._common import Claim, Context  # noqa: E402

VERSIONED = ("mlemap", "jax", "jaxlib", "numpyro", "optax", "arviz", "arviz-base",
             "arviz-stats", "scikit-learn", "statsmodels", "scipy", "numpy", "matplotlib")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlemap" / "jax"


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {e.name:<20} {e.title}" for e in lesson.EXPERIMENTS)
    parser = argparse.ArgumentParser(
        prog="experiments/run.py",
        description="Run the MLE/MAP lesson's experiments and write a report folder "
        "(report.md, report.html, figures/, metrics.json, manifest.json). Exits 1 when a "
        "claim fails or an experiment raises, 2 on a usage error.",
        epilog=f"experiments, in report order:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="the same claims on smaller settings (fewer draws, fewer grid "
                        "points, shorter chains): the CI end-to-end run")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help="run only these experiments (comma-separated; see --list); the "
                        "report then holds only their claims")
    parser.add_argument("--list", action="store_true",
                        help="print the experiments' names and titles, and exit")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("results/report"),
                        help="the report folder (default: results/report); replaced as a whole "
                        "when the run completes, so it must be new, empty or an earlier report")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of every random draw (default 0); each experiment derives "
                        "its own stream from (seed, name), so --only does not change numbers")
    parser.add_argument("--platform", choices=("cpu", "gpu", "tpu"), default=None,
                        help="JAX's platform (jax_platforms); default: JAX's own choice "
                        "(an accelerator when one is present)")
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64",
                        help="JAX's float precision (default float64, as the results are "
                        "compared with scikit-learn and statsmodels; float32 loosens the "
                        "tolerances that depend on it)")
    parser.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                        help="JAX's persistent compilation cache, so that a second run "
                        f"compiles little (default: {default_cache_dir()}, or "
                        "$MLEMAP_CACHE_DIR)")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not use the persistent compilation cache")
    return parser


def select(parser, only: str | None) -> list[lesson.Experiment]:
    if only is None:
        return list(lesson.EXPERIMENTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in lesson.BY_NAME]
    if unknown or not names:
        valid = ", ".join(e.name for e in lesson.EXPERIMENTS)
        parser.error(f"--only: unknown experiment {', '.join(map(repr, unknown)) or '(none)'}; "
                     f"valid names: {valid}")
    wanted = set(names)
    return [e for e in lesson.EXPERIMENTS if e.name in wanted]  # report order


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling (or loading from the persistent
    cache), and persistent-cache hits and misses, read through ``jax.monitoring``."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
              "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.seconds = 0.0
        self.cache_hits = 0
        self.cache_misses = 0

    def on_duration(self, event, duration, **kwargs):
        if event in self.EVENTS:
            self.seconds += duration

    def on_event(self, event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1
        elif event == "/jax/compilation_cache/cache_misses":
            self.cache_misses += 1


def _jax_platform(platform: str) -> str:
    """JAX's name for ``--platform``: "gpu" is CUDA or ROCm, whichever plugin is installed
    (JAX's own "gpu" alias asks for both and fails when one is missing)."""
    if platform != "gpu":
        return platform
    import importlib.metadata

    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    if any(name.startswith("jax-rocm") for name in installed) and not any(
            name.startswith("jax-cuda") for name in installed):
        return "rocm"
    return "cuda"


def configure_jax(args) -> tuple[dict, CompileClock]:
    """Platform, precision and the compilation cache, before any JAX computation."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import jax

    if args.platform is not None:
        jax.config.update("jax_platforms", _jax_platform(args.platform))
    jax.config.update("jax_enable_x64", args.precision == "float64")
    cache_dir = None
    if not args.no_cache:
        cache_dir = (args.cache_dir or Path(os.environ.get("MLEMAP_CACHE_DIR", "") or
                                            default_cache_dir())).expanduser().resolve()
        cache_dir.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    clock = CompileClock()
    jax.monitoring.register_event_duration_secs_listener(clock.on_duration)
    jax.monitoring.register_event_listener(clock.on_event)
    try:
        devices = jax.devices()
    except (RuntimeError, AssertionError) as exc:  # AssertionError: "cuda" with no GPU visible
        raise RuntimeError(str(exc) or "no device of this platform is visible") from None
    device = {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
              "count": len(devices)}
    return {"device": device, "cache_dir": None if cache_dir is None else str(cache_dir)}, clock


def versions() -> dict:
    import importlib.metadata

    out = {"python": platform_module.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_experiment(experiment, index, total, args, figures_dir, clock):
    """Run one experiment; an exception becomes an error row, never a crash."""
    print(f"[{index}/{total}] {experiment.name}: {experiment.title}", flush=True)
    ctx = Context(experiment.name, quick=args.quick, seed=args.seed,
                  precision=args.precision, figures_dir=figures_dir,
                  progress=lambda message: print(f"        {message}", flush=True))
    compile_before = clock.seconds
    start = time.perf_counter()
    error = None
    try:
        experiment.load()(ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # reported in the claims table; the other experiments still run
        error = traceback.format_exc()
        message = f"{type(exc).__name__}: {exc}".strip()
        ctx.claims.append(Claim(experiment.name, experiment.title, "", "", None,
                                error=message.splitlines()[0] if message else "error"))
    seconds = time.perf_counter() - start
    compile_seconds = clock.seconds - compile_before
    result = _report.ExperimentResult(
        experiment.name, experiment.title, ctx.claims, ctx.metrics, ctx.figures, ctx.demos,
        ctx.notes, seconds, compile_seconds, error)
    counts = _report.summary(ctx.claims)
    status = (f"{counts['pass']}/{counts['claims']} claims pass" if error is None
              else f"ERROR {ctx.claims[-1].error}")
    print(f"        {seconds:.1f} s ({compile_seconds:.1f} s compiling): {status}", flush=True)
    if error is not None:
        print(error, file=sys.stderr, flush=True)
    for claim in ctx.claims:
        if claim.status == "fail":
            print(f"        FAIL: {claim.claim} ({claim.evidence}; needs {claim.tolerance})",
                  flush=True)
    return result


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for e in lesson.EXPERIMENTS:
            print(f"{e.name:<20} {e.title}")
        return 0
    experiments = select(parser, args.only)
    out = args.out.expanduser().absolute()
    problem = _report.check_out(out)
    if problem:
        parser.error(problem)
    if args.no_cache and args.cache_dir is not None:
        parser.error("--cache-dir and --no-cache contradict each other; give one.")

    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    try:
        jax_info, clock = configure_jax(args)
    except (RuntimeError, ValueError) as exc:
        parser.error(f"JAX could not start on --platform {args.platform}: {exc}")
    setup_seconds = time.perf_counter() - t0
    print(f"mlemap experiments: {len(experiments)} to run, "
          f"{'quick' if args.quick else 'full'} settings, seed {args.seed}, {args.precision}, "
          f"JAX on {jax_info['device']['platform']}; report -> {out}", flush=True)

    with _report.atomic_folder(out) as tmp:
        figures_dir = tmp / "figures"
        figures_dir.mkdir()
        results = [run_experiment(e, i, len(experiments), args, figures_dir, clock)
                   for i, e in enumerate(experiments, 1)]
        total = time.perf_counter() - t0
        manifest = {
            "started": started.isoformat(timespec="seconds"),
            "command": shlex.join(["python", "experiments/run.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
            "settings": {"quick": args.quick, "seed": args.seed, "precision": args.precision,
                         "platform": args.platform, "only": [e.name for e in experiments]},
            "versions": versions(),
            "device": jax_info["device"],
            "platform": {"os": platform_module.platform(),
                         "machine": platform_module.machine(),
                         "cpu_count": os.cpu_count()},
            "compilation_cache": {"dir": jax_info["cache_dir"], "hits": clock.cache_hits,
                                  "misses": clock.cache_misses},
            "setup_seconds": setup_seconds,
            "total_seconds": total,
            "experiments": {r.name: {"seconds": round(r.seconds, 3),
                                     "compile_seconds": round(r.compile_seconds, 3),
                                     "run_seconds": round(r.seconds - r.compile_seconds, 3),
                                     "claims": len(r.claims),
                                     "status": "error" if r.error else
                                     ("fail" if any(c.status == "fail" for c in r.claims)
                                      else "pass")}
                            for r in results},
        }
        _report.write(tmp, results, manifest)

    counts = _report.summary([c for r in results for c in r.claims])
    print(f"{counts['pass']}/{counts['claims']} claims pass, {counts['fail']} fail, "
          f"{counts['error']} errors; {time.perf_counter() - t0:.1f} s; "
          f"report: {out / 'report.html'}", flush=True)
    return 0 if counts["fail"] == 0 and counts["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
