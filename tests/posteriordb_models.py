"""The posteriordb posteriors of ``shared/reference/posteriordb``, written as ``mm.Model``.

Each builder reads the folder's ``data.json`` (posteriordb's layout: matrices as lists of
rows), does the Stan program's ``transformed data`` block in NumPy, and returns
``(model, data)``. Priors are exactly those of the ``model.stan`` next to the data:

- Stan's ``normal(mu, sigma)`` takes a standard deviation, as NumPyro's ``Normal`` does;
  ``gamma(a, b)`` takes a rate, as NumPyro's ``Gamma(concentration, rate)`` does.
- A ``<lower=0>`` parameter with ``cauchy(0, s)`` or ``normal(0, s)`` is half-Cauchy or
  half-normal (the truncation constant does not change the posterior).
- A parameter with no prior statement is flat in its constrained space (``prior=None``); NUTS
  adds the log-Jacobian of the constraint itself.

Stan's hierarchical statement ``theta ~ normal(mu, tau)`` (eight_schools_centered) is a
conditional prior, ``mm.Param(prior=lambda p: dist.Normal(p["mu"], p["tau"]))``.

``BUILDERS`` maps each posterior's folder name to its builder; ``reference_index`` maps a
reference name such as ``beta[1]`` (1-based, like Stan) to a posterior variable and index.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

import mlemap as mm

POSITIVE = constraints.positive


def load_data(folder: Path) -> dict:
    """posteriordb's ``data.json`` as a dict of NumPy arrays (and Python ints)."""
    raw = json.loads((Path(folder) / "data.json").read_text())
    return {k: (np.asarray(v, dtype=float) if isinstance(v, list) else v) for k, v in raw.items()}


def reference_index(name: str) -> tuple[str, tuple[int, ...]]:
    """``"beta[2]"`` -> ``("beta", (1,))``; ``"tau"`` -> ``("tau", ())`` (0-based index)."""
    match = re.fullmatch(r"(\w+)(?:\[([\d,]+)\])?", name)
    if match is None:
        raise ValueError(f"Unexpected posteriordb parameter name {name!r}.")
    var, index = match.groups()
    return var, tuple(int(i) - 1 for i in index.split(",")) if index else ()


# --------------------------------------------------------------------------------------------
# eight schools
# --------------------------------------------------------------------------------------------


def eight_schools_noncentered(folder):
    """``theta = mu + tau * theta_trans``; theta_trans ~ N(0, 1), mu ~ N(0, 5), tau ~ C+(0, 5)."""
    raw = load_data(folder)
    data = {"y": raw["y"], "sigma": raw["sigma"]}
    J = int(raw["J"])

    def theta(p):
        return p["mu"] + p["tau"] * p["theta_trans"]

    model = mm.Model(
        {
            "theta_trans": mm.Param((J,), prior=dist.Normal(0.0, 1.0)),
            "mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
            "tau": mm.Param(constraint=POSITIVE, prior=dist.HalfCauchy(5.0)),
        },
        lambda p, d: dist.Normal(theta(p), d["sigma"]).log_prob(d["y"]),
        derived=lambda p, d: {"theta": theta(p)},
    )
    return model, data


def eight_schools_centered(folder):
    """theta_j ~ N(mu, tau) (a conditional prior), mu ~ N(0, 5), tau ~ C+(0, 5)."""
    raw = load_data(folder)
    data = {"y": raw["y"], "sigma": raw["sigma"]}
    J = int(raw["J"])

    def log_likelihood(p, d):
        return dist.Normal(p["theta"], d["sigma"]).log_prob(d["y"])

    model = mm.Model(
        {
            "theta": mm.Param((J,), prior=lambda p: dist.Normal(p["mu"], p["tau"])),
            "mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
            "tau": mm.Param(constraint=POSITIVE, prior=dist.HalfCauchy(5.0)),
        },
        log_likelihood,
    )
    return model, data


# --------------------------------------------------------------------------------------------
# linear regressions
# --------------------------------------------------------------------------------------------


def _linear_model(num_beta, beta_prior, sigma_prior):
    """y ~ N(X @ beta, sigma) with the data ``{"X", "y"}``."""
    return mm.Model(
        {
            "beta": mm.Param((num_beta,), prior=beta_prior),
            "sigma": mm.Param(constraint=POSITIVE, prior=sigma_prior),
        },
        lambda p, d: dist.Normal(d["X"] @ p["beta"], p["sigma"]).log_prob(d["y"]),
    )


def _design(*columns):
    return np.column_stack([np.ones_like(columns[0]), *columns])


def kidscore_momiq(folder):
    """kid_score ~ N(beta1 + beta2 mom_iq, sigma); beta flat, sigma ~ C+(0, 2.5)."""
    raw = load_data(folder)
    data = {"X": _design(raw["mom_iq"]), "y": raw["kid_score"]}
    return _linear_model(2, None, dist.HalfCauchy(2.5)), data


def kidscore_interaction(folder):
    """kid_score ~ N(beta . (1, mom_hs, mom_iq, mom_hs mom_iq), sigma); sigma ~ C+(0, 2.5)."""
    raw = load_data(folder)
    hs, iq = raw["mom_hs"], raw["mom_iq"]
    data = {"X": _design(hs, iq, hs * iq), "y": raw["kid_score"]}
    return _linear_model(4, None, dist.HalfCauchy(2.5)), data


def logearn_interaction_z(folder):
    """log(earn) ~ N(beta . (1, z_height, male, z_height male), sigma); all flat."""
    raw = load_data(folder)
    z = (raw["height"] - raw["height"].mean()) / raw["height"].std(ddof=1)  # Stan's sd: N - 1
    data = {"X": _design(z, raw["male"], z * raw["male"]), "y": np.log(raw["earn"])}
    return _linear_model(4, None, None), data


def logmesquite(folder):
    """log(weight) ~ N(beta . (1, log diam1, log diam2, log canopy, log total, log density,
    group), sigma); all flat."""
    raw = load_data(folder)
    logs = [np.log(raw[k]) for k in
            ("diam1", "diam2", "canopy_height", "total_height", "density")]
    data = {"X": _design(*logs, raw["group"]), "y": np.log(raw["weight"])}
    return _linear_model(7, None, None), data


def blr(folder):
    """y ~ N(X beta, sigma); beta ~ N(0, 10), sigma ~ N+(0, 10)."""
    raw = load_data(folder)
    data = {"X": raw["X"], "y": raw["y"]}
    return _linear_model(int(raw["D"]), dist.Normal(0.0, 10.0), dist.HalfNormal(10.0)), data


# --------------------------------------------------------------------------------------------
# time series, mixture, Gaussian process
# --------------------------------------------------------------------------------------------


def arK(folder):
    """AR(K): y_t ~ N(alpha + sum_k beta_k y_{t-k}, sigma) for t > K; alpha, beta ~ N(0, 10),
    sigma ~ C+(0, 2.5)."""
    raw = load_data(folder)
    K, T, y = int(raw["K"]), int(raw["T"]), raw["y"]
    lags = np.column_stack([y[K - k : T - k] for k in range(1, K + 1)])  # (T - K, K)
    data = {"lags": lags, "y": y[K:]}
    model = mm.Model(
        {
            "alpha": mm.Param(prior=dist.Normal(0.0, 10.0)),
            "beta": mm.Param((K,), prior=dist.Normal(0.0, 10.0)),
            "sigma": mm.Param(constraint=POSITIVE, prior=dist.HalfCauchy(2.5)),
        },
        lambda p, d: dist.Normal(p["alpha"] + d["lags"] @ p["beta"], p["sigma"]).log_prob(
            d["y"]
        ),
    )
    return model, data


def low_dim_gauss_mix(folder):
    """y_n ~ theta N(mu1, sigma1) + (1 - theta) N(mu2, sigma2); mu ordered ~ N(0, 2),
    sigma ~ N+(0, 2), theta ~ Beta(5, 5)."""
    raw = load_data(folder)

    def log_likelihood(p, d):
        y = d["y"][:, None]
        components = dist.Normal(p["mu"][None, :], p["sigma"][None, :]).log_prob(y)  # (N, 2)
        weights = jnp.log(jnp.stack([p["theta"], 1.0 - p["theta"]]))[None, :]
        return logsumexp(components + weights, axis=-1)

    model = mm.Model(
        {
            "mu": mm.Param((2,), constraint=constraints.ordered_vector,
                           prior=dist.Normal(0.0, 2.0)),
            "sigma": mm.Param((2,), constraint=POSITIVE, prior=dist.HalfNormal(2.0)),
            "theta": mm.Param(constraint=constraints.unit_interval, prior=dist.Beta(5.0, 5.0)),
        },
        log_likelihood,
    )
    return model, {"y": raw["y"]}


def gp_regr(folder):
    """y ~ MVN(0, alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + sigma I); rho ~ Gamma(25, 4),
    alpha ~ N+(0, 2), sigma ~ N+(0, 1). One joint observation: the log-likelihood is (1,)."""
    raw = load_data(folder)

    def log_likelihood(p, d):
        x = d["x"]
        sq = (x[:, None] - x[None, :]) ** 2
        cov = p["alpha"] ** 2 * jnp.exp(-sq / (2.0 * p["rho"] ** 2))
        cov = cov + p["sigma"] * jnp.eye(x.shape[0])
        return dist.MultivariateNormal(jnp.zeros(x.shape[0]), cov).log_prob(d["y"])[None]

    model = mm.Model(
        {
            "rho": mm.Param(constraint=POSITIVE, prior=dist.Gamma(25.0, 4.0)),
            "alpha": mm.Param(constraint=POSITIVE, prior=dist.HalfNormal(2.0)),
            "sigma": mm.Param(constraint=POSITIVE, prior=dist.HalfNormal(1.0)),
        },
        log_likelihood,
    )
    return model, {"x": raw["x"], "y": raw["y"]}


BUILDERS = {
    "eight_schools-eight_schools_noncentered": eight_schools_noncentered,
    "eight_schools-eight_schools_centered": eight_schools_centered,
    "kidiq-kidscore_momiq": kidscore_momiq,
    "kidiq-kidscore_interaction": kidscore_interaction,
    "earnings-logearn_interaction_z": logearn_interaction_z,
    "mesquite-logmesquite": logmesquite,
    "sblri-blr": blr,
    "arK-arK": arK,
    "low_dim_gauss_mix-low_dim_gauss_mix": low_dim_gauss_mix,
    "gp_pois_regr-gp_regr": gp_regr,
}
