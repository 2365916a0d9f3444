"""Benchmark: mlemap.fit against scikit-learn, side by side in one run (float64).

1. Warm MAP fit of an L2 logistic regression, n = 100,000, d = 50, against
   ``LogisticRegression(solver="lbfgs")`` at the same tolerance (both stop when the largest
   gradient entry of the *mean* loss + penalty is below ``tol``: the same objective, the
   same test). Target: mlemap warm time <= 0.5x scikit-learn's. The cold time (trace +
   compile + run) is reported separately.
2. 1,000 small ridge and 1,000 small logistic fits (n = 200, d = 10) as one vmapped call
   (``batch="data"``) against a scikit-learn loop. Target: >= 20x faster.

Each timing is the median of ``--repeats`` runs after a warm-up; the machine may be shared,
so only the ratios mean something. Writes a JSON (``--out``) and prints a table.

    python experiments/benchmark_fit.py [--out results/benchmark_fit.json] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402

import mlemap as mm  # noqa: E402


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _block(estimate):
    jax.block_until_ready(estimate.params)
    return estimate


# scikit-learn's lbfgs also stops on a relative decrease of 64 eps (scipy's ``ftol``).
SKLEARN_FTOL = 64 * np.finfo(float).eps


def logistic_large(rng, repeats, n=100_000, d=50, C=1.0, tol=1e-6):
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) / np.sqrt(d)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ w)))).astype(float)
    model, data = mm.glm(X, y, family=mm.families.bernoulli(), prior=mm.priors.from_logistic(C))

    start = time.perf_counter()
    cold = _block(mm.fit(model, data, tol=tol, rtol=SKLEARN_FTOL))
    cold_s = time.perf_counter() - start

    def ours():
        return _block(mm.fit(model, data, tol=tol, rtol=SKLEARN_FTOL))

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LogisticRegression(C=C, solver="lbfgs", tol=tol, max_iter=10_000).fit(X, y)

    ours(), theirs()  # warm-up
    # Interleave the engines so that both see the same machine load.
    t_ours, t_sk = [], []
    for _ in range(repeats):
        t_ours.append(_median_time(ours, 1)[0])
        t_sk.append(_median_time(theirs, 1)[0])
    sk = theirs()
    est = ours()
    rel = float(np.max(np.abs(np.asarray(est.params["beta"]) - sk.coef_[0]))
                / np.max(np.abs(sk.coef_[0])))
    return {
        "n": n, "d": d, "C": C, "tol": tol,
        "mlemap_cold_s": cold_s,
        "mlemap_warm_s": statistics.median(t_ours),
        "sklearn_s": statistics.median(t_sk),
        "ratio_mlemap_over_sklearn": statistics.median(t_ours) / statistics.median(t_sk),
        "target_ratio_at_most": 0.5,
        "mlemap_steps": int(est.num_steps), "sklearn_iters": int(sk.n_iter_[0]),
        "max_coef_diff_relative_to_max_coef": rel,
        "converged": bool(cold.converged),
    }


def many_small(rng, repeats, kind, B=1000, n=200, d=10, tol=1e-6):
    X = rng.normal(size=(B, n, d))
    w = rng.normal(size=(B, d))
    eta = np.einsum("bnd,bd->bn", X, w)
    if kind == "ridge":
        alpha = 1.0
        y = eta + rng.normal(size=(B, n))
        family, prior = mm.families.gaussian(sigma=1.0), mm.priors.from_ridge(alpha)

        def sk_one(b):
            return Ridge(alpha=alpha).fit(X[b], y[b]).coef_
    else:
        C = 1.0
        y = (rng.uniform(size=(B, n)) < 1 / (1 + np.exp(-eta))).astype(float)
        family, prior = mm.families.bernoulli(), mm.priors.from_logistic(C)

        def sk_one(b):
            return LogisticRegression(C=C, tol=tol, max_iter=10_000).fit(X[b], y[b]).coef_[0]

    model, _ = mm.glm(X[0], y[0], family=family, prior=prior)
    data = {"X": jnp.asarray(X), "y": jnp.asarray(y)}

    start = time.perf_counter()
    _block(mm.fit(model, data, batch="data", tol=tol, rtol=SKLEARN_FTOL))
    cold_s = time.perf_counter() - start

    def ours():
        return _block(mm.fit(model, data, batch="data", tol=tol, rtol=SKLEARN_FTOL))

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.stack([sk_one(b) for b in range(B)])

    ours(), theirs()
    t_ours, t_sk = [], []
    for _ in range(repeats):
        t_ours.append(_median_time(ours, 1)[0])
        t_sk.append(_median_time(theirs, 1)[0])
    est, coef = ours(), theirs()
    diff = float(np.max(np.abs(np.asarray(est.params["beta"]) - coef)))
    return {
        "kind": kind, "num_fits": B, "n": n, "d": d, "tol": tol,
        "mlemap_cold_s": cold_s,
        "mlemap_warm_s": statistics.median(t_ours),
        "sklearn_loop_s": statistics.median(t_sk),
        "speedup_sklearn_over_mlemap": statistics.median(t_sk) / statistics.median(t_ours),
        "target_speedup_at_least": 20.0,
        "max_abs_coef_diff": diff,
        "all_converged": bool(np.all(est.converged)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_fit.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smaller problems, for CI")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    size = {"n": 20_000} if args.quick else {}
    count = {"B": 200} if args.quick else {}

    results = {
        "logistic_large": logistic_large(rng, args.repeats, **size),
        "ridge_many": many_small(rng, args.repeats, "ridge", **count),
        "logistic_many": many_small(rng, args.repeats, "logistic", **count),
        "environment": {
            "jax": jax.__version__, "sklearn": sklearn.__version__,
            "mlemap": mm.__dict__.get("__version__", "dev"),
            "device": str(jax.devices()[0]), "cpus": os.cpu_count(),
            "python": platform.python_version(), "seed": args.seed,
            "repeats": args.repeats, "quick": args.quick,
        },
    }
    big = results["logistic_large"]
    print(f"L2 logistic n={big['n']} d={big['d']} tol={big['tol']}: mlemap warm "
          f"{big['mlemap_warm_s']:.3f}s (cold {big['mlemap_cold_s']:.2f}s), sklearn lbfgs "
          f"{big['sklearn_s']:.3f}s -> ratio {big['ratio_mlemap_over_sklearn']:.2f} "
          f"(target <= 0.5); steps {big['mlemap_steps']} vs {big['sklearn_iters']}")
    for key in ("ridge_many", "logistic_many"):
        r = results[key]
        print(f"{r['num_fits']} {r['kind']} fits n={r['n']} d={r['d']}: mlemap vmapped "
              f"{r['mlemap_warm_s']:.3f}s (cold {r['mlemap_cold_s']:.2f}s), sklearn loop "
              f"{r['sklearn_loop_s']:.3f}s -> {r['speedup_sklearn_over_mlemap']:.1f}x "
              f"(target >= 20x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
