"""NUTS's metric adaptation side by side: mlemap's (issue 18), NumPyro's, and nutpie's.

Two posteriors of a logistic regression (n = 2,000, d = 50 or ``--dim``, beta ~ N(0, 1), no
intercept): independent N(0, 1) features ("easy") and equicorrelated ones, rho = 0.9
("correlated"), both from ``benchmark.logistic_data``. 4 chains x 1000 draws, target
acceptance 0.8, maximum tree depth 10. Engines:

``mlemap``
    ``mm.sample`` as it defaults: ``init="map"``, ``metric="auto"`` (dense for d = 50),
    metric from draws and gradients seeded from the Laplace approximation; ``num_warmup=1000``
    is the most it may run (it stops when the metric has settled).
``mlemap-lowrank``
    The same with ``metric="low_rank"`` (diagonal + at most 32 eigenpairs).
``mlemap-numpyro`` / ``mlemap-numpyro-dense``
    ``metric="numpyro"``: NumPyro's own adaptation (Stan's windows, 1000 warm-up iterations;
    diagonal, or ``dense_mass=True``), started at the MAP as on main.
``nutpie-diag`` / ``nutpie-lowrank``
    nutpie (numba backend) on the PyMC model of the same problem, its default warm-up length,
    ``adaptation="diag"`` / ``"low_rank"``; all cores (``cores`` = CPUs).
``laplace-psis``
    ``mm.posterior(model, data, num_draws=4000)``: Laplace + PSIS when Pareto-k passes (its
    own table: k, importance ESS, seconds, and its means against mlemap NUTS's).
``laplace-psis-lean``
    The same with ``log_likelihood=False`` (no pointwise log-likelihood group).

Each (problem, engine) runs in its own process: one cold call, then ``--repeats`` warm calls
with new seeds; the engines of a problem run one after the other, in a rotated order over
``--rounds``. Reported per warm call: min bulk ESS over the 50 coefficients
(``arviz_stats.ess``), wall and process CPU seconds of the call, gradients of the draws and of
the warm-up (leapfrog steps, counted separately), warm-up iterations, divergences, posterior
means; the table gives medians.

Usage::

    python experiments/nuts_metric.py --repeats 3 --out results/nuts_metric.json
    python experiments/nuts_metric.py --engines laplace-psis --out results/psis.json
    python experiments/nuts_metric.py --table results/nuts_metric.json,results/psis.json
    python experiments/nuts_metric.py --dim 200 --engines mlemap --out results/d200.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from benchmark import logistic_data, min_bulk_ess  # noqa: E402

ENGINES = ("mlemap", "mlemap-lowrank", "mlemap-numpyro", "mlemap-numpyro-dense",
           "nutpie-diag", "nutpie-lowrank", "laplace-psis", "laplace-psis-lean")
PROBLEMS = ("easy", "correlated")
SETTINGS = {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4, "target_accept": 0.8,
            "max_tree_depth": 10, "n": 2000, "d": 50, "seed": 0}
RESULT = "RESULT "


def _data(problem):
    X, y, _ = logistic_data(SETTINGS["n"], SETTINGS["d"], design=problem, seed=SETTINGS["seed"],
                            intercept=0.0)
    return X, y


def _logistic_model(problem):
    """The problem's logistic regression with a N(0, 1) prior, as an mlemap Model, and data."""
    import numpyro.distributions as dist

    import mlemap as mm

    X, y = _data(problem)
    model = mm.Model(
        {"beta": mm.Param((X.shape[1],), prior=dist.Normal(0.0, 1.0))},
        lambda p, data: dist.Bernoulli(logits=data["X"] @ p["beta"]).log_prob(data["y"]),
    )
    return model, {"X": X, "y": y}


def _mlemap(problem, engine):
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import mlemap as mm

    model, data = _logistic_model(problem)
    options = {"mlemap": {}, "mlemap-lowrank": {"metric": "low_rank"},
               "mlemap-numpyro": {"metric": "numpyro"},
               "mlemap-numpyro-dense": {"metric": "numpyro", "dense_mass": True}}[engine]

    def call(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # diagnostics are in the result
            dt = mm.sample(model, data, seed=seed, progress_bar=False,
                           num_warmup=SETTINGS["num_warmup"],
                           num_samples=SETTINGS["num_samples"],
                           num_chains=SETTINGS["num_chains"],
                           target_accept=SETTINGS["target_accept"],
                           max_tree_depth=SETTINGS["max_tree_depth"], **options)
        stats, attrs = dt.sample_stats, dt.attrs
        return {"draws": dt.posterior["beta"].values,
                "gradients": int(stats["n_steps"].values.sum()),
                "warmup_gradients": int(np.sum(attrs["warmup_gradients"])),
                "warmup_iterations": [int(v) for v in np.atleast_1d(attrs["warmup_iterations"])],
                "divergences": int(stats["diverging"].values.sum()),
                "step_size": float(np.median(stats["step_size"].values)),
                "mean_tree_depth": float(stats["tree_depth"].values.mean()),
                "metric": attrs["metric"], "sampling_s": float(attrs["sampling_seconds"])}

    return call


def _nutpie(problem, engine):
    import logging
    import warnings

    import numpy as np
    import nutpie
    import pymc as pm

    logging.getLogger("pymc").setLevel(logging.ERROR)
    X, y = _data(problem)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 1.0, shape=X.shape[1])
        pm.Bernoulli("y", logit_p=pm.math.dot(X, beta), observed=y)
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    adaptation = {"nutpie-diag": "diag", "nutpie-lowrank": "low_rank"}[engine]

    def call(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trace = nutpie.sample(compiled, draws=SETTINGS["num_samples"],
                                  chains=SETTINGS["num_chains"], seed=seed, progress_bar=False,
                                  adaptation=adaptation,
                                  target_accept=SETTINGS["target_accept"],
                                  maxdepth=SETTINGS["max_tree_depth"])
        stats, warm = trace["sample_stats"], trace["warmup_sample_stats"]
        return {"draws": np.asarray(trace["posterior"]["beta"]),
                "gradients": int(np.asarray(stats["n_steps"]).sum()),
                "warmup_gradients": int(np.asarray(warm["n_steps"]).sum()),
                "warmup_iterations": [int(warm.sizes["draw"])] * SETTINGS["num_chains"],
                "divergences": int(np.asarray(stats["diverging"]).sum()),
                "step_size": float(np.median(np.asarray(stats["step_size"]))),
                "mean_tree_depth": float(np.asarray(stats["depth"]).mean()),
                "metric": adaptation}

    return call


def _laplace_psis(problem, log_likelihood=True):
    """``mm.posterior`` with 4000 draws: Laplace + PSIS, or NUTS when Pareto-k is high;
    with or without the pointwise log-likelihood group (4000 x 2000 numbers)."""
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)

    import mlemap as mm

    model, data = _logistic_model(problem)

    def call(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt = mm.posterior(model, data, num_draws=4000, seed=seed, progress_bar=False,
                              log_likelihood=log_likelihood)
        return dt.posterior["beta"].values, dict(dt.attrs)

    return call


def worker_laplace_psis(problem, repeats, log_likelihood=True):
    call = _laplace_psis(problem, log_likelihood)
    runs = []
    for seed in range(1 + repeats):  # call 0 compiles
        wall, cpu = time.perf_counter(), time.process_time()
        draws, attrs = call(seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        runs.append({"seconds": wall, "cpu_seconds": cpu,
                     "method": attrs["posterior_method"], "pareto_k": attrs["pareto_k"],
                     "importance_ess": attrs.get("importance_ess", float("nan")),
                     "mean": [float(v) for v in draws.mean(axis=(0, 1))],
                     "sd": [float(v) for v in draws.std(axis=(0, 1))]})
    print(RESULT + json.dumps(runs), flush=True)


def worker(problem, engine, repeats):
    if engine.startswith("laplace-psis"):
        worker_laplace_psis(problem, repeats, engine == "laplace-psis")
        return
    call = _nutpie(problem, engine) if engine.startswith("nutpie") else _mlemap(problem, engine)
    runs = []
    for seed in range(1 + repeats):  # call 0 compiles
        wall, cpu = time.perf_counter(), time.process_time()
        out = call(seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        draws = out.pop("draws")
        ess = min_bulk_ess(draws)
        runs.append({"seconds": wall, "cpu_seconds": cpu, "min_ess_bulk": ess,
                     "ess_per_s": ess / wall, "ess_per_cpu_s": ess / cpu,
                     "ess_per_gradient": ess / out["gradients"],
                     "mean": [float(v) for v in draws.mean(axis=(0, 1))],
                     "sd": [float(v) for v in draws.std(axis=(0, 1))], **out})
    print(RESULT + json.dumps(runs), flush=True)


def _median(runs, key):
    return statistics.median(r[key] for r in runs)


def laplace_table(results):
    """Markdown rows of ``mm.posterior`` (Laplace + PSIS): medians of the warm calls, and the
    largest distance of its means from mlemap NUTS's, in NUTS posterior sds."""
    import numpy as np

    rows = ["| problem | engine | method | Pareto-k | importance ESS (of 4000) | warm s | "
            "warm CPU s | max abs(mean - NUTS mean) / NUTS sd |", "| --- " * 8 + "|"]
    for problem, engine in [(p, e) for p in PROBLEMS for e in ENGINES if e.startswith("laplace")]:
        runs, nuts = results.get(f"{problem}/{engine}"), results.get(f"{problem}/mlemap")
        if not runs:
            continue
        warm = runs[1:]
        shift = "–"
        if nuts:
            ref = np.mean([r["mean"] for r in nuts[1:]], axis=0)
            sd = np.mean([r["sd"] for r in nuts[1:]], axis=0)
            shift = f"{np.median([np.max(np.abs(np.asarray(r['mean']) - ref) / sd) for r in warm]):.3f}"
        rows.append(f"| {problem} | {engine} | {warm[-1]['method']} | "
                    f"{_median(warm, 'pareto_k'):.2f} | "
                    f"{_median(warm, 'importance_ess'):.0f} | {_median(warm, 'seconds'):.3f} | "
                    f"{_median(warm, 'cpu_seconds'):.3f} | {shift} |")
    return "\n".join(rows)


def table(results):
    """Markdown rows: medians of the warm calls."""
    rows = ["| problem | engine | min bulk ESS | ESS/s | ESS/CPU-s | ESS/gradient | "
            "gradients (draws) | warm-up gradients | warm-up iterations | divergences | "
            "median step size | mean tree depth | max |mean - mlemap's| / sd |",
            "| --- " * 13 + "|"]
    for problem in PROBLEMS:
        base = results.get(f"{problem}/mlemap")
        for engine in ENGINES:
            runs = results.get(f"{problem}/{engine}")
            if engine.startswith("laplace-psis"):
                continue
            if not runs:
                continue
            warm = runs[1:]
            shift = "–"
            if base:
                import numpy as np

                ref, sd = np.asarray(base[-1]["mean"]), np.asarray(base[-1]["sd"])
                shift = f"{np.max(np.abs(np.asarray(warm[-1]['mean']) - ref) / sd):.3f}"
            rows.append(
                f"| {problem} | {engine} | {_median(warm, 'min_ess_bulk'):.0f} | "
                f"{_median(warm, 'ess_per_s'):.0f} | {_median(warm, 'ess_per_cpu_s'):.0f} | "
                f"{_median(warm, 'ess_per_gradient'):.3f} | {_median(warm, 'gradients'):.0f} | "
                f"{_median(warm, 'warmup_gradients'):.0f} | "
                f"{statistics.median(statistics.median(r['warmup_iterations']) for r in warm):.0f}"
                f" | {[r['divergences'] for r in runs]} | {_median(warm, 'step_size'):.3g} | "
                f"{_median(warm, 'mean_tree_depth'):.2f} | {shift} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("PROBLEM", "ENGINE"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--out", default="results/nuts_metric.json")
    parser.add_argument("--table", help="print the tables of a results file and stop")
    parser.add_argument("--dim", type=int, default=SETTINGS["d"],
                        help="number of coefficients d (default 50)")
    args = parser.parse_args()
    SETTINGS["d"] = args.dim
    if args.worker:
        worker(*args.worker, args.repeats)
        return
    if args.table:
        results = {}
        for path in args.table.split(","):
            results.update(json.loads(Path(path).read_text())["results"])
        print(table(results) + "\n\n" + laplace_table(results))
        return
    engines, problems = args.engines.split(","), args.problems.split(",")
    results = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in range(args.rounds):
        for problem in problems:
            order = engines[r % len(engines):] + engines[:r % len(engines)]
            for engine in order:
                load = os.getloadavg()[0]
                proc = subprocess.run([sys.executable, str(HERE), "--worker", problem, engine,
                                       "--repeats", str(args.repeats), "--dim", str(args.dim)],
                                      capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
                if proc.returncode or not lines:
                    print(f"{problem}/{engine} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    continue
                runs = json.loads(lines[-1][len(RESULT):])
                for run in runs:
                    run["load_before"] = load
                results.setdefault(f"{problem}/{engine}", []).extend(
                    runs if not results.get(f"{problem}/{engine}") else runs[1:])
                summary = (f"k {_median(runs[1:], 'pareto_k'):.2f}, s "
                           f"{_median(runs[1:], 'seconds'):.3f}" if engine.startswith("laplace")
                           else
                           f"ESS/grad {_median(runs[1:], 'ess_per_gradient'):.3f}, ESS/s "
                           f"{_median(runs[1:], 'ess_per_s'):.0f}")
                print(f"{problem}/{engine}: {summary}, load {load:.1f}", flush=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "python": platform.python_version(), "started": started,
               "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "settings": SETTINGS,
                                          "results": results}, indent=1))
    print(table(results) + "\n\n" + laplace_table(results))


if __name__ == "__main__":
    main()
