"""posterior(): the Laplace approximation corrected by importance sampling when it passes
PSIS's test, NUTS seeded from the same mode otherwise.

With :math:`S` draws :math:`u_s \\sim q = \\mathcal N(\\hat u, \\Sigma)` (``mm.laplace``) and
their importance ratios :math:`r_s = p(u_s) / q(u_s)`, Pareto-smoothed importance sampling
(Vehtari et al. 2024, arviz_stats' ``psislw``) smooths the largest ratios and estimates the
shape :math:`k` of their tail. Below :math:`\\min(1 - 1/\\log_{10} S,\\ 0.7)` (the paper's
sample-size-dependent threshold) the self-normalized estimates converge at a usable rate:
the draws are resampled with their smoothed weights (systematic resampling: an unweighted
sample, with repeats, that ArviZ reads as any other), and the effective sample size of the
weights, :math:`1 / \\sum_s \\tilde w_s^2`, is reported. Above, or when the Hessian is not
negative definite, NUTS (``mm.sample``, ``init="map"``) runs, its metric seeded from the
Laplace approximation at the same mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import arviz_stats  # noqa: F401  (registers the .azstats accessor)
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro.distributions import Distribution

from mlemap._checks import priors_override
from mlemap._data import as_arrays, check_data
from mlemap._density import argument_priors
from mlemap._draws import postprocess_fn, to_datatree
from mlemap._laplace import LaplaceWarning, laplace_at_every_draw
from mlemap._model import Model
from mlemap._programs import compiled
from mlemap._sample import sample

__all__ = ["posterior", "pareto_k_threshold", "psis_weights"]


def pareto_k_threshold(num_draws: int) -> float:
    """:math:`\\min(1 - 1/\\log_{10} S,\\ 0.7)`: the largest Pareto-k at which PSIS with
    :math:`S` draws is trusted (Vehtari et al. 2024, section 3)."""
    return float(min(1.0 - 1.0 / np.log10(num_draws), 0.7))


def psis_weights(log_ratios: np.ndarray) -> np.ndarray:
    """Pareto-smoothed, normalized importance weights ``(S,)`` of ``log_ratios`` =
    :math:`\\log p - \\log q` (arviz_stats' ``psislw``, whose LOO convention smooths
    ``exp(-x)``: hence the minus)."""
    da = xr.DataArray(-np.asarray(log_ratios, dtype=float)[None, :], dims=("chain", "draw"))
    log_weights, _ = da.azstats.psislw(dim=["chain", "draw"])
    log_weights = np.asarray(log_weights).ravel()
    weights = np.exp(log_weights - np.max(log_weights))
    return weights / np.sum(weights)


def posterior(
    model: Model,
    data: Any,
    *,
    num_draws: int = 4000,
    seed: int = 0,
    priors: Mapping[str, Distribution | None] | None = None,
    log_likelihood: bool = True,
    **sample_kwargs,
):
    """The posterior as draws in a DataTree: Laplace + PSIS when that passes, else NUTS.

    Parameters
    ----------
    model : Model
    data : pytree of arrays
    num_draws : int
        Draws of the Laplace approximation, :math:`S` (and of the resampled posterior).
    seed : int
        Seeds the Laplace draws, the resampling, and NUTS when it runs.
    priors : dict, optional
        Prior overrides, as in :func:`mlemap.fit`.
    log_likelihood : bool
        Store the pointwise log-likelihood at the draws (the ``log_likelihood`` group, what
        LOO reads), as :func:`mlemap.sample` does; ``False`` saves its time and memory
        (``num_draws x n`` numbers).
    **sample_kwargs
        Passed to :func:`mlemap.sample` when NUTS runs (``num_warmup``, ``num_chains``,
        ...); ``init`` is ``"map"``.

    Returns
    -------
    xarray.DataTree
        The groups of ``mm.sample``'s (``posterior`` with the derived quantities,
        ``log_likelihood`` unless ``log_likelihood=False``, ``log_prior``,
        ``observed_data``), and ``sample_stats`` only when NUTS ran. Root attrs:
        ``posterior_method`` (``"laplace_psis"`` or ``"nuts"``), ``posterior_reason`` (why,
        in words), ``pareto_k``, ``pareto_k_threshold``; for ``"laplace_psis"`` also
        ``importance_ess`` (:math:`1/\\sum_s \\tilde w_s^2` of the smoothed weights) and
        ``num_draws``. ``"laplace_psis"`` draws are one chain of :math:`S` draws resampled
        (systematic resampling) by their smoothed weights (repeated draws:
        ``importance_ess``, not ArviZ's ESS of the chain, is their effective sample size).
    """
    if "init" in sample_kwargs:
        raise TypeError("posterior runs NUTS from the MAP (init='map'); init cannot be given.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LaplaceWarning)
        # every draw's log-ratio: the weights below are of all S draws
        approx = laplace_at_every_draw(model, data, priors=priors, num_draws=num_draws,
                                       seed=seed)
    for w in caught:  # the approximation's warnings, but for Pareto-k's, which is said below
        if not str(w.message).startswith("laplace: Pareto-k"):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    threshold = pareto_k_threshold(num_draws)
    k = float(approx.pareto_k)
    if not approx.is_positive_definite:
        reason = "the Hessian at the mode is not negative definite: no Laplace approximation"
    elif not k < threshold:
        reason = (f"Pareto-k of the Laplace approximation's importance ratios is {k:.2f}, "
                  f"not below min(1 - 1/log10(S), 0.7) = {threshold:.2f} for S = {num_draws}")
    else:
        checked, _ = check_data(data, model)
        overrides, _ = priors_override(model, priors, False)
        arguments = as_arrays(argument_priors(model, overrides))
        return _reweighted(model, checked, arguments, approx, k, threshold, num_draws=num_draws,
                           seed=seed, log_likelihood=log_likelihood)
    dt = sample(model, data, priors=priors, seed=seed, init="map", log_likelihood=log_likelihood,
                **sample_kwargs)
    dt.attrs.update(posterior_method="nuts", posterior_reason=reason + ": NUTS ran instead",
                    pareto_k=k, pareto_k_threshold=threshold)
    return dt


def _reweighted(model, data, priors, approx, k: float, threshold: float, *, num_draws: int,
                seed: int, log_likelihood: bool):
    """The Laplace draws resampled by their PSIS weights, as a DataTree laid out as
    ``mm.sample``'s: ``posterior`` (parameters and derived quantities), ``log_likelihood``,
    ``log_prior`` and ``observed_data``; no ``sample_stats`` (there is no sampler)."""
    exact = k == -float("inf")  # constant ratios: the draws of q are the posterior's
    picks, ess = np.arange(num_draws), float(num_draws)
    if not exact:
        weights = psis_weights(np.asarray(approx.log_ratios))
        # Systematic resampling: one uniform, S evenly spaced points on the weights' CDF
        # (less resampling noise than S independent picks).
        points = (np.random.default_rng(seed).uniform() + np.arange(num_draws)) / num_draws
        picks = np.minimum(np.searchsorted(np.cumsum(weights), points), num_draws - 1)
        ess = float(1.0 / np.sum(weights**2))
    positions = _positions(model, approx.draws.posterior, picks)
    attrs = dict(
        posterior_method="laplace_psis", pareto_k=k, pareto_k_threshold=threshold,
        importance_ess=ess, num_draws=num_draws,
        posterior_reason=("the importance ratios are constant: the Laplace approximation is "
                          "exact" if exact else
                          f"Pareto-k {k:.2f} is below min(1 - 1/log10(S), 0.7) = "
                          f"{threshold:.2f} for S = {num_draws}: the Laplace draws, "
                          "importance-resampled"))
    post = compiled(model, ("sample", "postprocess", log_likelihood),
                    lambda m: postprocess_fn(m, log_likelihood), positions, data, priors)
    return to_datatree(model, data, post.run(positions, data, priors), attrs)


def _positions(model, draws, picks) -> jnp.ndarray:
    """The unconstrained positions ``(1, len(picks), dim)`` of the picked draws (each
    parameter's inverse transform, batched)."""
    parts = []
    for name, param in model.params.items():
        values = jnp.asarray(draws[name].values[0][picks])
        parts.append(jnp.reshape(param.transform.inv(values), (len(picks), -1)))
    return jnp.concatenate(parts, axis=1)[None]
