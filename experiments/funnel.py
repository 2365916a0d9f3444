"""What NUTS reports on a funnel: eight schools, centered and non-centered, over many seeds.

The centered eight-schools posterior (theta_j ~ N(mu, tau), mu ~ N(0, 5), tau ~ C+(0, 5)) is
a funnel whose neck (tau near 0) no fixed step size can explore: every NUTS is biased there,
and what matters is that it *says so*. The non-centered model is the same posterior in
coordinates without a funnel: there a warning is a false alarm. For each engine and seed this
script runs 4 chains x (1000 warm-up + 1000 draws) and records, from the draws alone (the same
ArviZ computations for every engine): divergences after warm-up, the largest R-hat (flag:
> 1.01), the smallest E-BFMI (flag: < 0.3), and tau's 5% quantile (posteriordb's reference,
non-centered Stan, 10 x 1000 draws: 0.257; the funnel's bias raises it). Engines:

``mlemap`` / ``mlemap-diag`` / ``mlemap-numpyro``
    ``mm.sample`` with ``metric="auto"`` (dense at d = 10, the default), ``"diag"``, and
    ``"numpyro"`` (NumPyro's own window adaptation); ``--inits`` (default ``uniform,prior``:
    the centered model has no MAP, so ``init="map"`` is not an option).
``nutpie-diag`` / ``nutpie-lowrank``
    nutpie (numba backend) on the PyMC model, its defaults (400 or 800 warm-up
    iterations), ``adaptation="diag"`` / ``"low_rank"``. Needs the ``bench`` extra.

Usage::

    python experiments/funnel.py --seeds 20 --out results/funnel.json
    python experiments/funnel.py --engines nutpie-diag,nutpie-lowrank --seeds 8
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

ENGINES = ("mlemap", "mlemap-diag", "mlemap-numpyro", "nutpie-diag", "nutpie-lowrank")
MODELS = ("centered", "noncentered")
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
SETTINGS = {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}
RHAT_MAX, BFMI_MIN = 1.01, 0.3


def _mlemap_model(kind):
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    import mlemap as mm

    hyper = {"mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
             "tau": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(5.0))}
    if kind == "centered":
        return mm.Model(
            {"theta": mm.Param((8,), prior=lambda p: dist.Normal(p["mu"], p["tau"])), **hyper},
            lambda p, d: dist.Normal(p["theta"], d["sigma"]).log_prob(d["y"]))
    return mm.Model(
        {**hyper, "z": mm.Param((8,), prior=dist.Normal(0.0, 1.0))},
        lambda p, d: dist.Normal(p["mu"] + p["tau"] * p["z"], d["sigma"]).log_prob(d["y"]))


def _mlemap(kind, engine, init):
    import mlemap as mm

    model, data = _mlemap_model(kind), {"y": Y, "sigma": SIGMA}
    metric = {"mlemap": "auto", "mlemap-diag": "diag", "mlemap-numpyro": "numpyro"}[engine]

    def call(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # measured below, from the draws
            return mm.sample(model, data, seed=seed, init=init, metric=metric,
                             progress_bar=False, **SETTINGS)

    return call


def _nutpie(kind, engine):
    import nutpie
    import pymc as pm

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        if kind == "centered":
            theta = pm.Normal("theta", mu, tau, shape=8)
        else:
            theta = mu + tau * pm.Normal("z", 0.0, 1.0, shape=8)
        pm.Normal("y", theta, SIGMA, observed=Y)
    compiled = nutpie.compile_pymc_model(model, backend="numba")

    def call(seed):
        return nutpie.sample(compiled, chains=SETTINGS["num_chains"],
                             draws=SETTINGS["num_samples"], seed=seed, progress_bar=False,
                             adaptation="low_rank" if engine == "nutpie-lowrank" else "diag")

    return call


def measure(dt) -> dict:
    """Divergences, max R-hat, min E-BFMI and tau's 5% quantile of one run's DataTree."""
    import arviz_stats

    rhat = arviz_stats.rhat(dt, group="posterior")
    return {
        "divergences": int(dt.sample_stats["diverging"].values.sum()),
        "max_rhat": float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars)),
        "min_bfmi": float(np.min(arviz_stats.bfmi(dt)["energy"].values)),
        "tau_q05": float(np.quantile(dt.posterior["tau"].values, 0.05)),
    }


def summarize(runs: list[dict]) -> dict:
    flags = [{"divergences": r["divergences"] > 0, "r_hat": r["max_rhat"] > RHAT_MAX,
              "e_bfmi": r["min_bfmi"] < BFMI_MIN} for r in runs]
    return {
        "runs": len(runs),
        "runs_with_divergences": sum(f["divergences"] for f in flags),
        "runs_with_rhat_flag": sum(f["r_hat"] for f in flags),
        "runs_with_bfmi_flag": sum(f["e_bfmi"] for f in flags),
        "runs_flagged": sum(any(f.values()) for f in flags),
        "divergences_median": float(np.median([r["divergences"] for r in runs])),
        "divergences_range": [min(r["divergences"] for r in runs),
                              max(r["divergences"] for r in runs)],
        "tau_q05_median": float(np.median([r["tau_q05"] for r in runs])),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--inits", default="uniform,prior")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", default="results/funnel.json")
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    results = []
    for kind in MODELS:
        for engine in args.engines.split(","):
            inits = args.inits.split(",") if engine.startswith("mlemap") else ["default"]
            for init in inits:
                call = _mlemap(kind, engine, init) if engine.startswith("mlemap") else (
                    _nutpie(kind, engine))
                row = {"model": kind, "engine": engine, "init": init,
                       **summarize([measure(call(seed)) for seed in range(args.seeds)])}
                results.append(row)
                print(f"{kind:12s} {engine:15s} {init:8s} flagged {row['runs_flagged']}/"
                      f"{row['runs']}: divergences {row['runs_with_divergences']}, R-hat "
                      f"{row['runs_with_rhat_flag']}, E-BFMI {row['runs_with_bfmi_flag']}; "
                      f"divergences median {row['divergences_median']:.0f} (range "
                      f"{row['divergences_range'][0]}-{row['divergences_range'][1]}); "
                      f"tau q05 median {row['tau_q05_median']:.3f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": SETTINGS, "results": results}, indent=1))


if __name__ == "__main__":
    main()
