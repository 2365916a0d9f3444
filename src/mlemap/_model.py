"""Models: named parameters, their supports and priors, and the flat unconstrained vector.

A :class:`Model` is written once. Every consumer (``fit``, ``laplace``, ``sample``) works on
one flat vector ``position`` of shape ``(dim,)`` in *unconstrained* space; this module maps it
to named, constrained parameters through NumPyro's ``biject_to`` (:meth:`Model.constrain`,
:meth:`Model.unconstrain`) and names its entries (:meth:`Model.flat_names` for the
constrained values, :meth:`Model.unconstrained_names` for the coordinates). The
log-densities over that vector are built in :mod:`mlemap._density`.

Names of entries: a parameter's axes may be named (``Param(dims=("coef",))``) and labelled
(``Model(coords={"coef": ["educ", "age"]})``), ArviZ's dims and coords. An entry is then
named by its labels, ``beta[educ]``, in every flat view (``flat_names``, ``compare``'s rows,
``summary``) and the DataTrees of ``sample`` and ``laplace`` carry the dims and coords;
an unlabelled axis is numbered from 0, ``beta[0]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.constraints import Constraint
from numpyro.distributions.transforms import Transform, biject_to

Array = jax.Array
Params = dict[str, Array]
Priors = dict[str, Distribution | None]

__all__ = ["Param", "Model", "resolve_prior", "check_param_names", "entry_name", "axis_labels",
           "arviz_dims"]


# --------------------------------------------------------------------------------------------
# Param
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Param:
    """One named parameter of a model: its shape, its support and its prior.

    Parameters
    ----------
    shape : tuple of int
        Shape of the constrained value, ``()`` for a scalar.
    constraint : numpyro.distributions.constraints.Constraint
        Support of the parameter (``constraints.real``, ``constraints.positive``,
        ``constraints.unit_interval``, ``constraints.simplex``, ...). NumPyro's ``biject_to``
        gives the map from unconstrained space.
    prior : numpyro.distributions.Distribution, callable or None
        Prior density; ``None`` is flat (improper, ``log p = 0``). Its batch and event shape
        must broadcast to ``shape``; its support must contain the constraint's set. A
        function ``params -> Distribution`` gives a *conditional* (hierarchical) prior on the
        other parameters' constrained values, e.g. ``lambda p: dist.Normal(p["mu"], p["tau"])``
        for Stan's ``theta ~ normal(mu, tau)``; it is checked when the Model is built.
    dims : tuple of str, optional
        A name for each axis (ArviZ's dims, e.g. ``("coef",)``); the labels of a named axis
        are the model's ``coords`` of that name. Names only: the maths does not change.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> from numpyro.distributions import constraints
    >>> beta = Param(shape=(3,), prior=dist.Normal(0.0, 1.0))
    >>> sigma = Param(constraint=constraints.positive, prior=dist.HalfNormal(1.0))
    >>> theta = Param(shape=(8,), prior=lambda p: dist.Normal(p["mu"], p["tau"]))
    >>> beta = Param(shape=(2,), dims=("coef",))  # labelled by Model(coords={"coef": [...]})
    """

    shape: tuple[int, ...] = ()
    constraint: Constraint = dataclasses.field(default_factory=lambda: constraints.real)
    prior: Distribution | Callable[[Params], Distribution] | None = None
    dims: tuple[str, ...] | None = None

    def __post_init__(self):
        shape = self.shape
        if isinstance(shape, int | np.integer):
            shape = (int(shape),)
        try:
            if isinstance(shape, str):
                raise TypeError
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise TypeError(
                f"Param.shape must be a tuple of non-negative ints; got {self.shape!r}. "
                "Use () for a scalar and (d,) for a vector."
            ) from None
        if any(s < 0 for s in shape):
            raise ValueError(f"Param.shape must be non-negative; got {shape}.")
        object.__setattr__(self, "shape", shape)
        if not isinstance(self.constraint, Constraint):
            raise TypeError(
                "Param.constraint must be a numpyro.distributions.constraints.Constraint "
                f"(e.g. constraints.positive); got {self.constraint!r}."
            )
        try:
            biject_to(self.constraint)
        except NotImplementedError:
            raise ValueError(
                f"NumPyro has no bijection to the constraint {self.constraint!r}; "
                "choose a constraint that numpyro.distributions.transforms.biject_to supports."
            ) from None
        if self.prior is not None and not _is_conditional(self.prior):
            _check_prior(self, self.prior)
        if self.dims is not None:
            dims = (self.dims,) if isinstance(self.dims, str) else tuple(self.dims)
            if len(dims) != len(shape) or not all(isinstance(d, str) and d for d in dims):
                raise ValueError(f"Param.dims must name every axis of the shape {shape} with a "
                                 f"string (ArviZ's dims); got {self.dims!r}.")
            object.__setattr__(self, "dims", dims)

    @property
    def transform(self) -> Transform:
        """The bijection from unconstrained to constrained space, NumPyro's ``biject_to``."""
        return biject_to(self.constraint)

    @property
    def unconstrained_shape(self) -> tuple[int, ...]:
        """Shape in unconstrained space (differs from ``shape`` for e.g. a simplex)."""
        return tuple(self.transform.inverse_shape(self.shape))

    @property
    def size(self) -> int:
        """Number of entries of the unconstrained value, its length in the flat vector."""
        return math.prod(self.unconstrained_shape)


def _is_conditional(prior) -> bool:
    """A conditional prior is a plain function of the parameters (a Distribution is callable
    too, it samples, so it is told apart by type)."""
    return callable(prior) and not isinstance(prior, Distribution)


def resolve_prior(prior, params: Params) -> Distribution | None:
    """The prior as a distribution: a conditional prior evaluated at ``params``."""
    return prior(params) if _is_conditional(prior) else prior


def _check_prior(param: Param, prior) -> None:
    """Check that a prior fits a parameter: a NumPyro distribution, shapes, support."""
    if not isinstance(prior, Distribution):
        raise TypeError(
            "Param.prior must be a numpyro.distributions.Distribution, a function params -> "
            f"Distribution, or None (flat); got {type(prior).__name__}. Example: "
            "prior=numpyro.distributions.Normal(0, 1)."
        )
    prior_shape = tuple(prior.batch_shape) + tuple(prior.event_shape)
    try:
        joint = jnp.broadcast_shapes(prior_shape, param.shape)
    except ValueError:
        joint = None
    if joint != param.shape:
        raise ValueError(
            f"The prior {type(prior).__name__} has shape {prior_shape} (batch + event), which "
            f"does not broadcast to the parameter's shape {param.shape}. Give a scalar prior "
            "or one whose batch shape broadcasts to the parameter."
        )
    # The constraint's set must lie inside the prior's support, or the log-density is -inf on
    # part of the parameter space (e.g. HalfNormal on an unconstrained parameter). Checked on
    # points that the constraint's own bijection produces; exact for the constraints that
    # matter (real, positive, intervals) and a useful guard for the rest.
    grid = jnp.linspace(-4.0, 4.0, 9)
    unconstrained = jnp.broadcast_to(
        grid.reshape((-1,) + (1,) * len(param.unconstrained_shape)),
        (grid.size,) + param.unconstrained_shape,
    )
    with jax.ensure_compile_time_eval():
        values = jax.vmap(param.transform)(unconstrained)
        inside = jax.vmap(prior.support)(values)
    if not bool(jnp.all(inside)):
        raise ValueError(
            f"The prior {type(prior).__name__} has support {prior.support}, which does not "
            f"cover the parameter's constraint {param.constraint}: the prior density would be "
            "zero on part of the parameter space. Either constrain the parameter to the "
            f"prior's support (constraint={prior.support}) or choose a prior on "
            f"{param.constraint}."
        )


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A probabilistic model: named parameters and a pointwise log-likelihood.

    Parameters
    ----------
    params : dict[str, Param]
        The parameters, in the order of the flat vector.
    log_likelihood : callable
        ``log_likelihood(params, data) -> Array (n_obs,)``, the pointwise log-likelihood
        :math:`\\log p(y_i \\mid \\theta)` of each observation, with ``params`` a dict of
        constrained values and ``data`` any pytree of arrays. It must be a pure JAX function.
    derived : callable, optional
        ``derived(params, data) -> dict[str, Array]``: deterministic quantities (e.g.
        ``theta = mu + tau * z``) reported alongside the parameters in the posterior.
    check_data : callable, optional
        ``check_data(data) -> None``, raising ``ValueError`` with a message when the data lie
        outside the likelihood's support (labels that are not 0/1, negative counts). ``fit``,
        ``laplace`` and ``sample`` call it on concrete data, before anything is traced;
        ``glm`` sets it to its family's check.
    init : callable, optional
        ``init(data) -> dict`` of constrained values of every parameter: a start computed from
        the data (e.g. least squares for a location, the residual sd for a scale), which
        ``fit`` uses when no ``init=`` is given (default: unconstrained zeros). A pure JAX
        function: it runs inside the compiled fit. ``glm`` sets it per family.
    runaway_hints : dict[str, str], optional
        For a parameter name, what it means, and what to do, when the log-density keeps
        increasing as that parameter runs off to infinity (e.g. a Student-t's ``nu``: the
        data look Gaussian). ``fit`` says it in the message of a fit without a maximum.
    coords : dict[str, sequence], optional
        Labels of the named axes of the parameters (``Param.dims``), ArviZ's coords: e.g.
        ``{"coef": ["educ", "age"]}`` names ``beta``'s entries ``beta[educ]``,
        ``beta[age]`` in ``flat_names``, ``compare``, ``summary`` and the DataTrees.

    Notes
    -----
    Models compare and hash by identity. Their compiled programs are kept per *structure*
    (the functions, and the parameters' names, shapes and supports; not the values of the
    priors, which are arguments): models of the same structure share them, and they are
    freed with the last such model (:mod:`mlemap._programs`).

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> model = Model(
    ...     {"mu": Param(prior=dist.Normal(0.0, 10.0))},
    ...     lambda p, d: dist.Normal(p["mu"], 1.0).log_prob(d["y"]),
    ... )
    """

    params: Mapping[str, Param]
    log_likelihood: Callable[[Params, Any], Array]
    derived: Callable[[Params, Any], dict[str, Array]] | None = None
    check_data: Callable[[Any], None] | None = None
    init: Callable[[Any], Params] | None = None
    runaway_hints: Mapping[str, str] | None = None
    coords: Mapping[str, Any] | None = None

    def __post_init__(self):
        if not isinstance(self.params, Mapping) or not self.params:
            raise TypeError(
                "Model.params must be a non-empty dict of name -> mlemap.Param; got "
                f"{self.params!r}."
            )
        for name, param in self.params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(
                    f"Parameter names must be Python identifiers (e.g. 'beta'); got {name!r}."
                )
            if not isinstance(param, Param):
                raise TypeError(
                    f"Model.params[{name!r}] must be an mlemap.Param; got "
                    f"{type(param).__name__}. Wrap it: Param(shape=..., constraint=..., prior=...)."
                )
        if not callable(self.log_likelihood):
            raise TypeError("Model.log_likelihood must be a function (params, data) -> (n_obs,).")
        for name, signature in (("derived", "(params, data) -> dict"),
                                ("check_data", "(data) -> None"), ("init", "(data) -> dict")):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"Model.{name} must be None or a function {signature}.")
        hints = dict(self.runaway_hints or {})
        unknown = sorted(set(hints) - set(self.params))
        if unknown:
            raise ValueError(f"Model.runaway_hints names unknown parameters {unknown}; the "
                             f"parameters are {sorted(self.params)}.")
        object.__setattr__(self, "runaway_hints", hints)
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "coords", _checked_coords(self.params, self.coords))
        conditional = {n: p for n, p in self.params.items() if _is_conditional(p.prior)}
        if conditional:
            # Check each conditional prior at the centre of the unconstrained space.
            with jax.ensure_compile_time_eval():
                at = self.constrain(jnp.zeros(self.dim))
                for name, param in conditional.items():
                    try:
                        prior = param.prior(at)
                    except Exception as error:
                        raise TypeError(
                            f"The conditional prior of {name!r} failed on the parameters "
                            f"{sorted(at)}: {type(error).__name__}: {error}. It must be a "
                            "function params -> numpyro Distribution."
                        ) from error
                    _check_prior(param, prior)
        # Find the structure's compiled programs now, while the model this one replaces in a
        # loop (model, data = mm.glm(...)) still holds them: see mlemap._programs.
        from mlemap._programs import structure_of  # _programs builds Models: import here

        structure_of(self)

    @property
    def _programs(self) -> dict:
        """The compiled programs of this model's structure, shared with the models of the
        same structure, and what was checked about it: see :mod:`mlemap._programs`."""
        from mlemap._programs import structure_of  # _programs builds Models: import here

        return structure_of(self).programs

    # -- the flat unconstrained vector ------------------------------------------------------

    @property
    def dim(self) -> int:
        """Length of the flat unconstrained vector."""
        return sum(p.size for p in self.params.values())

    @property
    def priors(self) -> Priors:
        """The priors as a dict, the default ``priors`` argument of the log-densities."""
        return {name: p.prior for name, p in self.params.items()}

    def unflatten(self, position: Array) -> Params:
        """Split a flat unconstrained vector ``(dim,)`` into named unconstrained arrays."""
        out, start = {}, 0
        for name, p in self.params.items():
            out[name] = position[start : start + p.size].reshape(p.unconstrained_shape)
            start += p.size
        return out

    def constrain(self, position: Array) -> Params:
        """Map a flat unconstrained vector ``(dim,)`` to named constrained values."""
        return {
            name: self.params[name].transform(u) for name, u in self.unflatten(position).items()
        }

    def unconstrain(self, params: Mapping[str, Any]) -> Array:
        """Map named constrained values to the flat unconstrained vector ``(dim,)``.

        Values are checked: every name present, no unknown names, shapes equal.
        """
        _check_param_values(self, params)
        parts = [
            jnp.ravel(p.transform.inv(jnp.asarray(params[name], dtype=_float_dtype())))
            for name, p in self.params.items()
        ]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

    def log_abs_det_jacobian(self, position: Array) -> Array:
        """:math:`\\log|\\det J_T(u)|` of the map from the flat vector to constrained values."""
        total = jnp.zeros((), dtype=position.dtype)
        for name, u in self.unflatten(position).items():
            transform = self.params[name].transform
            total = total + jnp.sum(transform.log_abs_det_jacobian(u, transform(u)))
        return total

    def flat_names(self) -> list[str]:
        """Names of the *constrained* scalar entries: ``beta[0]``, ``W[1,0]``, ``sigma``.

        Indices are written NumPy-style, in C order; a scalar parameter keeps its name; an
        axis labelled by ``coords`` is written with its labels, ``beta[educ]``.
        """
        return [entry_name(name, labels) for name in self.params
                for labels in itertools.product(*axis_labels(self, name))]

    def unconstrained_names(self) -> list[str]:
        """Names of the ``dim`` coordinates of the flat vector: ``beta[0]``, ``sigma``.

        A coordinate is numbered along its parameter's flattened unconstrained value, which
        differs from the constrained shape for e.g. a simplex (``K`` entries, ``K - 1``
        coordinates); where the two shapes agree, it is named as its entry
        (``beta[educ]``).
        """
        names = []
        for name, p in self.params.items():
            if p.size == 1 and p.unconstrained_shape == ():
                names.append(name)
            elif p.unconstrained_shape == p.shape:
                names.extend(entry_name(name, labels)
                             for labels in itertools.product(*axis_labels(self, name)))
            else:
                names.extend(f"{name}[{i}]" for i in range(p.size))
        return names

    def coordinate_params(self) -> list[str]:
        """The parameter that each of the ``dim`` coordinates belongs to."""
        return [name for name, p in self.params.items() for _ in range(p.size)]


# A model inside a result (PointEstimate.model) is a static node of the pytree: jax.tree
# functions map over the result's arrays and leave the model as it is.
jax.tree_util.register_static(Model)


def entry_name(name: str, index: tuple) -> str:
    """The name of one entry of a parameter: ``name`` for a scalar, ``name[i,j]`` else (the
    index's entries, numbers or labels, as strings)."""
    return name if not index else f"{name}[{','.join(map(str, index))}]"


def axis_labels(model: Model, name: str) -> list[list]:
    """The labels of each axis of a parameter: its coords where the axis is named and
    labelled, else ``0..size-1``."""
    param, coords = model.params[name], model.coords or {}
    dims = param.dims or (None,) * len(param.shape)
    return [list(coords[dim]) if dim in coords else list(range(size))
            for dim, size in zip(dims, param.shape)]


def arviz_dims(model: Model) -> tuple[dict[str, list[str]], dict[str, list]]:
    """``(dims, coords)`` for ``arviz_base.from_dict``: the named parameters' dims and the
    labels of those dims (ArviZ numbers the others, ``beta_dim_0``)."""
    dims = {name: list(p.dims) for name, p in model.params.items() if p.dims is not None}
    used = {d for names in dims.values() for d in names}
    coords = {d: list(labels) for d, labels in (model.coords or {}).items() if d in used}
    return dims, coords


def _checked_coords(params: Mapping[str, Param], coords) -> dict:
    """``Model.coords``: each labelled dim as long as every axis it names, labels unique."""
    if coords is None:
        return {}
    if not isinstance(coords, Mapping):
        raise TypeError(f"Model.coords must be a dict dim -> labels; got {type(coords).__name__}.")
    out = {}
    for dim, labels in coords.items():
        labels = list(np.asarray(labels).tolist()) if not isinstance(labels, list) else labels
        if len(set(map(str, labels))) != len(labels):
            raise ValueError(f"Model.coords[{dim!r}] has repeated labels; each entry needs its "
                             "own name.")
        out[dim] = labels
    for name, p in params.items():
        for dim, size in zip(p.dims or (), p.shape):
            if dim in out and len(out[dim]) != size:
                raise ValueError(
                    f"Model.coords[{dim!r}] has {len(out[dim])} labels but parameter {name!r} "
                    f"has {size} entries along that axis (shape {p.shape}, dims {p.dims}).")
    return out


def _float_dtype():
    return jnp.result_type(float)


def check_param_names(model: Model, values: Mapping[str, Any], what: str, fix: str) -> None:
    """Raise when ``values`` does not name exactly the model's parameters (e.g. an ``init``)."""
    expected, given = set(model.params), set(values)
    if given != expected:
        raise ValueError(
            f"{what} do not match the model's parameters: missing {sorted(expected - given)}, "
            f"unknown {sorted(given - expected)}. {fix}"
        )


def _check_param_values(model: Model, params: Mapping[str, Any]) -> None:
    """Names and shapes of a dict of constrained values against the model."""
    if not isinstance(params, Mapping):
        raise TypeError(f"Expected a dict of parameter values; got {type(params).__name__}.")
    check_param_names(model, params, "Parameter values",
                      f"The model's parameters are {sorted(model.params)}.")
    for name, p in model.params.items():
        shape = tuple(np.shape(params[name]))
        if shape != p.shape:
            raise ValueError(
                f"Parameter {name!r} has shape {shape}; the model declares {p.shape}."
            )
