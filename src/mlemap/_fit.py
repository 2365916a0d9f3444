"""fit(): MLE and MAP, as a short coordinator: check -> solve -> diagnose -> PointEstimate.

The objective minimized is the negative log-density per observation over the flat
unconstrained vector :math:`u` of shape ``(dim,)``:

.. math::

    F(u) = -\\frac{1}{n}\\,\\ell(u), \\qquad
    \\ell(u) = \\sum_{i=1}^{n} \\log p(y_i \\mid T(u))
              \\;[+ \\log p(T(u))]\\;[+ \\log|\\det J_T(u)|]

(the prior term for ``method="map"``, the Jacobian term for ``jacobian=True``; see
:mod:`mlemap._density`). Dividing by :math:`n` makes the gradient tolerance ``tol`` mean the
same as scikit-learn's ``tol`` for its L-BFGS solvers: the largest absolute entry of the
gradient of the *mean* loss plus penalty.

``fit`` checks its arguments (:mod:`mlemap._checks`, :mod:`mlemap._data`), runs the compiled
solve (:mod:`mlemap._solve`, a solver of :mod:`mlemap.solvers`), and diagnoses each end point
on the host (:mod:`mlemap._diagnose`) into a :class:`PointEstimate`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions import Distribution, Laplace
from numpyro.distributions.transforms import IdentityTransform

from mlemap import _checks, solvers
from mlemap._data import as_arrays, check_data
from mlemap._density import (argument_priors, check_log_likelihood, merge_priors,
                              program_priors)
from mlemap._diagnose import EndPoint, Settings, Status, checks_uniqueness, diagnose
from mlemap._model import Model
from mlemap._solve import Layout, Problem, probe, solve

__all__ = ["fit", "PointEstimate", "Status", "FitError", "FitWarning"]

Array = jax.Array


class FitError(RuntimeError):
    """Raised by ``fit(..., throw=True)`` when no (interior) maximum was found."""


class FitWarning(UserWarning):
    """Warned by ``fit`` when no (interior) maximum was found and ``throw=False``."""


class PointEstimate(NamedTuple):
    """An MLE or MAP point and how the solver got there.

    A single fit has 0-d numeric fields, a ``Status`` and a ``str``; a batched fit
    (``batch=``) has the same fields with a leading axis ``B``: arrays ``(B, ...)``, and
    ``result``/``message`` as object arrays ``(B,)``. Index a batch with
    ``jax.tree.map(lambda a: a[i], estimate)``.

    Attributes
    ----------
    params : dict[str, Array]
        The estimate, constrained, each of its parameter's shape. At a mode on the boundary
        of the support, the parameters that reach it hold the boundary value (e.g. ``0.0``).
    position : Array
        The estimate as the flat unconstrained vector ``(dim,)``.
    log_density : numpy.ndarray
        The maximized objective :math:`\\ell(u^*)` (log-likelihood, + log-prior for
        ``"map"``, + log-Jacobian for ``jacobian=True``), summed over observations.
    log_likelihood : numpy.ndarray
        :math:`\\sum_i \\log p(y_i \\mid \\hat\\theta)`.
    grad_norm : numpy.ndarray
        :math:`\\|\\nabla F(u^*)\\|_\\infty` of the per-observation objective
        :math:`F = -\\ell/n` in unconstrained space (FISTA: the smallest subgradient).
    num_steps : numpy.ndarray
        Solver iterations (each a line search, a Newton step or a proximal step).
    result : Status
        How the fit ended; ``Status.CONVERGED`` only for a converged, unique interior maximum.
    message : str
        ``result`` in words, with the numbers, and what to do when it is a failure.
    method : str
        ``"map"`` or ``"mle"``.
    jacobian : bool
        Whether the log-Jacobian of the constraining transform was included.
    n_obs : int
        Number of observations (the length of the pointwise log-likelihood).
    solver : str
        A name of :data:`mlemap.solvers.REGISTRY` (``"lbfgs"``, ``"newton"``, ``"fista"``),
        or ``"optax"`` for a transformation given as ``optimizer``.
    model : Model
        The model fitted (its names, and for a glm its family: what ``mm.summary`` and
        ``mm.predict`` read). A static leaf for ``jax.tree`` functions.
    """

    params: dict[str, Array]
    position: Array
    log_density: np.ndarray
    log_likelihood: np.ndarray
    grad_norm: np.ndarray
    num_steps: np.ndarray
    result: Status | np.ndarray
    message: str | np.ndarray
    method: str
    jacobian: bool
    n_obs: int
    solver: str
    model: Model | None = None

    @property
    def converged(self) -> bool | np.ndarray:
        """``result == Status.CONVERGED`` (per problem of a batch)."""
        if isinstance(self.result, np.ndarray):
            return self.result == Status.CONVERGED
        return self.result == Status.CONVERGED


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit(
    model: Model,
    data: Any,
    *,
    method: str = "map",
    jacobian: bool = False,
    priors: Mapping[str, Distribution | None] | None = None,
    solver: str | None = None,
    optimizer: optax.GradientTransformation | None = None,
    init: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    tol: float | None = None,
    rtol: float | None = None,
    batch: str | tuple[str, ...] | None = None,
    throw: bool = False,
) -> PointEstimate:
    """Maximum likelihood or maximum a posteriori estimate of a model.

    Maximizes, over the flat unconstrained vector :math:`u` ``(dim,)``,

    .. math::

        \\ell(u) = \\sum_{i=1}^{n} \\log p(y_i \\mid \\theta)
        \\;+\\; [\\mathrm{map}]\\, \\log p(\\theta)
        \\;+\\; [\\mathrm{jacobian}]\\, \\log|\\det J_T(u)|,
        \\qquad \\theta = T(u),

    by minimizing :math:`F(u) = -\\ell(u)/n`. ``method="mle"`` drops the prior (and the
    Jacobian); ``method="map"`` with ``jacobian=False`` is the textbook MAP (ridge, lasso,
    Stan's ``optimize``), with ``jacobian=True`` the mode of the unconstrained density.

    Parameters
    ----------
    model : Model
    data : pytree of arrays
        The model's data (e.g. ``{"X": (n, d), "y": (n,)}``). With ``batch`` containing
        ``"data"``, every array has a leading axis of ``B`` datasets.
    method : {"map", "mle"}
    jacobian : bool
        Include :math:`\\log|\\det J_T(u)|` (``method="map"`` only).
    priors : dict[str, Distribution | None], optional
        Priors replacing the model's own for the named parameters (``None``: flat). With
        ``batch`` containing ``"priors"``, each given distribution has a leading batch axis
        in its batch shape, e.g. ``{"beta": Normal(0.0, taus[:, None])}`` for ``B = len(taus)``
        prior scales on a vector ``beta`` (a regularization path); its parameters are
        broadcast along that axis.
    solver : str, optional
        A name of :data:`mlemap.solvers.REGISTRY`: ``"lbfgs"`` (optax's L-BFGS, followed by
        Newton steps when it stops short of ``tol`` on at most ``solvers.POLISH_MAX_DIM``
        coordinates), ``"newton"`` (exact Hessian) or ``"fista"`` (proximal, exact zeros
        under Laplace priors). Default: ``"fista"`` when a real parameter has a Laplace prior
        under ``method="map"``; else ``"newton"`` where its dense Hessian is cheap (a single
        fit of at most 100 coordinates with ``dim**2 * n_obs <= 2e7``; a batched fit of at
        most ``solvers.NEWTON_MAX_DIM``), else ``"lbfgs"``.
    optimizer : optax.GradientTransformation, optional
        Any optax transformation, run as is in the solver loop (the loop passes ``value``,
        ``grad`` and ``value_fn`` to those that take them); ``solver`` must then be ``None``
        or ``"lbfgs"``.
    init : dict[str, array], optional
        Constrained starting values for *every* parameter. Default: unconstrained zeros
        (0 for real, 1 for positive, the centre for an interval or a simplex).
    max_steps : int, optional
        Iteration limit; default 1000 (50000 for FISTA).
    tol : float, optional
        The gradient test, the first-order condition that ``Status.CONVERGED`` certifies at
        the returned point: :math:`\\|\\nabla F\\|_\\infty \\le` ``tol`` for L-BFGS, FISTA
        (the smallest subgradient) and optax (scikit-learn's ``tol`` for L-BFGS); for Newton
        in the units of the curvature, :math:`\\max_j |\\partial_j F| / \\sqrt{H_{jj}} \\le`
        ``tol`` (:math:`H` the Hessian of its last step), which does not depend on the units
        of the parameters (raw columns in the thousands, coefficients of 1e-6); and, where a
        solver can go no further, the same test in the Hessian's metric, the Newton decrement
        :math:`\\sqrt{\\nabla F^\\top H^{-1} \\nabla F} \\le` ``tol``. Default 1e-9 in float64,
        1e-5 in float32.
    rtol : float, optional
        Also stop, short of the gradient test (not converged), when neither :math:`F`
        (:math:`|F_k - F_{k-1}| \\le` ``rtol`` :math:`\\max(|F_k|, |F_{k-1}|, 1)`) nor the
        gradient improves. Default ``4 * eps``; not used by FISTA.
    batch : None, "data", "priors" or ("data", "priors")
        Fit ``B`` problems in one compiled call (``vmap`` on an accelerator, a compiled loop
        on a CPU: see :func:`_over_batch`); every field of the result gets a leading axis
        ``B``.
    throw : bool
        Raise :class:`FitError` when the result is not a converged interior maximum; by
        default a :class:`FitWarning` is issued and the point is returned. A converged
        maximum that is not unique (the objective is flat along a direction: collinear
        columns under a flat prior) is ``Status.NOT_UNIQUE``, a failure too; the check runs
        where the dense Hessian is cheap (``mlemap._diagnose.checks_uniqueness``), and not
        for FISTA.

    Returns
    -------
    PointEstimate

    Raises
    ------
    ValueError, TypeError
        On bad input, before anything is compiled: an ``init`` with missing or unknown
        names, wrong shapes or values outside the support; a start where the log-density is
        not finite; NaN in the data; inconsistent batch sizes; an unknown solver.

    Notes
    -----
    One compiled program per (model structure, method, jacobian, solver, batch layout) serves
    every dataset and prior of the same shapes, and every model of the same structure (e.g.
    a new ``mm.glm`` per regularization strength or per fold): data and prior parameters are
    arguments (:mod:`mlemap._programs`).

    Examples
    --------
    >>> est = fit(model, {"X": X, "y": y})                     # doctest: +SKIP
    >>> path = fit(model, data, priors={"beta": dist.Normal(0.0, taus[:, None])},
    ...            batch="priors")                              # doctest: +SKIP
    """
    problem = _check(model, data, method, jacobian, priors, solver, optimizer, init, max_steps,
                     tol, rtol, batch)
    end = solve(model, problem)
    estimate = _estimate(model, problem, end)
    _report(estimate, problem, throw)
    return estimate


def _check(model, data, method, jacobian, priors, solver, optimizer, init, max_steps, tol,
           rtol, batch) -> Problem:
    """Every argument checked and given its default, before anything is traced."""
    if not isinstance(model, Model):
        raise TypeError(f"fit expects an mlemap.Model; got {type(model).__name__}.")
    jacobian = bool(jacobian)
    _checks.fit_settings(method, jacobian, optimizer, max_steps, tol, rtol)
    batch_data, batch_priors = _checks.parse_batch(batch)
    data, data_size = check_data(data, model, batch=batch_data)
    # The log-likelihood must be pointwise, checked abstractly; with batch="data", on one
    # dataset's slice.
    n_obs = check_log_likelihood(model, jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), data) if batch_data else data)
    if n_obs == 0 and method == "mle":
        raise ValueError("model.log_likelihood returned 0 observations for this data: the "
                         "likelihood is constant, there is nothing to fit. Pass data with at "
                         "least one observation (a MAP without data is the prior's mode).")
    priors, prior_size = _checks.priors_override(model, priors, batch_priors)
    if data_size is not None and prior_size is not None and data_size != prior_size:
        raise ValueError(f"batch: the data have {data_size} datasets but the priors {prior_size} "
                         "settings; they must be equal.")
    u0 = _checks.initial_position(model, init)
    l1_names = _l1_names(model, merge_priors(model, priors), method)
    name = _solver_name(model, solver, optimizer, l1_names, batch_data or batch_priors, n_obs)
    layout = Layout(method, jacobian, name, optimizer, l1_names if name == "fista" else (),
                    batch_data, batch_priors, model_start=init is None and model.init is not None)
    eps = float(jnp.finfo(u0.dtype).eps)
    settings = Settings(
        tol=(1e-9 if u0.dtype == jnp.float64 else 1e-5) if tol is None else float(tol),
        rtol=4.0 * eps if rtol is None else float(rtol),
        max_steps=int((50_000 if name == "fista" else 1000) if max_steps is None else max_steps),
    )
    # Every non-conditional prior is an argument (the model's own too: models of the same
    # structure share the programs), as arrays of the default float dtype.
    fixed = as_arrays(argument_priors(model, {} if batch_priors else priors))
    return Problem(layout, data, fixed, program_priors(priors) if batch_priors else {}, u0,
                   settings)


def _l1_names(model: Model, priors: Mapping, method: str) -> tuple[str, ...]:
    """Parameters whose prior is a Laplace on the real line: an L1 term, handled exactly."""
    if method != "map":
        return ()
    return tuple(name for name, prior in priors.items()
                 if isinstance(prior, Laplace)
                 and isinstance(model.params[name].transform, IdentityTransform))


def _solver_name(model, solver, optimizer, l1_names, batched, n_obs) -> str:
    if solver is not None and solver not in solvers.REGISTRY:
        raise ValueError(f"solver must be None (automatic) or one of "
                         f"{sorted(solvers.REGISTRY)}; got {solver!r}.")
    if optimizer is not None:
        if solver not in (None, "lbfgs"):
            raise ValueError(f"optimizer= runs an optax transformation in the 'lbfgs' solver's "
                             f"loop; it cannot be combined with solver={solver!r}.")
        return "optax"
    if solver is not None:
        return solver
    if l1_names:
        return "fista"
    # Newton where its dense Hessian is cheap: a few steps, whatever the scaling of the data
    # (raw columns, counts in the thousands), where L-BFGS crawls. Batched: for a few
    # parameters (under vmap every problem waits for the slowest loop); L-BFGS beyond.
    if batched:
        return "newton" if model.dim <= solvers.NEWTON_MAX_DIM else "lbfgs"
    return "newton" if checks_uniqueness(model.dim, n_obs) else "lbfgs"


# --------------------------------------------------------------------------------------------
# diagnose -> PointEstimate
# --------------------------------------------------------------------------------------------


def _estimate(model: Model, problem: Problem, end: EndPoint) -> PointEstimate:
    """The PointEstimate, each problem diagnosed (:func:`mlemap._diagnose.diagnose`)."""
    layout = problem.layout
    batched = layout.batched
    host = jax.tree.map(np.asarray, end._replace(params={}))  # params stay on the device
    per_problem = host if batched else jax.tree.map(lambda a: a[None], host)
    n_obs = int(np.ravel(host.n_obs)[0])

    check_unique = layout.solver != "fista" and checks_uniqueness(model.dim, n_obs)
    diagnosis = diagnose(model, per_problem, problem.settings, check_unique=check_unique,
                         probe=lambda points: probe(model, problem, points))
    params = end.params
    for i, point in diagnosis.on_boundary.items():
        params = {k: (v.at[i].set(point[k]) if batched else point[k]) for k, v in params.items()}
    one = (lambda a: a) if batched else (lambda a: a[0])
    scalar = (lambda a: a) if batched else (lambda a: a[()])
    return PointEstimate(
        params=params, position=end.position, log_density=scalar(host.log_density),
        log_likelihood=scalar(host.log_likelihood), grad_norm=scalar(host.grad_norm),
        num_steps=scalar(host.num_steps), result=one(diagnosis.results),
        message=one(diagnosis.messages), method=layout.method, jacobian=layout.jacobian,
        n_obs=n_obs, solver=layout.solver, model=model,
    )


def _report(estimate: PointEstimate, problem: Problem, throw: bool) -> None:
    """Warn (or raise, with ``throw``) when some problem did not converge."""
    converged = np.atleast_1d(estimate.converged)
    if converged.all():
        return
    messages = np.atleast_1d(estimate.message)
    if problem.layout.batched:
        first = int(np.flatnonzero(~converged)[0])
        message = (f"{int((~converged).sum())} of {converged.size} fits did not give a "
                   f"converged interior maximum; the first, at batch index {first}: "
                   f"{messages[first]}")
    else:
        message = f"fit({problem.layout.method}): {messages[0]}"
    if throw:
        raise FitError(message)
    warnings.warn(message, FitWarning, stacklevel=3)
