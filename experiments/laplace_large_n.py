"""mm.laplace at large n, two source trees side by side (Pareto-k from a first batch of draws).

Logistic regression, n = 100,000, d = 50 (``benchmark.logistic_data``: independent N(0, 1)
features, intercept 0.5), N(0, 1) prior on the coefficients (``mm.glm(prior=...)``), float64,
``num_draws=1000``. One worker process per source tree (``--before`` and ``--after``: the
``src`` folders of two checkouts); each builds the same data and makes one warm-up call, then
the driver asks the two in turn for one timed call, ``--repeats`` rounds, so that both trees'
calls meet the same load. Per call, wall seconds of ``mm.laplace(model, data)`` (fit,
Hessian, draws, log p) and of ``mm.laplace(model, data, mode=estimate)`` (without the fit),
and the ``pareto_k`` / ``pareto_k_draws`` (when the tree has that field) of the first.

Usage::

    git archive bb48ef5 src | tar -x -C /tmp/before
    python experiments/laplace_large_n.py --before /tmp/before/src --after src --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(source: str, n: int, d: int) -> None:
    """Serve timed calls of the tree at ``source``: one JSON line per line read."""
    sys.path.insert(0, source)
    sys.path.insert(1, str(HERE))
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpyro.distributions as dist
    from benchmark import logistic_data

    import mlemap as mm

    X, y, _ = logistic_data(n, d, seed=0)
    model, data = mm.glm(X, y, family=mm.families.bernoulli(), prior=dist.Normal(0.0, 1.0))
    estimate = mm.fit(model, data, method="map", jacobian=True)
    mm.laplace(model, data)  # warm-up: compiles
    mm.laplace(model, data, mode=estimate)
    print(json.dumps({"ready": mm.__file__}), flush=True)
    for seed, _ in enumerate(sys.stdin, start=1):
        start = time.perf_counter()
        approx = mm.laplace(model, data, seed=seed)
        whole = time.perf_counter() - start
        start = time.perf_counter()
        mm.laplace(model, data, mode=estimate, seed=seed)
        given_mode = time.perf_counter() - start
        print(json.dumps({"whole_s": whole, "given_mode_s": given_mode,
                          "pareto_k": float(approx.pareto_k),
                          "pareto_k_draws": getattr(approx, "pareto_k_draws", 1000)}),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="src folder of the old tree")
    parser.add_argument("--after", required=True, help="src folder of the new tree")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.n, args.d)
    env = {**os.environ, "PYTHONPATH": ""}
    procs = {name: subprocess.Popen(
        [sys.executable, __file__, "--worker", str(Path(src).resolve()), "--n", str(args.n),
         "--d", str(args.d), "--before", "-", "--after", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for name, src in (("before", args.before), ("after", args.after))}
    for name, proc in procs.items():
        print(name, json.loads(proc.stdout.readline())["ready"], flush=True)
    calls = {name: [] for name in procs}
    print("load before:", os.getloadavg(), flush=True)
    for _ in range(args.repeats):
        for name, proc in procs.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            calls[name].append(json.loads(proc.stdout.readline()))
            print(name, calls[name][-1], flush=True)
    print("load after:", os.getloadavg(), flush=True)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    for name, rows in calls.items():
        print(f"{name}: median whole {statistics.median(r['whole_s'] for r in rows):.3f} s, "
              f"given mode {statistics.median(r['given_mode_s'] for r in rows):.3f} s, "
              f"k {[round(r['pareto_k'], 2) for r in rows]}, "
              f"draws evaluated {[r['pareto_k_draws'] for r in rows]}")


if __name__ == "__main__":
    main()
