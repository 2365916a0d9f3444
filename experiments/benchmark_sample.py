"""Benchmark: ESS per second of ``mm.sample`` against NumPyro's own model-based NUTS.

Logistic regression, simulated: n = 5,000 rows, d = 20 coefficients,
``y_i ~ Bernoulli(sigmoid(x_i . beta))``, ``beta ~ N(0, 1)``. Both samplers run NUTS with the
same settings (warm-up, draws, chains, target acceptance, diagonal mass matrix, maximum tree
depth 10, U(-2, 2) initialization in unconstrained space). Each is run twice on the same
data; the second run is the "warm" one (compiled programs cached where the library caches
them) and the first run minus the second estimates the compile time.

The metric is the bulk ESS (``arviz_stats.ess``), minimum over the 20 coefficients, divided
by the wall-clock seconds of the warm call. For ``mm.sample`` the call is the whole user-facing
function (it also computes the (chain, draw, n) pointwise log-likelihood, the diagnostics and
the DataTree); ``sampling_seconds`` (NUTS alone) is reported too. ``mm.sample`` runs with its
default ``chain_method`` (the headline) and the other one of sequential/vectorized; NumPyro
with ``chain_method="sequential"`` (what its default ``"parallel"`` becomes on one device)
and ``"vectorized"``; the headline ratio is against the faster of the two. XLA compilations
in each call are counted (``jax.monitoring``), to show which library recompiles.

Usage::

    python experiments/benchmark_sample.py [--out results/benchmark_sample.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.monitoring  # noqa: E402

jax.config.update("jax_enable_x64", True)

import arviz_stats  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS, init_to_uniform  # noqa: E402

import mlemap as mm  # noqa: E402


class CompileCounter:
    """Counts XLA backend compilations and their seconds (``jax.monitoring`` events)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count, self.seconds = 0, 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event == self.EVENT:
            self.count += 1
            self.seconds += duration

    def snapshot(self):
        return self.count, self.seconds


COMPILES = CompileCounter()


def simulate(n: int, d: int, seed: int) -> dict[str, np.ndarray]:
    """X ~ N(0, I), beta ~ N(0, 0.5^2), y ~ Bernoulli(sigmoid(X beta))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = rng.normal(scale=0.5, size=d)
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-X @ beta))).astype(np.float64)
    return {"X": X, "y": y}


def mlemap_model(d: int) -> mm.Model:
    return mm.Model(
        {"beta": mm.Param((d,), prior=dist.Normal(0.0, 1.0))},
        lambda p, data: dist.Bernoulli(logits=data["X"] @ p["beta"]).log_prob(data["y"]),
    )


def numpyro_model(X, y):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)


def min_ess(posterior_beta: np.ndarray) -> float:
    """Bulk ESS, minimum over coefficients, of draws shaped (chain, draw, d)."""
    return float(np.min(arviz_stats.ess(posterior_beta, method="bulk")))


def run_mlemap(model, data, settings, chain_method, init):
    runs = []
    for seed in (0, 1):
        before = COMPILES.snapshot()
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dt = mm.sample(
                model, data, seed=seed, init=init, chain_method=chain_method,
                progress_bar=False, **settings,
            )
        seconds = time.perf_counter() - start
        runs.append(
            {
                "seconds": seconds,
                "sampling_seconds": float(dt.attrs["sampling_seconds"]),
                "compile_seconds": float(dt.attrs["compile_seconds"]),
                "min_ess_bulk": min_ess(dt.posterior["beta"].values),
                "divergences": int(dt.sample_stats["diverging"].sum()),
                "warnings": [str(w.message) for w in caught],
                "xla_compilations": COMPILES.count - before[0],
                "chain_method": dt.attrs["chain_method"],
            }
        )
    warm = runs[1]
    return {
        "library": "mlemap",
        "chain_method": chain_method or f"default ({runs[1]['chain_method']})",
        "init": init,
        "first_call_seconds": runs[0]["seconds"],
        "compile_seconds": runs[0]["compile_seconds"],
        "warm_seconds": warm["seconds"],
        "warm_sampling_seconds": warm["sampling_seconds"],
        "xla_compilations_first_call": runs[0]["xla_compilations"],
        "xla_compilations_second_call": warm["xla_compilations"],
        "min_ess_bulk": warm["min_ess_bulk"],
        "ess_per_second": warm["min_ess_bulk"] / warm["seconds"],
        "ess_per_sampling_second": warm["min_ess_bulk"] / warm["sampling_seconds"],
        "divergences": warm["divergences"],
        "warnings": warm["warnings"],
    }


def run_numpyro(data, settings, chain_method):
    kernel = NUTS(
        numpyro_model,
        target_accept_prob=settings["target_accept"],
        dense_mass=settings["dense_mass"],
        max_tree_depth=settings["max_tree_depth"],
        init_strategy=init_to_uniform,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        num_chains=settings["num_chains"],
        chain_method=chain_method,
        progress_bar=False,
    )
    X, y = jnp.asarray(data["X"]), jnp.asarray(data["y"])
    seconds, compiles = [], []
    for seed in (0, 1):
        before = COMPILES.snapshot()
        start = time.perf_counter()
        mcmc.run(jax.random.key(seed), X, y)
        beta = jax.block_until_ready(mcmc.get_samples(group_by_chain=True)["beta"])
        seconds.append(time.perf_counter() - start)
        compiles.append((COMPILES.count - before[0], COMPILES.seconds - before[1]))
    divergences = int(mcmc.get_extra_fields(group_by_chain=True)["diverging"].sum())
    ess = min_ess(np.asarray(beta))
    return {
        "library": "numpyro",
        "chain_method": chain_method,
        "first_call_seconds": seconds[0],
        "compile_seconds_estimate": seconds[0] - seconds[1],
        "xla_compilations_first_call": compiles[0][0],
        "xla_compilations_second_call": compiles[1][0],
        "xla_compile_seconds_second_call": compiles[1][1],
        "warm_seconds": seconds[1],
        "min_ess_bulk": ess,
        "ess_per_second": ess / seconds[1],
        "divergences": divergences,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_sample.json")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = simulate(args.n, args.d, args.seed)
    model = mlemap_model(args.d)
    settings = {
        "num_warmup": args.num_warmup,
        "num_samples": args.num_samples,
        "num_chains": args.num_chains,
        "target_accept": 0.8,
        "dense_mass": False,
        "max_tree_depth": 10,
    }
    results = [run_mlemap(model, data, settings, None, init="uniform")]
    print(json.dumps(results[-1]), flush=True)
    default = results[0]["chain_method"]
    other = "vectorized" if "sequential" in default else "sequential"
    results.append(run_mlemap(model, data, settings, other, init="uniform"))
    print(json.dumps(results[-1]), flush=True)
    with warnings.catch_warnings():
        # On one device, NumPyro says that "parallel" falls back to sequential; we ask for it.
        warnings.simplefilter("ignore")
        for chain_method in ("sequential", "vectorized"):
            results.append(run_numpyro(data, settings, chain_method))
            print(json.dumps(results[-1]), flush=True)

    mlemap_default = results[0]
    numpyro_best = max((r for r in results if r["library"] == "numpyro"),
                       key=lambda r: r["ess_per_second"])
    ratio = mlemap_default["ess_per_second"] / numpyro_best["ess_per_second"]
    summary = {
        "benchmark": "logistic regression NUTS, ESS_bulk(min)/s, warm call",
        "n": args.n,
        "d": args.d,
        "settings": settings,
        "ratio_mlemap_default_over_numpyro_best": ratio,
        "ratio_mlemap_default_over_numpyro_best_sampling_only": (
            mlemap_default["ess_per_sampling_second"] / numpyro_best["ess_per_second"]
        ),
        "runs": results,
        "platform": {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "jax": jax.__version__,
            "numpyro": numpyro.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"ESS/s ratio mlemap ({mlemap_default['chain_method']}) / NumPyro (best of "
          "sequential, vectorized): "
          f"{ratio:.2f}x -> {out}")
    return 0 if ratio >= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
