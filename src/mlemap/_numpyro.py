"""NumPyro models as they are: a model function becomes an mlemap :class:`~mlemap.Model`.

A NumPyro model ``def model(X, y=None): ...`` is traced once, seeded, with NumPyro's own
effect handlers (``seed``, ``trace``); its sites are read as NumPyro reads them
(``numpyro.infer.util``): a ``sample`` site with ``is_observed`` is data, any other
``sample`` site is a latent parameter with its distribution's support, a ``param`` site is a
parameter without a prior (its ``constraint``), a ``deterministic`` site a derived quantity.
The unconstrained coordinates are NumPyro's too: ``Param.constraint`` is the site's support,
mapped by ``biject_to`` as in ``numpyro.infer.util.potential_energy``.

What NumPyro keeps in one joint density mlemap keeps apart: the *likelihood* (observed
sites) is what MLE maximizes and PSIS-LOO scores, the *prior* (latent sites) is the MAP's
penalty. So the model runs under ``substitute`` (the parameters' values) in two roles:

- ``log_likelihood(params, data)``: every observed site's ``log_prob`` (times its ``scale``,
  as NumPyro's ``log_density``), each summed over all but its leading batch axis (the
  observations; a site without batch axes is one observation), concatenated: ``(n_obs,)``.
- each latent site's prior: a conditional prior (``params -> Distribution``), the site's
  distribution given the other parameters (hierarchies as ``theta ~ N(mu, tau)``).

Written here because NumPyro has no such split: its ``log_density`` sums everything into one
number, and ``log_likelihood`` (``numpyro.infer.util``) needs posterior samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from mlemap._model import Model, Param

__all__ = ["from_numpyro"]


def from_numpyro(model_fn: Callable, *args, **kwargs) -> tuple[Model, dict]:
    """An mlemap Model, and its data, from a NumPyro model function and its arguments.

    Parameters
    ----------
    model_fn : callable
        A NumPyro model, ``model_fn(*args, **kwargs)``, with ``numpyro.sample`` statements
        (``obs=`` for the data), and optionally ``numpyro.param``, ``numpyro.deterministic``
        and ``numpyro.plate``. Every latent site must be continuous.
    *args, **kwargs
        Its arguments. Arrays (NumPy, JAX, pandas, lists of numbers) become the returned
        ``data`` (arguments of every compiled program: refit on new data of the same shapes
        with ``fit(model, data)``); anything else (ints used as sizes, ``None``, strings) is
        kept with the model as a constant.

    Returns
    -------
    model : Model
        One :class:`~mlemap.Param` per latent site (shape of its value, constraint its
        distribution's support, prior its distribution given the other sites) and per
        ``param`` site (its ``constraint``, flat prior), in the order the model runs them;
        the pointwise log-likelihood of the observed sites (``(n_obs,)``: each observed
        site's log-density summed over all but its leading axis, sites concatenated); the
        ``deterministic`` sites as ``derived``.
    data : dict
        ``{"args": (...), "kwargs": {...}}``, the array arguments (``None`` where an
        argument is a constant).

    Raises
    ------
    TypeError
        ``model_fn`` is not callable, or fails when run on the arguments.
    ValueError
        A latent site is discrete (no gradient: marginalize it out, as
        ``numpyro.contrib.funsor`` would, or pass its values as data); no observed site;
        a ``numpyro.factor`` (neither likelihood nor prior).

    Notes
    -----
    A latent site's prior is evaluated with the arguments given here: a prior that depends
    on the *values* of the data (not only their shapes) keeps those values when the model
    is refitted on other data. A support that depends on other latent sites (``Uniform(0,
    tau)``) is taken at the traced values; write such a model with a fixed support.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model(x, y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    ...     with numpyro.plate("n", x.shape[0]):
    ...         numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> model, data = from_numpyro(model, np.zeros(3), y=np.array([0.1, -0.2, 0.3]))
    >>> sorted(model.params)
    ['mu']
    """
    if not callable(model_fn):
        raise TypeError(f"model_fn must be a NumPyro model function; got {model_fn!r}.")
    data, rebuild = _split_arguments(args, kwargs)
    trace = _run(model_fn, *rebuild(data))
    latent, observed, deterministic = _sites(trace)
    params = {name: _param(model_fn, rebuild, data, site) for name, site in latent.items()}
    run = lambda params, data: _run(model_fn, *rebuild(data), params)  # noqa: E731

    def log_likelihood(params, data):
        trace = run(params, data)
        return jnp.concatenate([_pointwise(trace[name]) for name in observed])

    def derived(params, data):
        trace = run(params, data)
        return {name: trace[name]["value"] for name in deterministic}

    model = Model(params, log_likelihood, derived=derived if deterministic else None)
    return model, data


def _run(model_fn, args, kwargs, params=None) -> dict:
    """The model's trace: seeded (nothing random is drawn once every latent is substituted),
    with ``params`` substituted."""
    seeded = handlers.seed(model_fn, rng_seed=0)
    if params is not None:
        seeded = handlers.substitute(seeded, data=params)
    try:
        return handlers.trace(seeded).get_trace(*args, **kwargs)
    except Exception as error:
        if params is not None:
            raise
        raise TypeError(f"The NumPyro model {getattr(model_fn, '__name__', model_fn)!r} failed "
                        f"on the given arguments: {type(error).__name__}: {error}") from error


def _sites(trace: dict) -> tuple[dict, list[str], list[str]]:
    """Latent and param sites (by name, in order), observed and deterministic site names."""
    latent, observed, deterministic, discrete, factors = {}, [], [], [], []
    for name, site in trace.items():
        if site["type"] == "deterministic":
            deterministic.append(name)
        elif site["type"] == "param":
            latent[name] = site
        elif site["type"] == "sample":
            if site["is_observed"]:
                (factors if _is_unit(site) else observed).append(name)
            elif site["fn"].support.is_discrete:
                discrete.append(name)
            else:
                latent[name] = site
    if discrete:
        raise ValueError(
            f"The NumPyro model has discrete latent site(s) {discrete}: fit, laplace and "
            "sample need gradients with respect to every parameter. Marginalize them out "
            "(sum over their values in the likelihood), or pass their values as data (obs=).")
    if factors:
        raise ValueError(
            f"The NumPyro model has numpyro.factor site(s) {factors}, which are neither "
            "likelihood nor prior for mlemap. Write the term as an observed site or a prior.")
    if not observed:
        raise ValueError("The NumPyro model has no observed site (numpyro.sample(..., obs=y)): "
                         "there is no likelihood. Pass the data among its arguments.")
    if not latent:
        raise ValueError("The NumPyro model has no latent sample or param site: nothing to fit.")
    return latent, observed, deterministic


def _is_unit(site) -> bool:
    return type(site["fn"]).__name__ == "Unit"


def _param(model_fn, rebuild, data, site) -> Param:
    """The Param of a latent site (its support, and its distribution given the others as a
    conditional prior), or of a param site (its constraint, flat)."""
    shape = tuple(jnp.shape(site["value"]))
    if site["type"] == "param":
        return Param(shape, site["kwargs"].get("constraint", constraints.real))
    name = site["name"]
    args, kwargs = rebuild(data)

    def prior(params):
        return _run(model_fn, args, kwargs, params)[name]["fn"]

    return Param(shape, site["fn"].support, prior)


def _pointwise(site) -> jax.Array:
    """An observed site's log-density per observation: summed over all but the leading batch
    axis, times the site's scale."""
    log_p = site["fn"].log_prob(site["value"])
    if site["scale"] is not None:
        log_p = site["scale"] * log_p
    log_p = jnp.asarray(log_p)
    return log_p.reshape(1) if log_p.ndim == 0 else log_p.reshape(log_p.shape[0], -1).sum(-1)


def _split_arguments(args: tuple, kwargs: dict) -> tuple[dict, Callable]:
    """The arrays among the arguments as ``data``, and ``rebuild(data) -> (args, kwargs)``
    that puts them back among the constants."""
    is_array = [_is_array(a) for a in args]
    is_array_kw = {k: _is_array(v) for k, v in kwargs.items()}
    data = {"args": tuple(_array(a) if is_array[i] else None for i, a in enumerate(args)),
            "kwargs": {k: _array(v) for k, v in kwargs.items() if is_array_kw[k]}}

    def rebuild(data: dict) -> tuple[tuple, dict]:
        new_args = tuple(data["args"][i] if is_array[i] else a for i, a in enumerate(args))
        new_kwargs = {k: data["kwargs"][k] if is_array_kw[k] else v for k, v in kwargs.items()}
        return new_args, new_kwargs

    return data, rebuild


def _is_array(value: Any) -> bool:
    if isinstance(value, np.ndarray | jax.Array) or hasattr(value, "to_numpy"):
        return True
    if isinstance(value, list) and value:  # not tuples: they are often shapes
        try:
            return np.asarray(value).dtype.kind in "biuf"
        except ValueError:
            return False
    return False


def _array(value: Any) -> np.ndarray | jax.Array:
    if isinstance(value, jax.Array):
        return value
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value)
