#!/usr/bin/env python
"""Run the MLE/MAP lesson's experiments and write the report folder.

    python experiments/run.py                 # everything, full settings -> results/report/
    python experiments/run.py --quick         # the same claims on smaller settings (CI)
    python experiments/run.py --only gaussian_mle,quick_checks --out /tmp/report
    python experiments/run.py --jobs 1        # in this process, one experiment at a time

The folder holds report.md, report.html (self-contained: figures embedded, opens offline),
figures/*.png, metrics.json (every number the report quotes) and manifest.json (versions,
seed, device, seconds per experiment). It is built in a temporary folder next to --out and
renamed into place when complete, so an interrupted run leaves the previous report whole.

The experiments run in --jobs worker processes (default: 2, or 1 on a one-core machine),
longest first: a cold run is mostly XLA compiling, which is single-threaded, so two processes
compiling at once nearly halve it. Each worker sets JAX up as this process would (platform,
precision, compiler flags, compilation cache); an experiment that raises, or whose worker
dies, is an error row and the others still run. A line says when each experiment starts,
its own progress lines follow as it reports them, a line says when it ends, and while it is
quiet a heartbeat line gives the time elapsed and what is running. --quick also compiles
without LLVM optimization (about a third less compiling); as its programs have other shapes
and flags than a full run's, the two fill separate entries of the compilation cache.

Exit status: 0 when every claim passes; 1 when a claim fails or an experiment raises;
2 for a usage error (nothing is run and nothing is written).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import multiprocessing.connection
import os
import platform as platform_module
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _report  # noqa: E402  (no JAX in these three: _runner imports it when it runs)
import _runner  # noqa: E402
import lesson  # noqa: E402
from _runner import CompileClock  # noqa: E402, F401  (part of this module's interface)

HEARTBEAT_SECONDS = 10.0  # a progress line at least this often while experiments run
VERSIONED = ("mlemap", "jax", "jaxlib", "numpyro", "optax", "arviz", "arviz-base",
             "arviz-stats", "scikit-learn", "statsmodels", "scipy", "numpy", "matplotlib")


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


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
                        "points, shorter chains), compiled without LLVM optimization "
                        "(XLA_FLAGS=--xla_backend_optimization_level=0, unless XLA_FLAGS sets "
                        "the level): the CI end-to-end run")
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
    parser.add_argument("--jobs", metavar="N", type=_positive_int, default=default_jobs(),
                        help="run the experiments in N worker processes, longest first "
                        f"(default: min(2, CPU cores) = {default_jobs()} here). A cold run is "
                        "mostly XLA compiling, which is single-threaded, so 2 nearly halve it; "
                        "1 runs them one after the other in this process, as does --only with "
                        "a single experiment")
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


def cache_dir_of(args) -> Path | None:
    """The persistent compilation cache's folder (created), or None with --no-cache."""
    if args.no_cache:
        return None
    cache_dir = (args.cache_dir or Path(os.environ.get("MLEMAP_CACHE_DIR", "") or
                                        default_cache_dir())).expanduser().resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def settings_of(args) -> dict:
    """What an experiment, or a worker process, needs of the command line."""
    return {"quick": args.quick, "seed": args.seed, "precision": args.precision,
            "platform": args.platform, "cache_dir": cache_dir_of(args),
            "xla_flags": _runner.QUICK_XLA_FLAGS if args.quick else ()}


def configure_jax(args) -> tuple[dict, CompileClock]:
    """Platform, precision, compiler flags and the compilation cache, in this process."""
    settings = settings_of(args)
    return _runner.configure_jax(args.platform, args.precision, settings["cache_dir"],
                                 settings["xla_flags"])


def _cache_line(cache_dir: Path | None) -> str:
    """Whether this run starts cold: what the compilation cache holds."""
    if cache_dir is None:
        return "        no compilation cache (--no-cache): every program is compiled"
    entries = sum(1 for p in cache_dir.iterdir() if p.is_file())
    return (f"        compilation cache {cache_dir}: {entries} entries"
            + (" (empty: a cold run, mostly compiling)" if entries == 0 else "")
            + "; --quick and full runs compile different programs and share none")


def versions() -> dict:
    import importlib.metadata

    out = {"python": platform_module.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# -- progress lines -------------------------------------------------------------------------


class Progress:
    """What a person watching the run reads: a line when an experiment starts, its own
    progress lines as it reports them, a line when it ends, and while lines are scarce a
    heartbeat every ``heartbeat`` seconds with the time elapsed and what is running.

    Thread-safe: with ``--jobs 1`` a timer thread calls :meth:`tick` while the experiment
    runs in the main thread.
    """

    def __init__(self, total: int, heartbeat: float | None = None):
        self.total = total
        self.heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        self.t0 = self.last = time.perf_counter()
        self.running: dict[str, float] = {}
        self.done = 0
        self._lock = threading.Lock()

    def _print(self, text, file=None):
        with self._lock:
            print(text, file=file or sys.stdout, flush=True)
            self.last = time.perf_counter()

    def start(self, experiment):
        self.running[experiment.name] = time.perf_counter()
        self._print(f"  start {experiment.name}: {experiment.title}")

    def line(self, name, message):
        self._print(f"        {name}: {message}")

    def finish(self, result):
        self.running.pop(result.name, None)
        self.done += 1
        counts = _report.summary(result.claims)
        status = (f"{counts['pass']}/{counts['claims']} claims pass" if result.error is None
                  else f"ERROR {result.claims[-1].error}")
        lines = [f"[{self.done}/{self.total}] {result.name}: {result.title}",
                 f"        {result.seconds:.1f} s ({result.compile_seconds:.1f} s compiling): "
                 f"{status}"]
        lines += [f"        FAIL: {c.claim} ({c.evidence}; needs {c.tolerance})"
                  for c in result.claims if c.status == "fail"]
        self._print("\n".join(lines))
        if result.error is not None:
            self._print(result.error.rstrip(), file=sys.stderr)

    def tick(self):
        """Print the heartbeat if nothing was printed for ``heartbeat`` seconds."""
        now = time.perf_counter()
        if now - self.last < self.heartbeat:
            return
        running = ", ".join(f"{name} ({now - t:.0f} s)" for name, t in self.running.items())
        self._print(f"  ... {now - self.t0:.0f} s elapsed, {self.done} of {self.total} done"
                    + (f"; running: {running}" if running else ""))


# -- in this process (--jobs 1, or a single experiment) -------------------------------------


def run_experiment(experiment, index, total, args, figures_dir, clock, progress=None):
    """Run one experiment in this process; an exception becomes an error row, never a crash.

    A timer thread prints the heartbeat while it runs.
    """
    progress = progress or Progress(total)
    progress.done = index - 1
    progress.start(experiment)
    stop = threading.Event()

    def beat():
        while not stop.wait(1.0):
            progress.tick()

    timer = threading.Thread(target=beat, name="mlemap-heartbeat", daemon=True)
    timer.start()
    try:
        result, _ = _runner.execute(experiment, vars(args), figures_dir, clock,
                                    lambda line: progress.line(experiment.name, line))
    finally:
        stop.set()
        timer.join()
    progress.finish(result)
    return result


def run_here(experiments, args, figures_dir, clock, progress) -> list[_report.ExperimentResult]:
    return [run_experiment(e, i, len(experiments), args, figures_dir, clock, progress)
            for i, e in enumerate(experiments, 1)]


# -- in worker processes (--jobs N) ---------------------------------------------------------


class SetupError(Exception):
    """No worker process could start JAX."""


class _Worker:
    def __init__(self, mp, settings, number):
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_runner.worker_main, args=(child, settings),
                                  name=f"mlemap-experiments-{number}")
        self.process.start()
        child.close()
        self.ready = False
        self.task = None  # the experiment it is running
        self.gone = False


class WorkerPool:
    """``jobs`` worker processes (spawned: JAX is not fork-safe), each set up as this process
    would be, given experiments longest first and one at a time.

    An experiment that raises is an error row, as in one process; a worker that dies makes
    its experiment an error row and is replaced, so the run neither hangs nor stops.
    """

    def __init__(self, jobs: int, settings: dict):
        self._mp = multiprocessing.get_context("spawn")
        self._settings = settings
        self._spawned = 0
        self.workers = [self._spawn() for _ in range(jobs)]

    def _spawn(self) -> _Worker:
        self._spawned += 1
        return _Worker(self._mp, self._settings, self._spawned)

    def _events(self, timeout=None):
        """Wait until a worker says something or dies, or ``timeout`` seconds pass; yield
        (worker, kind, payload)."""
        live = [w for w in self.workers if not w.gone]
        waitables = [w.conn for w in live] + [w.process.sentinel for w in live]
        ready = multiprocessing.connection.wait(waitables, timeout)
        for w in live:
            if w.conn not in ready and w.process.sentinel not in ready:
                continue
            try:
                while w.conn.poll():
                    message = w.conn.recv()
                    yield w, message[0], message[1:]
                    if not w.process.is_alive():
                        break
            except (EOFError, OSError):
                w.process.join(timeout=10)
            if not w.process.is_alive():
                w.process.join()
                w.gone = True
                code = w.process.exitcode
                why = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exit code {code}")
                yield w, "died", (why,)

    def wait_ready(self) -> dict:
        """The first ready worker's JAX description; SetupError when none can start."""
        errors = []
        while True:
            if all(w.gone for w in self.workers):
                raise SetupError(errors[0] if errors else "no worker process started")
            for w, kind, payload in self._events():
                if kind == "ready":
                    w.ready = True
                    return payload[0]
                if kind == "setup-error":
                    errors.append(payload[0])
                elif kind == "died" and not errors:
                    errors.append(f"a worker process died while starting JAX ({payload[0]})")

    def run(self, experiments, figures_dir: Path, progress: Progress | None = None):
        """Yield (result, cache counts) as each experiment finishes; tell ``progress`` when
        one starts, what it reports, and every second while none says anything."""
        progress = progress or Progress(len(experiments), heartbeat=float("inf"))
        by_name = {e.name: e for e in experiments}
        queue = sorted(experiments, key=lambda e: -e.cost)
        pending = len(experiments)
        replacements = len(experiments)

        def dispatch(w):
            w.task = queue.pop(0) if queue else None
            try:
                w.conn.send(None if w.task is None else (w.task, figures_dir))
            except OSError:  # it has just died: the task waits for another worker
                if w.task is not None:
                    queue.insert(0, w.task)
                w.task = None

        for w in self.workers:
            if w.ready:
                dispatch(w)
        while pending:
            if all(w.gone for w in self.workers):
                if replacements <= 0:  # every worker dies at start: the rest are errors
                    for e in queue:
                        pending -= 1
                        yield self._lost(e, "no worker process could be started"), {}
                    queue.clear()
                    return
                replacements -= 1
                self.workers.append(self._spawn())
            progress.tick()
            for w, kind, payload in self._events(timeout=1.0):
                if kind == "ready":
                    w.ready = True
                    dispatch(w)
                elif kind == "started":
                    progress.start(by_name[payload[0]])
                elif kind == "progress":
                    progress.line(*payload)
                elif kind == "done":
                    _, result, lines, cache = payload
                    for line in lines:
                        progress.line(result.name, line)
                    pending -= 1
                    yield result, cache
                    dispatch(w)
                elif kind == "died":
                    if w.task is not None:
                        pending -= 1
                        yield self._lost(w.task, f"the worker process running it died "
                                                 f"({payload[0]})"), {}
                        w.task = None
                    if queue and replacements > 0 and not any(
                            not x.gone and x.task is None for x in self.workers):
                        replacements -= 1
                        self.workers.append(self._spawn())

    @staticmethod
    def _lost(experiment, message):
        claim = _runner.error_claim(experiment, message)
        return _report.ExperimentResult(experiment.name, experiment.title, [claim], {}, [], [],
                                        [], 0.0, 0.0, message)

    def close(self):
        """End every worker: one that is ready and idle is told to and given a moment, the
        others (running an experiment, or still starting) are terminated."""
        for w in self.workers:
            polite = not w.gone and w.ready and w.task is None
            if polite:
                try:
                    w.conn.send(None)  # a second None, after the run's, does no harm
                except OSError:
                    pass
            w.process.join(timeout=5 if polite else 0)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join()
            w.conn.close()


def run_in_workers(pool, experiments, figures_dir, progress):
    results = {}
    cache = {"hits": 0, "misses": 0}
    for result, counts in pool.run(experiments, figures_dir, progress):
        progress.finish(result)
        results[result.name] = result
        for key in cache:
            cache[key] += counts.get(key, 0)
    return [results[e.name] for e in experiments], cache


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

    jobs = min(args.jobs, len(experiments))
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    pool = None
    try:
        try:
            if jobs == 1:
                jax_info, clock = configure_jax(args)
            else:
                print(f"mlemap experiments: starting {jobs} worker processes (each imports "
                      "JAX)", flush=True)
                pool = WorkerPool(jobs, settings_of(args))
                jax_info = pool.wait_ready()
        except (RuntimeError, ValueError, SetupError) as exc:
            parser.error(f"JAX could not start on --platform {args.platform}: {exc}")
        setup_seconds = time.perf_counter() - t0
        print(f"mlemap experiments: {len(experiments)} to run, "
              f"{'quick' if args.quick else 'full'} settings, seed {args.seed}, "
              f"{args.precision}, JAX on {jax_info['device']['platform']}, "
              f"{'in this process' if pool is None else f'{jobs} worker processes'}; "
              f"report -> {out}", flush=True)
        print(_cache_line(settings_of(args)["cache_dir"]), flush=True)
        progress = Progress(len(experiments))
        with _report.atomic_folder(out) as tmp:
            figures_dir = tmp / "figures"
            figures_dir.mkdir()
            if pool is None:
                results = run_here(experiments, args, figures_dir, clock, progress)
                cache = {"hits": clock.cache_hits, "misses": clock.cache_misses}
            else:
                results, cache = run_in_workers(pool, experiments, figures_dir, progress)
            total = time.perf_counter() - t0
            manifest = _manifest(argv, args, experiments, jobs, started, jax_info, cache,
                                 setup_seconds, total, results)
            _report.write(tmp, results, manifest)
    finally:
        if pool is not None:  # also on Ctrl-C and on a usage error: no worker is left behind
            pool.close()

    counts = _report.summary([c for r in results for c in r.claims])
    print(f"{counts['pass']}/{counts['claims']} claims pass, {counts['fail']} fail, "
          f"{counts['error']} errors; {time.perf_counter() - t0:.1f} s; "
          f"report: {out / 'report.html'}", flush=True)
    return 0 if counts["fail"] == 0 and counts["error"] == 0 else 1


def _manifest(argv, args, experiments, jobs, started, jax_info, cache, setup_seconds, total,
              results) -> dict:
    return {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "experiments/run.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        # What works after README's set-up (bash scripts/bootstrap.sh), from the repository.
        "reproduce": shlex.join([".venv/bin/python", "experiments/run.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
        "settings": {"quick": args.quick, "seed": args.seed, "precision": args.precision,
                     "platform": args.platform, "only": [e.name for e in experiments],
                     "jobs": jobs},
        "versions": versions(),
        "device": jax_info["device"],
        "platform": {"os": platform_module.platform(), "machine": platform_module.machine(),
                     "cpu_count": os.cpu_count()},
        "compilation_cache": {"dir": jax_info["cache_dir"], **cache},
        "xla_flags": jax_info["xla_flags"],
        "setup_seconds": setup_seconds,
        "total_seconds": total,
        "experiments": {r.name: {"seconds": round(r.seconds, 3),
                                 "compile_seconds": round(r.compile_seconds, 3),
                                 "run_seconds": round(r.seconds - r.compile_seconds, 3),
                                 "cpu_seconds": round(r.cpu_seconds, 3),
                                 "claims": len(r.claims),
                                 "status": "error" if r.error else
                                 ("fail" if any(c.status == "fail" for c in r.claims)
                                  else "pass")}
                        for r in results},
    }


if __name__ == "__main__":
    sys.exit(main())
