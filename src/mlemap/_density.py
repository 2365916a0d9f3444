"""The three log-densities of a model over its flat unconstrained vector.

.. math::

    \\ell_{\\mathrm{MLE}}(u)  &= \\sum_i \\log p(y_i \\mid T(u)) \\\\
    \\ell_{\\mathrm{MAP}}(u)  &= \\ell_{\\mathrm{MLE}}(u) + \\log p(T(u)) \\\\
    \\ell_{\\mathrm{post}}(u) &= \\ell_{\\mathrm{MAP}}(u) + \\log |\\det J_T(u)|

where :math:`T` maps unconstrained to constrained values (:meth:`Model.constrain`). The first
is maximized by the MLE, the second by the textbook MAP (``jacobian=False``), the third is the
density of the unconstrained coordinates, which NUTS samples and the Laplace approximation
expands.

Data and priors are *arguments* of every built function, never closure constants, so one
compiled program serves every dataset of the same shapes and every prior scale of a sweep,
and every model of the same structure (:mod:`mlemap._programs`). NumPyro distributions are
pytrees, so a dict of priors passes through ``jit`` and ``vmap`` like any array (wrapped in
:class:`ProgramPrior`, whose arrays come in the same order in every process); a conditional
prior (a function of the other parameters) is not an array and stays with the model:
:func:`argument_priors` is what a program takes, :func:`merge_priors` inside it adds the
model's conditional priors back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution

from mlemap._model import Model, Params, Priors, _float_dtype, _is_conditional, resolve_prior
from mlemap._programs import program, signature

__all__ = [
    "log_density_fn",
    "pointwise_log_likelihood_fn",
    "log_prior",
    "merge_priors",
    "argument_priors",
    "ProgramPrior",
    "program_priors",
    "distributions",
    "log_density_terms",
    "check_log_likelihood",
]

Array = jax.Array


def pointwise_log_likelihood_fn(model: Model) -> Callable[[Array, Any], Array]:
    """Build ``f(position, data) -> (n_obs,)``, the pointwise log-likelihood at a flat vector."""

    def pointwise(position, data):
        return model.log_likelihood(model.constrain(position), data)

    return pointwise


def log_prior(model: Model, params: Params, priors: Priors) -> Array:
    """:math:`\\sum_k \\log p_k(\\theta_k)` over the parameters that have a prior (flat: 0)."""
    total = jnp.zeros(())
    for name, prior in priors.items():
        prior = resolve_prior(prior, params)
        if prior is not None:
            total = total + jnp.sum(prior.log_prob(params[name]))
    return total


@jax.tree_util.register_pytree_node_class
class ProgramPrior:
    """A NumPyro distribution as a program argument: its arrays flatten in the order of their
    field names.

    NumPyro gathers a distribution's fields in a ``set``, whose order follows Python's string
    hashing, which changes from process to process: the same program would take its
    arguments in another order in the next process, its text would differ, and JAX's
    persistent compilation cache (keyed by that text) would never hit. Written here because
    NumPyro has no ordered flattening.
    """

    __slots__ = ("dist",)

    def __init__(self, dist: Distribution):
        self.dist = dist

    def tree_flatten(self):
        data, aux = self.dist.tree_flatten()
        names = type(self.dist).gather_pytree_data_fields()
        order = (tuple(sorted(range(len(data)), key=names.__getitem__))
                 if len(names) == len(data) else tuple(range(len(data))))
        return tuple(program_priors(data[i]) for i in order), (type(self.dist), aux, order)

    @classmethod
    def tree_unflatten(cls, aux, children):
        dist_type, dist_aux, order = aux
        data = [None] * len(order)
        for i, child in zip(order, children):
            data[i] = distributions(child)
        return cls(dist_type.tree_unflatten(dist_aux, tuple(data)))


def program_priors(tree: Any) -> Any:
    """Every distribution in ``tree`` as a :class:`ProgramPrior`."""
    return jax.tree.map(lambda x: ProgramPrior(x) if isinstance(x, Distribution) else x, tree,
                        is_leaf=lambda x: isinstance(x, Distribution))


def distributions(tree: Any) -> Any:
    """The inverse of :func:`program_priors` (distributions not wrapped are left as they are)."""
    return jax.tree.map(lambda x: x.dist if isinstance(x, ProgramPrior) else x, tree,
                        is_leaf=lambda x: isinstance(x, ProgramPrior | Distribution))


def merge_priors(model: Model, *overrides: Mapping) -> dict:
    """The model's priors with each mapping of ``overrides`` applied in turn (program
    arguments, :class:`ProgramPrior`, back to distributions)."""
    priors = dict(model.priors)
    for override in overrides:
        priors.update(distributions(dict(override)))
    return priors


def argument_priors(model: Model, *overrides: Mapping) -> dict:
    """The priors that a compiled program takes as its argument: the model's own with the
    ``overrides`` applied, every one a :class:`ProgramPrior` or ``None`` (flat). Conditional
    priors (functions of the other parameters) are left out: they are part of the model's
    structure, and ``merge_priors(model, ...)`` inside the program adds them back."""
    return {name: program_priors(prior) for name, prior in merge_priors(model, *overrides).items()
            if not _is_conditional(prior)}


def log_density_fn(
    model: Model, *, prior: bool = True, jacobian: bool = False
) -> Callable[..., Array]:
    """Build one of the three log-densities over the flat unconstrained vector.

    Parameters
    ----------
    model : Model
    prior : bool
        Add :math:`\\log p(\\theta)`. ``False`` gives the log-likelihood (MLE objective).
    jacobian : bool
        Add :math:`\\log|\\det J_T(u)|`, making it the density of the unconstrained
        coordinates (NUTS, Laplace). Only meaningful with ``prior=True``.

    Returns
    -------
    callable
        ``log_density(position, data, priors=None) -> scalar``, with ``position`` of shape
        ``(dim,)``, ``data`` the model's data pytree and ``priors`` a dict name ->
        distribution (``None`` entries flat) replacing the model's own for the parameters it
        names (default: the model's own). A pure function: ``jit`` and ``vmap`` it over
        positions, datasets or priors.

    Examples
    --------
    >>> log_posterior = mm.log_density_fn(model, jacobian=True)        # doctest: +SKIP
    >>> jax.grad(log_posterior)(jnp.zeros(model.dim), data)              # doctest: +SKIP
    """

    def log_density(position, data, priors=None):
        priors = model.priors if priors is None else merge_priors(model, priors)
        params = model.constrain(position)
        total = jnp.sum(model.log_likelihood(params, data))
        if prior:
            total = total + log_prior(model, params, priors)
        if jacobian:
            total = total + model.log_abs_det_jacobian(position)
        return total

    return log_density


def log_density_terms(model: Model, position, data, priors: Priors, *, prior: bool = True,
                      jacobian: bool = True) -> dict[str, Array]:
    """Each term of a log-density at ``position``, named for a message: ``"log_likelihood"``
    (summed), ``"log_prior of 'beta'"`` (for each proper prior, with ``prior``) and
    ``"log-Jacobian of 'sigma'"`` (for each constrained parameter, with ``jacobian``).

    Their sum is :func:`log_density_fn`'s; an error can name the one that is not finite.
    """
    params = model.constrain(position)
    terms = {"log_likelihood": jnp.sum(model.log_likelihood(params, data))}
    for name in model.params:
        distribution = resolve_prior(priors[name], params) if prior else None
        if distribution is not None:
            terms[f"log_prior of {name!r}"] = jnp.sum(distribution.log_prob(params[name]))
    if jacobian:
        for name, u in model.unflatten(position).items():
            transform = model.params[name].transform
            terms[f"log-Jacobian of {name!r}"] = jnp.sum(
                transform.log_abs_det_jacobian(u, transform(u)))
    return terms


def check_log_likelihood(model: Model, data) -> int:
    """Check, without running it, that ``log_likelihood`` is pointwise: shape ``(n_obs,)``.

    Uses ``jax.eval_shape`` (abstract evaluation) once per model structure and data layout
    (memoized with the structure's programs, :mod:`mlemap._programs`), so a repeated fit on
    data of the same shapes costs nothing here and traces nothing more.

    Returns
    -------
    int
        ``n_obs``, the number of pointwise terms.

    Raises
    ------
    ValueError
        When the output is not 1-D, e.g. a summed scalar (LOO and the "loss = mean NLL"
        view need one value per observation), or ``(n, 1)``.
    TypeError
        When it is not a floating-point array, or the function fails on the data.
    """
    checked = program(model, ("checked layouts",), lambda _: {})
    layout = signature(data)
    if layout not in checked:
        checked[layout] = _pointwise_size(model, data)
    return checked[layout]


def _pointwise_size(model: Model, data) -> int:
    params = {name: jax.ShapeDtypeStruct(p.shape, _float_dtype())
              for name, p in model.params.items()}
    try:
        out = jax.eval_shape(model.log_likelihood, params, data)
    except Exception as error:  # the user's function: say where it broke, keep the cause
        raise TypeError(
            f"model.log_likelihood(params, data) failed on parameters of shapes "
            f"{ {k: p.shape for k, p in model.params.items()} } and this data: "
            f"{type(error).__name__}: {error}"
        ) from error
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 1:
        raise ValueError(
            "model.log_likelihood must return the pointwise log-likelihood, one value per "
            f"observation, shape (n_obs,); it returned {shape if shape is not None else out!r}. "
            "Return the per-observation terms, not their sum (LOO needs them), and flatten "
            "extra axes."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"model.log_likelihood returned dtype {out.dtype}; expected floating point."
        )
    return shape[0]
