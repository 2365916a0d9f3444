"""Running experiments: JAX's setup, one experiment, and the worker process of ``--jobs N``.

run.py's command line and report are elsewhere; this module is what a worker process imports
(by name, from run.py's folder, which spawn puts on the worker's ``sys.path``), so it must not
depend on how run.py itself was loaded. JAX is imported only inside the functions.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

import _report
from lesson._common import Claim, Context


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


# --quick's compiler setting: LLVM without optimization. A quick run is mostly XLA compiling
# small programs that then run for well under a second; at -O0 they compile in about 35% less
# time and run about 10% slower (measured on 2 CPU cores: 62 s of compiling instead of 94, 16 s
# of running instead of 15). An XLA_FLAGS that already sets the level is left alone.
QUICK_XLA_FLAGS = ("--xla_backend_optimization_level=0",)


def add_xla_flags(flags) -> str | None:
    """Append ``flags`` to $XLA_FLAGS (those whose name it does not set already); return it.

    XLA reads $XLA_FLAGS when JAX starts its first backend, so this must come before that.
    """
    current = os.environ.get("XLA_FLAGS", "")
    names = {f.split("=", 1)[0] for f in current.split()}
    extra = [f for f in flags if f.split("=", 1)[0] not in names]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
    return os.environ.get("XLA_FLAGS") or None


def configure_jax(platform: str | None, precision: str, cache_dir: Path | None,
                  xla_flags=()) -> tuple[dict, CompileClock]:
    """Platform, precision, compiler flags and the compilation cache, before any JAX
    computation.

    Raises RuntimeError (or ValueError) when JAX cannot start on ``platform``.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")
    flags = add_xla_flags(xla_flags)
    import jax

    if platform is not None:
        jax.config.update("jax_platforms", _jax_platform(platform))
    jax.config.update("jax_enable_x64", precision == "float64")
    if cache_dir is not None:
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
    return {"device": device, "cache_dir": None if cache_dir is None else str(cache_dir),
            "xla_flags": flags}, clock


def execute(experiment, settings: dict, figures_dir: Path, clock: CompileClock,
            progress) -> tuple[_report.ExperimentResult, dict]:
    """Run one experiment; an exception becomes an error row, never a crash.

    Returns the result and the persistent-cache hits and misses it caused.
    """
    ctx = Context(experiment.name, quick=settings["quick"], seed=settings["seed"],
                  precision=settings["precision"], figures_dir=figures_dir, progress=progress)
    compile_before, hits, misses = clock.seconds, clock.cache_hits, clock.cache_misses
    start, cpu_start = time.perf_counter(), time.process_time()
    error, explanation = None, ""
    try:
        run = experiment.load()
        explanation = getattr(sys.modules.get(run.__module__), "EXPLANATION", "")
        run(ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # reported in the claims table; the other experiments still run
        error = traceback.format_exc()
        ctx.claims.append(error_claim(experiment, f"{type(exc).__name__}: {exc}"))
    seconds = time.perf_counter() - start
    result = _report.ExperimentResult(
        experiment.name, experiment.title, ctx.claims, ctx.metrics, ctx.figures, ctx.demos,
        ctx.notes, seconds, clock.seconds - compile_before, error,
        cpu_seconds=time.process_time() - cpu_start, explanation=explanation)
    return result, {"hits": clock.cache_hits - hits, "misses": clock.cache_misses - misses}


def error_claim(experiment, message: str) -> Claim:
    message = message.strip()
    return Claim(experiment.name, experiment.title, "", "", None,
                 error=message.splitlines()[0] if message else "error")


def worker_main(conn, settings: dict) -> None:
    """A worker process of ``--jobs N``: set JAX up, say so, then run the experiments it is
    sent, one at a time, until it is sent None.

    Messages to the parent: ``("ready", jax_info)`` or ``("setup-error", message)``, then per
    experiment ``("started", name)``, ``("progress", name, line)`` as the experiment reports
    (sent at once, so that the parent prints it while the experiment runs) and
    ``("done", name, result, [], cache_counts)``. Ctrl-C is the parent's to handle: it ends
    the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Several processes share an accelerator: none may take 75% of its memory up front.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        jax_info, clock = configure_jax(settings["platform"], settings["precision"],
                                        settings["cache_dir"], settings["xla_flags"])
    except (RuntimeError, ValueError) as exc:
        conn.send(("setup-error", str(exc)))
        return
    conn.send(("ready", jax_info))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        experiment, figures_dir = task
        lines = []  # progress lines are sent as they come; none are held back
        conn.send(("started", experiment.name))

        def progress(line, name=experiment.name):
            conn.send(("progress", name, str(line)))

        result, cache = execute(experiment, settings, figures_dir, clock, progress)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.send(("done", experiment.name, result, lines, cache))
        except Exception as exc:  # a result that does not pickle: report it as an error
            error = traceback.format_exc()
            result = _report.ExperimentResult(
                experiment.name, experiment.title,
                [error_claim(experiment, f"result not sent back: {type(exc).__name__}: {exc}")],
                {}, [], [], [], result.seconds, result.compile_seconds, error,
                cpu_seconds=result.cpu_seconds)
            conn.send(("done", experiment.name, result, lines, cache))
