"""Simulation-based calibration (SBC) of ``mm.sample``'s NUTS (Talts et al. 2018).

Talts, Betancourt, Simpson, Vehtari and Gelman (2018), "Validating Bayesian inference
algorithms with simulation-based calibration", arXiv:1804.06788. For each replication
:math:`r = 1..R`:

1. draw the truth from the prior, :math:`\\tilde\\theta \\sim p(\\theta)`;
2. draw data from the likelihood, :math:`\\tilde y \\sim p(y \\mid \\tilde\\theta)`;
3. sample the posterior :math:`p(\\theta \\mid \\tilde y)` with ``mm.sample`` and thin the
   draws to :math:`L` roughly independent ones;
4. record the rank of the truth among the draws, :math:`\\#\\{l : \\theta_l < \\tilde\\theta\\}
   \\in \\{0, \\dots, L\\}`, for every scalar parameter.

If the sampler draws from the exact posterior, each rank is uniform on :math:`\\{0..L\\}`
(the data-averaged posterior is the prior). The ranks are binned into ``num_bins`` equal bins
(``L + 1`` divisible by ``num_bins``) and tested with Pearson's chi-square
(``scipy.stats.chisquare``), one test per scalar parameter.

Two models with proper priors, so that the truth can be drawn:

- ``linear_regression``: :math:`y_i \\sim N(\\alpha + x_i^\\top\\beta, \\sigma)`,
  :math:`\\alpha \\sim N(0, 1)`, :math:`\\beta_j \\sim N(0, 1)`, :math:`\\sigma \\sim
  \\mathrm{HalfNormal}(1)`, with a learned :math:`\\sigma` (a constrained parameter, so the
  log-Jacobian is exercised);
- ``logistic_regression``: :math:`y_i \\sim \\mathrm{Bernoulli}(\\mathrm{logit}^{-1}(\\alpha
  + x_i^\\top\\beta))`, same priors on :math:`\\alpha, \\beta`.

The design :math:`X_{ij} \\sim N(0, 1)` is drawn afresh for each replication (SBC holds
conditionally on any :math:`X`). Every replication has the same data shapes, so one
compiled ``mm.sample`` program serves them all (``mm.sample`` caches per model and data
shapes): after the first replication, nothing is traced or compiled.

Usage::

    python experiments/sbc.py --replications 100          # the full study -> results/
    python experiments/sbc.py --replications 30 --bins 5  # quicker

writes ``sbc.json`` (ranks, chi-square statistics and p-values, settings, timings) and
``sbc_ranks.png`` (rank histograms with the 99% band of a uniform histogram) to ``--out``,
each written to a temporary file and renamed into place. Exit status 0 when every p-value
is above ``--alpha`` (default 0.01), 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import scipy.stats  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402

import mlemap as mm  # noqa: E402

__all__ = [
    "SBCModel",
    "SBCResult",
    "linear_regression",
    "logistic_regression",
    "MODELS",
    "run_sbc",
    "rank_p_values",
    "plot_ranks",
    "main",
]


class SBCModel(NamedTuple):
    """A model with proper priors and a simulator of (truth, data) from them.

    ``simulate(rng) -> (truth, data)``: ``truth`` a dict of constrained values drawn from the
    priors, ``data`` drawn from the likelihood at the truth; shapes fixed by the model.
    """

    name: str
    model: mm.Model
    simulate: Callable[[np.random.Generator], tuple[dict[str, np.ndarray], dict[str, Any]]]


class SBCResult(NamedTuple):
    """Ranks of the truth among the thinned draws, one row per replication.

    ``ranks``: name -> ``(R,)`` ints in ``0..num_draws`` (flat scalar names, ``beta[0]``);
    ``num_draws`` (L); ``divergences``: ``(R,)`` divergent transitions per replication;
    ``warnings``: the sampler's warnings, one list per replication; timings in seconds.
    """

    model: str
    ranks: dict[str, np.ndarray]
    num_draws: int
    divergences: np.ndarray
    warnings: list[list[str]]
    compile_seconds: float
    seconds: float


# --------------------------------------------------------------------------------------------
# The two models
# --------------------------------------------------------------------------------------------


def linear_regression(n_obs: int = 20, n_features: int = 2) -> SBCModel:
    """Bayesian linear regression with a learned sigma, every prior proper."""
    priors = {"intercept": dist.Normal(0.0, 1.0), "beta": dist.Normal(0.0, 1.0),
              "sigma": dist.HalfNormal(1.0)}
    model = mm.Model(
        {
            "intercept": mm.Param(prior=priors["intercept"]),
            "beta": mm.Param((n_features,), prior=priors["beta"]),
            "sigma": mm.Param(constraint=constraints.positive, prior=priors["sigma"]),
        },
        lambda p, d: dist.Normal(p["intercept"] + d["X"] @ p["beta"], p["sigma"]).log_prob(
            d["y"]),
    )

    def simulate(rng):
        truth = {"intercept": rng.normal(), "beta": rng.normal(size=n_features),
                 "sigma": abs(rng.normal())}
        X = rng.normal(size=(n_obs, n_features))
        y = truth["intercept"] + X @ truth["beta"] + truth["sigma"] * rng.normal(size=n_obs)
        return truth, {"X": X, "y": y}

    return SBCModel("linear_regression", model, simulate)


def logistic_regression(n_obs: int = 30, n_features: int = 2) -> SBCModel:
    """Bayesian logistic regression, every prior proper."""
    model = mm.Model(
        {
            "intercept": mm.Param(prior=dist.Normal(0.0, 1.0)),
            "beta": mm.Param((n_features,), prior=dist.Normal(0.0, 1.0)),
        },
        lambda p, d: dist.Bernoulli(logits=p["intercept"] + d["X"] @ p["beta"]).log_prob(
            d["y"]),
    )

    def simulate(rng):
        truth = {"intercept": rng.normal(), "beta": rng.normal(size=n_features)}
        X = rng.normal(size=(n_obs, n_features))
        eta = truth["intercept"] + X @ truth["beta"]
        y = (rng.uniform(size=n_obs) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
        return truth, {"X": X, "y": y}

    return SBCModel("logistic_regression", model, simulate)


MODELS: dict[str, Callable[[], SBCModel]] = {
    "linear_regression": linear_regression,
    "logistic_regression": logistic_regression,
}


# --------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------


def _flat(model: mm.Model, values: dict[str, Any], lead: int) -> dict[str, np.ndarray]:
    """Named constrained values ``(*lead, *shape)`` -> flat scalar names -> ``(*lead,)``."""
    names = iter(model.flat_names())
    out = {}
    for name, param in model.params.items():
        array = np.asarray(values[name])
        array = array.reshape(array.shape[:lead] + (-1,))
        for j in range(array.shape[-1]):
            out[next(names)] = array[..., j]
    return out


def _replication_seeds(seed: int, model_name: str, num_replications: int):
    """One generator and one sampler seed per replication, from (seed, model, replication)."""
    tag = sum(model_name.encode())  # a stable per-model stream, independent of the order run
    for r in range(num_replications):
        rng = np.random.default_rng([seed, tag, r])
        yield rng, int(rng.integers(2**31 - 1))


def run_sbc(
    sbc_model: SBCModel,
    *,
    num_replications: int,
    num_warmup: int = 500,
    num_samples: int = 990,
    thin: int = 10,
    seed: int = 0,
    target_accept: float = 0.8,
) -> SBCResult:
    """Run SBC: ``num_replications`` (truth, data, posterior draws) triples, and the ranks.

    One chain per replication, ``num_warmup`` adaptation iterations, ``num_samples`` draws
    thinned by ``thin`` to ``L = num_samples // thin`` draws (NUTS draws of these small
    models are nearly uncorrelated at lag 10): ``mm.sample`` once per replication, one
    compiled program reused.
    """
    if num_samples % thin:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of thin ({thin}).")
    model = sbc_model.model
    seeds = list(_replication_seeds(seed, sbc_model.name, num_replications))
    truths, datasets = zip(*(sbc_model.simulate(rng) for rng, _ in seeds))
    truth = _flat(model, {k: np.stack([t[k] for t in truths]) for k in model.params}, 1)
    start = time.perf_counter()
    draws, divergences, messages, compile_seconds = _loop(
        model, datasets, [s for _, s in seeds], num_warmup, num_samples, target_accept)
    seconds = time.perf_counter() - start
    thinned = {k: v[:, thin - 1::thin] for k, v in draws.items()}  # (R, L)
    num_draws = num_samples // thin
    ranks = {k: np.sum(thinned[k] < truth[k][:, None], axis=1).astype(int) for k in truth}
    return SBCResult(sbc_model.name, ranks, num_draws, divergences, messages,
                     compile_seconds, seconds)


def _loop(model, datasets, sample_seeds, num_warmup, num_samples, target_accept):
    draws, divergences, messages, compile_seconds = [], [], [], 0.0
    for data, sample_seed in zip(datasets, sample_seeds, strict=True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dt = mm.sample(model, data, num_warmup=num_warmup, num_samples=num_samples,
                           num_chains=1, seed=sample_seed, init="prior",
                           target_accept=target_accept, progress_bar=False)
        messages.append([str(w.message) for w in caught])
        compile_seconds += float(dt.attrs["compile_seconds"])
        posterior = {k: np.asarray(dt.posterior[k])[0] for k in model.params}  # (S, ...)
        draws.append(_flat(model, posterior, 1))
        divergences.append(int(dt.sample_stats["diverging"].sum()))
    stacked = {k: np.stack([d[k] for d in draws]) for k in draws[0]}
    return stacked, np.asarray(divergences), messages, compile_seconds


# --------------------------------------------------------------------------------------------
# The test and the figure
# --------------------------------------------------------------------------------------------


def rank_p_values(result: SBCResult, num_bins: int) -> dict[str, dict[str, Any]]:
    """Pearson's chi-square test of uniform ranks, per scalar parameter.

    The ``L + 1`` possible ranks are grouped into ``num_bins`` bins of equal width; under
    uniformity each bin expects ``R / num_bins`` ranks.
    """
    values = result.num_draws + 1
    if values % num_bins:
        raise ValueError(f"num_bins ({num_bins}) must divide the number of possible ranks "
                         f"L + 1 = {values}; choose num_samples / thin + 1 divisible by it.")
    out = {}
    for name, ranks in result.ranks.items():
        counts = np.bincount(ranks * num_bins // values, minlength=num_bins)
        statistic, p_value = scipy.stats.chisquare(counts)
        out[name] = {"counts": counts.tolist(), "chi2": float(statistic),
                     "p_value": float(p_value)}
    return out


def plot_ranks(results: list[SBCResult], tests: dict[str, dict], num_bins: int, path: Path):
    """Rank histograms, one panel per scalar parameter, with the central 99% band of a bin's
    count under uniformity (Binomial(R, 1/num_bins))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r.ranks) for r in results)
    fig, axes = plt.subplots(len(results), cols, figsize=(2.6 * cols, 2.3 * len(results)),
                             squeeze=False, layout="tight")
    for ax in axes.ravel():
        ax.set_visible(False)
    for row, result in enumerate(results):
        num = len(next(iter(result.ranks.values())))
        low, high = scipy.stats.binom.ppf([0.005, 0.995], num, 1.0 / num_bins)
        for col, name in enumerate(result.ranks):
            ax = axes[row, col]
            ax.set_visible(True)
            test = tests[result.model][name]
            ax.axhspan(low, high, color="0.85", zorder=0)
            ax.bar(np.arange(num_bins), test["counts"], width=0.9, color="C0")
            ax.axhline(num / num_bins, color="0.4", lw=0.8)
            ax.set_title(f"{result.model.split('_')[0]}: {name}\np = {test['p_value']:.3f}",
                         fontsize=8)
            ax.set_xticks([])
            ax.tick_params(labelsize=7)
    _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, renamed into place when complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="experiments/sbc.py",
        description="Simulation-based calibration of mm.sample (Talts et al. 2018): writes "
        "sbc.json and sbc_ranks.png to --out. Exits 1 when a rank test rejects uniformity "
        "(p <= --alpha), 2 on a usage error.")
    parser.add_argument("--replications", type=int, default=100,
                        help="replications per model (default 100)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)} (default: both)")
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=990,
                        help="draws per replication before thinning (default 990)")
    parser.add_argument("--thin", type=int, default=10,
                        help="keep every thin-th draw (default 10: L = 99 draws, 100 ranks)")
    parser.add_argument("--bins", type=int, default=10,
                        help="chi-square bins; must divide L + 1 (default 10)")
    parser.add_argument("--alpha", type=float, default=0.01,
                        help="fail when a p-value is at or below this (default 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="folder for sbc.json and sbc_ranks.png (default results)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}.")
    if args.replications < 2:
        parser.error(f"--replications must be >= 2; got {args.replications}.")
    if args.thin < 1 or args.num_samples % args.thin:
        parser.error(f"--num-samples ({args.num_samples}) must be a multiple of --thin "
                     f"({args.thin}).")
    if (args.num_samples // args.thin + 1) % args.bins:
        parser.error(f"--bins ({args.bins}) must divide L + 1 = "
                     f"{args.num_samples // args.thin + 1}.")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder.")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {args.out} cannot be created: {error}.")
    if not os.access(args.out, os.W_OK | os.X_OK):
        parser.error(f"--out {args.out} is not writable.")

    results, tests = [], {}
    for name in names:
        result = run_sbc(MODELS[name](), num_replications=args.replications,
                         num_warmup=args.num_warmup, num_samples=args.num_samples,
                         thin=args.thin, seed=args.seed)
        results.append(result)
        tests[name] = rank_p_values(result, args.bins)
        p = ", ".join(f"{k} {v['p_value']:.3f}" for k, v in tests[name].items())
        print(f"{name}: {args.replications} replications in {result.seconds:.1f} s "
              f"(compile {result.compile_seconds:.1f} s); p-values: {p}", flush=True)
    passed = all(t["p_value"] > args.alpha for model in tests.values() for t in model.values())
    summary = {
        "method": "simulation-based calibration, Talts et al. (2018), arXiv:1804.06788",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "passed": passed,
        "models": {
            r.model: {
                "num_draws": r.num_draws,
                "tests": tests[r.model],
                "ranks": {k: v.tolist() for k, v in r.ranks.items()},
                "divergences": int(r.divergences.sum()),
                "replications_with_warnings": sum(bool(w) for w in r.warnings),
                "compile_seconds": r.compile_seconds,
                "seconds": r.seconds,
            }
            for r in results
        },
        "versions": {p: importlib.metadata.version(p) for p in ("mlemap", "jax", "numpyro")},
        "device": jax.default_backend(),
    }
    _atomic_write(args.out / "sbc.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    plot_ranks(results, tests, args.bins, args.out / "sbc_ranks.png")
    print(f"{'PASS' if passed else 'FAIL'}: wrote {args.out / 'sbc.json'} and "
          f"{args.out / 'sbc_ranks.png'}", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
