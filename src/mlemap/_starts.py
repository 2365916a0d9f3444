"""Where NUTS's chains start: the MAP, prior draws, uniform draws or the user's values.

Every start has a finite log-density and gradient; random starts that do not are drawn
again, and an error names the term (log-likelihood, a log-prior, a log-Jacobian, the
gradient) that is not finite.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution

from mlemap import _metric
from mlemap._adapt import Seed, seed_step_size
from mlemap._density import distributions, log_density_fn, log_density_terms, merge_priors
from mlemap._diagnose import Status
from mlemap._fit import fit
from mlemap._laplace import curvature
from mlemap._model import Model, check_param_names
from mlemap._programs import compiled
from mlemap._shard import to_host

__all__ = ["initial_positions", "initial_state", "laplace_seed", "gaussian_seed",
           "prior_positions",
           "SamplingWarning", "Start", "SEED_MAX_DIM"]

#: Half-width of the uniform jitter around the MAP (unconstrained space) for ``init="map"``.
MAP_JITTER = 0.1
#: Half-width of Stan's and NumPyro's default uniform initialization (unconstrained space).
UNIFORM_RADIUS = 2.0
#: How many times a random start that gives a non-finite log-density is drawn again.
MAX_INIT_TRIES = 20
#: Above this dimension the metric is not seeded from the Laplace approximation (its
#: Hessian costs ``dim`` gradients and ``dim**2`` numbers).
SEED_MAX_DIM = 2048


class Start(NamedTuple):
    """Starting points ``(num_chains, dim)``, the init used, and the MAP (unconstrained,
    ``(dim,)``) when ``init="map"`` found one, else None."""

    positions: jax.Array
    init: str
    mode: jax.Array | None


class SamplingWarning(UserWarning):
    """A sampling diagnostic failed (divergences, R-hat, ESS, tree depth, drifting draws), or
    the chains could not start where asked."""


def _start_terms_fn(model: Model) -> Callable:
    """Build ``terms(positions (C, dim), data, priors) -> dict name -> (C,)`` of each finite
    check (``priors``: the overrides, merged over the model's own).

    The log-likelihood, each parameter's log-prior and log-Jacobian, and whether the gradient
    of the whole log-density is finite: so an error can name the term that is not finite.
    """
    log_density = log_density_fn(model, prior=True, jacobian=True)

    def terms(position, data, priors):
        merged = merge_priors(model, priors)
        out = log_density_terms(model, position, data, merged)
        grad = jax.grad(log_density)(position, data, merged)
        out["gradient"] = jnp.where(jnp.all(jnp.isfinite(grad)), 0.0, jnp.nan)
        return out

    return jax.vmap(terms, in_axes=(0, None, None))


def _finite_at(model, positions, data, priors) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which starting points have a finite log-density and gradient, and every term."""
    program = compiled(model, ("sample", "start-terms"), lambda m: _start_terms_fn(m),
                       positions, data, priors)
    terms = {k: to_host(v) for k, v in program.run(positions, data, priors).items()}
    finite = np.all([np.isfinite(v) for v in terms.values()], axis=0)
    return finite, terms


def _describe_bad_start(terms: dict[str, np.ndarray], chain: int) -> str:
    bad = [name for name, v in terms.items() if not np.isfinite(v[chain])]
    values = ", ".join(f"{name} = {terms[name][chain]}" for name in bad if name != "gradient")
    if "gradient" in bad:
        values = (values + ", " if values else "") + "the gradient has non-finite entries"
    return values


def _uniform_positions(model, rng_key, num_chains):
    """NumPyro's ``init_to_uniform`` / Stan's default: U(-2, 2) in unconstrained space."""
    return jax.random.uniform(
        rng_key, (num_chains, model.dim), minval=-UNIFORM_RADIUS, maxval=UNIFORM_RADIUS
    )


def prior_positions(model, priors, rng_key, num_chains):
    """A draw from each proper prior (the overrides ``priors`` merged over the model's own,
    mapped to unconstrained space), U(-2, 2) where flat."""
    merged = merge_priors(model, priors)
    rows = []
    for key in jax.random.split(rng_key, num_chains):
        parts = []
        for name, param in model.params.items():
            key, sub = jax.random.split(key)
            u = None
            # A conditional (hierarchical) prior needs the others' values: start uniform.
            if isinstance(merged[name], Distribution):
                prior = merged[name]
                own = len(prior.batch_shape) + len(prior.event_shape)
                sample_shape = param.shape[: len(param.shape) - own]
                value = jnp.broadcast_to(prior.sample(sub, sample_shape), param.shape)
                u = param.transform.inv(value)
                if not bool(jnp.all(jnp.isfinite(u))):
                    u = None  # a draw on the boundary of the support: fall back to uniform
            if u is None:
                u = jax.random.uniform(
                    sub, param.unconstrained_shape, minval=-UNIFORM_RADIUS,
                    maxval=UNIFORM_RADIUS,
                )
            parts.append(jnp.ravel(u))
        rows.append(jnp.concatenate(parts))
    return jnp.stack(rows).astype(jnp.result_type(float))


def _map_positions(model, data, priors, rng_key, num_chains):
    """The ``jacobian=True`` MAP (``mm.fit``, same priors) with U(-0.1, 0.1) jitter per chain,
    and the MAP; or None, None and why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a failed fit is reported below, once
            estimate = fit(model, data, method="map", jacobian=True,
                           priors=distributions(priors))
    except NotImplementedError as err:
        reason = f"mm.fit is not available ({err})"
    except Exception as err:  # noqa: BLE001 - any failure of the optimizer means: fall back
        reason = f"mm.fit raised {type(err).__name__}: {err}"
    else:
        center = jnp.asarray(estimate.position)
        if estimate.result in _STARTS and bool(jnp.all(jnp.isfinite(center))):
            jitter = jax.random.uniform(
                rng_key, (num_chains, model.dim), minval=-MAP_JITTER, maxval=MAP_JITTER
            )
            return center[None, :] + jitter, center, None
        reason = f"the MAP optimization found no interior point to start from ({estimate.message})"
    return None, None, reason


#: Fits whose end point is a good start for the chains though it may not be a converged
#: maximum: a point of high density all the same (a kink of an absolute-error likelihood
#: stops the gradient test, not NUTS). The others run off to infinity or to a boundary.
_STARTS = (Status.CONVERGED, Status.STALLED, Status.MAX_STEPS, Status.NOT_UNIQUE,
           Status.SADDLE)


def _dict_positions(model, init, num_chains):
    """User values (constrained): each of the parameter's shape, or (num_chains, *shape)."""
    check_param_names(model, init, "init's names", "Give one value per parameter, with "
                      f"the shapes {_expected_shapes(model, num_chains)}.")
    per_chain = []
    for c in range(num_chains):
        values = {}
        for name, param in model.params.items():
            value = np.asarray(init[name], dtype=float)
            if value.shape == param.shape:
                values[name] = value
            elif value.shape == (num_chains, *param.shape):
                values[name] = value[c]
            else:
                raise ValueError(
                    f"init[{name!r}] has shape {value.shape}; expected {param.shape} (one start "
                    f"shared by every chain) or {(num_chains, *param.shape)} (one per chain)."
                )
        per_chain.append(model.unconstrain(values))
    positions = jnp.stack(per_chain)
    if not bool(jnp.all(jnp.isfinite(positions))):
        raise ValueError(
            "init has a value outside a parameter's support (its unconstrained value is not "
            f"finite): constraints are { {n: str(p.constraint) for n, p in model.params.items()} }."
        )
    return positions


def _expected_shapes(model, num_chains):
    return {name: f"{p.shape} or {(num_chains, *p.shape)}" for name, p in model.params.items()}


def initial_positions(model, data, priors, init, rng_key, num_chains):
    """``(positions, init used)``: :func:`initial_state` without the MAP."""
    start = initial_state(model, data, priors, init, rng_key, num_chains)
    return start.positions, start.init


def initial_state(model, data, priors, init, rng_key, num_chains) -> Start:
    """Starting points ``(num_chains, dim)``, each with a finite log-density and gradient.

    Random starts ("map", "prior", "uniform") that are not finite are drawn again, up to
    ``MAX_INIT_TRIES`` times; an error names the term (log-likelihood, a log-prior, a
    log-Jacobian, the gradient) that is not finite.
    """
    if isinstance(init, Mapping):
        positions = _dict_positions(model, init, num_chains)
        finite, terms = _finite_at(model, positions, data, priors)
        if not finite.all():
            c = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"The log-density is not finite at the given init for chain {c}: "
                f"{_describe_bad_start(terms, c)}. Choose starting values inside the region "
                "where the likelihood and the priors are finite."
            )
        return Start(positions, "dict", None)

    mode = None
    if init == "map":
        map_key, rng_key = jax.random.split(rng_key)
        positions, mode, reason = _map_positions(model, data, priors, map_key, num_chains)
        if positions is None:
            warnings.warn(
                f"init='map': {reason}; the chains start from init='prior' instead.",
                SamplingWarning,
                stacklevel=3,
            )
            init = "prior"
    if init == "prior":
        draw = lambda key: prior_positions(model, priors, key, num_chains)  # noqa: E731
    elif init == "uniform":
        draw = lambda key: _uniform_positions(model, key, num_chains)  # noqa: E731
    if init != "map":
        rng_key, sub = jax.random.split(rng_key)
        positions = draw(sub)
    for _ in range(MAX_INIT_TRIES):
        finite, terms = _finite_at(model, positions, data, priors)
        if finite.all():
            return Start(positions, init, mode)
        rng_key, sub = jax.random.split(rng_key)
        fresh = _uniform_positions(model, sub, num_chains)
        positions = jnp.where(jnp.asarray(finite)[:, None], positions, fresh)
    raise ValueError(
        f"The log-density is not finite at any of {MAX_INIT_TRIES} random starting points "
        f"(init={init!r}, then U(-{UNIFORM_RADIUS:g}, {UNIFORM_RADIUS:g}) in unconstrained "
        f"space); at the last one: {_describe_bad_start(terms, int(np.flatnonzero(~finite)[0]))}. "
        "Check the data (NaN or inf, values outside the likelihood's support) and the "
        "priors, or pass init as a dict of values where the density is finite."
    )


def laplace_seed(model, data, priors, start: Start, rank: int, target_accept: float,
                 rng_key) -> tuple[jax.Array, Seed] | None:
    """:func:`gaussian_seed` of the Laplace approximation at the MAP of ``start``, or None
    (no MAP, ``dim > SEED_MAX_DIM``, or a Hessian that is not negative definite)."""
    if start.mode is None or model.dim > SEED_MAX_DIM or model.dim == 0:
        return None
    curv = curvature(model, data, start.mode, "map", merge_priors(model, priors))
    if curv.cov is None:
        return None
    return gaussian_seed(model, data, priors, start, start.mode, curv.cov, curv.hessian, rank,
                         target_accept, rng_key)


def gaussian_seed(model, data, priors, start: Start, mode, cov, hessian, rank: int,
                  target_accept: float, rng_key) -> tuple[jax.Array, Seed]:
    """Starting points and NUTS's first metric and step size from a Gaussian approximation
    :math:`N(\\hat u, \\Sigma)` with :math:`\\Sigma = (-H)^{-1}`.

    The metric is :func:`mlemap._metric.from_covariance` of :math:`\\Sigma` (``rank``
    eigenpairs; exact when ``rank = dim``), the step size :func:`mlemap._adapt.seed_step_size`
    of the largest eigenvalue of :math:`-A^\\top H A` (:math:`A` the metric's linear map:
    1 when exact), and each chain starts at a draw :math:`F(z)`, :math:`z \\sim N(0, I)`
    (in the typical set of a near-Gaussian posterior, where the MAP is not), or where
    ``start`` put it when the log-density is not finite at the draw.
    """
    metric = _metric.from_covariance(np.asarray(mode), np.asarray(cov), rank)
    linear = np.asarray(jax.jacfwd(lambda x: _metric.to_position(metric, x))(
        jnp.zeros_like(metric.center)))
    largest = float(np.linalg.eigvalsh(linear.T @ (-np.asarray(hessian)) @ linear)[-1])
    step_size = seed_step_size(largest, model.dim, target_accept)
    num_chains = start.positions.shape[0]
    z = jax.random.normal(rng_key, start.positions.shape, start.positions.dtype)
    draws = jax.vmap(lambda x: _metric.to_position(metric, x))(z)
    finite, _ = _finite_at(model, draws, data, priors)
    positions = jnp.where(jnp.asarray(finite)[:, None], draws, start.positions)
    seed = Seed(jax.tree.map(lambda a: jnp.broadcast_to(a, (num_chains, *a.shape)), metric),
                jnp.full(num_chains, step_size, start.positions.dtype))
    return positions, seed
