"""fit's compiled programs: a solver on the model's objective, and the end point's report.

One program per (model, method, jacobian, solver, batch layout), kept on the model
(:mod:`mlemap._programs`): the solve (a solver of :mod:`mlemap.solvers` then
:func:`mlemap._diagnose.end_point`), the Newton polish where L-BFGS stopped short of ``tol``,
the log-density at the start (checked before the first solve) and the probe of the
uniqueness check. Data, priors and the stopping settings are their arguments.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlemap import solvers
from mlemap._density import (log_density_fn, log_density_terms, merge_priors,
                             pointwise_log_likelihood_fn)
from mlemap._diagnose import EndPoint, Settings, end_point
from mlemap._model import Model
from mlemap._programs import program, signature
from mlemap._shard import spans_processes

__all__ = ["Layout", "Problem", "solve", "probe"]


class Layout(NamedTuple):
    """What one compiled solve is specialized to (part of its program's key)."""

    method: str
    jacobian: bool
    solver: str  # a REGISTRY name, or "optax"
    optimizer: optax.GradientTransformation | None
    l1_names: tuple[str, ...]  # parameters whose Laplace prior is FISTA's L1 part
    batch_data: bool
    batch_priors: bool
    model_start: bool  # start at model.init(data), computed in the program (no init= given)

    @property
    def batched(self) -> bool:
        return self.batch_data or self.batch_priors


class Problem(NamedTuple):
    """A fit's checked inputs."""

    layout: Layout
    data: Any
    fixed_priors: dict
    batched_priors: dict
    u0: Any  # (dim,) the given start, or zeros when layout.model_start
    settings: Settings


def solve(model: Model, problem: Problem) -> EndPoint:
    """Run the compiled solve, and the polish where L-BFGS stopped short."""
    layout, settings, u0 = problem.layout, problem.settings, problem.u0
    args = (problem.data, problem.fixed_priors, problem.batched_priors)
    solve = program(model, ("fit", "solve", layout), lambda: _solve_program(model, layout))
    # A start where the log-density is not finite is said before the solver is compiled, by
    # a small program of its own. Once the solver has run on these shapes, its own value at
    # the start (EndPoint.start) is checked instead, sparing a pass over the data. Not for
    # data that span processes: there every process must run the same programs, and whether
    # this one has run the solver before depends on its own history (a skipped program
    # deadlocks).
    solved = program(model, ("fit", "solved layouts"), set)
    key = (layout, signature(args))
    warm = key in solved and not any(spans_processes(x) for x in jax.tree.leaves(args[0]))
    if not warm:
        start = program(model, ("fit", "start", layout), lambda: _start_program(model, layout))
        _check_start(model, problem, *start(u0, *args))
    dtype = u0.dtype
    tol = np.asarray(settings.tol, dtype)  # numpy scalars: jit arguments, no dispatch of their own
    rtol = np.asarray(settings.rtol, dtype)
    end = solve(u0, *args, tol, rtol, np.asarray(settings.max_steps, np.int32))
    if (layout.solver == "lbfgs" and model.dim <= solvers.POLISH_MAX_DIM
            and solvers.needs_polish(np.asarray(end.stop), np.asarray(end.grad_norm),
                                     settings.tol).any()):
        polish = program(model, ("fit", "polish", layout), lambda: _polish_program(model, layout))
        end = polish(end, *args, tol, rtol, np.asarray(settings.max_steps, np.int32))
    if warm:
        _check_start(model, problem, np.asarray(end.start), None)
    solved.add(key)
    return end


def _check_start(model: Model, problem: Problem, values, positions) -> None:
    """Raise, naming the term, when the log-density at a start (one value per problem) is
    not finite. ``positions``: the starts, when known (a model's own start is computed in
    the program)."""
    values = np.atleast_1d(np.asarray(values))
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
        return
    i = int(bad[0])
    if positions is None:  # the solver's own check: recompute the start to describe it
        start = program(model, ("fit", "start", problem.layout),
                        lambda: _start_program(model, problem.layout))
        positions = start(problem.u0, problem.data, problem.fixed_priors,
                          problem.batched_priors)[1]
    layout = problem.layout
    pick = (lambda tree: jax.tree.map(lambda a: a[i], tree)) if layout.batched else (lambda t: t)
    position = np.atleast_2d(np.asarray(positions))[i] if layout.batched else positions
    data = pick(problem.data) if layout.batch_data else problem.data
    priors = merge_priors(model, problem.fixed_priors,
                          pick(problem.batched_priors) if layout.batch_priors else {})
    where = f" for problem {i} of the batch" if layout.batched else ""
    origin = ("the model's own start, computed from the data," if layout.model_start
              else "the initial point")
    raise ValueError(
        f"The log-density at {origin} is {values[i]} (not finite){where}: "
        f"{_describe_terms(model, jnp.asarray(position), data, priors, layout)}. Give init= "
        "with values where every term is finite (inside every prior's support, with a mean "
        "of the likelihood inside its support: e.g. a positive Gamma or Poisson mean, which "
        "a log link keeps positive; a linear predictor that does not overflow)."
    )


def _describe_terms(model: Model, position, data, priors, layout: Layout) -> str:
    # Traced (jit), as in the fit: evaluated eagerly, NumPyro would validate the
    # distributions' arguments and raise its own error instead.
    terms = jax.jit(lambda u, d, p: log_density_terms(
        model, u, d, p, prior=layout.method == "map", jacobian=layout.jacobian))(
        position, data, priors)
    described = []
    for name, value in terms.items():
        if np.isfinite(value):
            continue
        if name == "log_likelihood":
            pointwise = np.asarray(jax.jit(pointwise_log_likelihood_fn(model))(position, data))
            where = np.flatnonzero(~np.isfinite(pointwise))
            name = (f"log_likelihood (non-finite at {where.size} of {pointwise.size} "
                    f"observations, the first at index {where[0]})")
        described.append(f"{name} = {float(value)}")
    return ", ".join(described) or "every term is finite but their sum is not"


def probe(model: Model, problem: Problem, points: np.ndarray) -> np.ndarray:
    """F at ``points``, for the uniqueness check: ``(B, k, dim) -> (B, k)`` (``B = 1`` for a
    single fit)."""
    layout = problem.layout
    run = program(model, ("fit", "probe", layout), lambda: _probe_program(model, layout))
    values = run(jnp.asarray(points if layout.batched else points[0]), problem.data,
                 problem.fixed_priors, problem.batched_priors)
    return np.asarray(values) if layout.batched else np.asarray(values)[None]


def _objective_parts(model: Model, layout: Layout):
    """The log-density a fit maximizes and the pointwise log-likelihood, as built once."""
    log_density = log_density_fn(model, prior=(layout.method == "map"), jacobian=layout.jacobian)
    return log_density, pointwise_log_likelihood_fn(model)


def _n_obs(model: Model, position, data) -> int:
    shape = jax.eval_shape(pointwise_log_likelihood_fn(model), position, data).shape
    return math.prod(shape)


def _start_position(model: Model, layout: Layout, u0, data):
    """The start: ``u0``, or the model's own start from the data (``model.init``)."""
    return model.unconstrain(model.init(data)) if layout.model_start else u0


def _solve_program(model: Model, layout: Layout):
    """``solve(u0, data, fixed_priors, batched_priors, tol, rtol, max_steps) -> EndPoint``."""
    log_density, pointwise = _objective_parts(model, layout)
    vectorized = layout.batched and _maps_with_vmap()

    def solve(u0, data, fixed_priors, batched_priors, tol, rtol, max_steps):
        u0 = _start_position(model, layout, u0, data)
        priors = merge_priors(model, fixed_priors, batched_priors)
        n = _n_obs(model, u0, data)
        smooth = {k: (None if k in layout.l1_names else v) for k, v in priors.items()}

        def objective(u):  # F; for FISTA its smooth part (the L1 part is the solver's)
            return -log_density(u, data, smooth) / max(n, 1)

        if layout.solver == "fista":
            solver = solvers.fista(_l1_part(model, priors, layout.l1_names, max(n, 1), u0.dtype))
        elif layout.solver == "newton":
            solver = solvers.newton(vectorized=vectorized, tol=tol)
        elif layout.solver in ("lbfgs", "optax"):
            solver = solvers.lbfgs(layout.optimizer)
        else:
            solver = solvers.REGISTRY[layout.solver]()
        if layout.solver == "lbfgs" and model.dim <= solvers.POLISH_MAX_DIM:
            # L-BFGS crawls where the parameters' units differ (raw columns): after about ten
            # Newton steps' worth of gradients it hands over to the polish.
            max_steps = jnp.minimum(max_steps, max(solvers.POLISH_AFTER, 10 * model.dim))
        solution = solvers.minimize(solver, objective, u0, tol, rtol, max_steps)
        return end_point(model, log_density, pointwise, u0, solution, data, priors, n)

    return jax.jit(_batched(solve, layout, (None, "data", None, "priors", None, None, None)))


def _polish_program(model: Model, layout: Layout):
    """``polish(end, data, fixed_priors, batched_priors, tol, rtol, max_steps) -> EndPoint``: Newton
    from where L-BFGS stopped short (:func:`mlemap.solvers.polish`). A program of its own,
    compiled only when some fit stopped short of ``tol``."""
    log_density, pointwise = _objective_parts(model, layout)
    vectorized = layout.batched and _maps_with_vmap()

    def polish(end, data, fixed_priors, batched_priors, tol, rtol, max_steps):
        priors = merge_priors(model, fixed_priors, batched_priors)
        n = _n_obs(model, end.position, data)
        objective = lambda u: -log_density(u, data, priors) / max(n, 1)  # noqa: E731
        solution = solvers.Solution(end.position, -end.log_density / max(n, 1), end.grad,
                                    end.num_steps, end.stop, None)
        solution = solvers.polish(objective, solution, tol, rtol, max_steps,
                                  vectorized=vectorized)
        return end_point(model, log_density, pointwise, end.origin, solution, data, priors, n,
                         fresh_hessian=True)

    return jax.jit(_batched(polish, layout, ("all", "data", None, "priors", None, None, None)))


def _start_program(model: Model, layout: Layout):
    """``start(u0, data, fixed_priors, batched_priors) -> (log-density, position)`` at the
    start."""
    log_density, _ = _objective_parts(model, layout)

    def start(u0, data, fixed_priors, batched_priors):
        u0 = _start_position(model, layout, u0, data)
        return log_density(u0, data, merge_priors(model, fixed_priors, batched_priors)), u0

    return jax.jit(_batched(start, layout, (None, "data", None, "priors"), vmap=True))


def _probe_program(model: Model, layout: Layout):
    """``probe(points (k, dim), data, fixed, batched) -> (k,)``: F at ``points``, for the
    uniqueness check (``(B, k, dim) -> (B, k)`` when batched)."""
    log_density, _ = _objective_parts(model, layout)

    def probe(points, data, fixed_priors, batched_priors):
        priors = merge_priors(model, fixed_priors, batched_priors)
        n = max(1, _n_obs(model, points[0], data))
        return jax.vmap(lambda u: -log_density(u, data, priors) / n)(points)

    return jax.jit(_batched(probe, layout, ("all", "data", None, "priors"), vmap=True))


def _batched(fn, layout: Layout, axes: tuple, vmap: bool = False):
    """``fn`` mapped over the leading axis of the arguments marked ``"all"``, and of those
    marked ``"data"``/``"priors"`` when that part is batched; ``fn`` itself when nothing is."""
    if not layout.batched:
        return fn
    marks = {"all": True, "data": layout.batch_data, "priors": layout.batch_priors, None: False}
    in_axes = tuple(0 if marks[a] else None for a in axes)
    return jax.vmap(fn, in_axes=in_axes) if vmap else _over_batch(fn, in_axes)


def _maps_with_vmap() -> bool:
    """Whether :func:`_over_batch` maps with ``jax.vmap`` (accelerators) or ``lax.map`` (CPU)."""
    return jax.default_backend() != "cpu"


def _over_batch(solve, in_axes):
    """``solve`` mapped over the leading (batch) axis of the arguments whose ``in_axes`` is 0.

    ``jax.vmap`` on an accelerator. On a CPU, a loop inside the compiled program
    (``jax.lax.map``), for two reasons: XLA's CPU code for batched small matrix products
    (what ``vmap`` makes of a GLM's Hessian) is several times slower than one small product
    per problem, and under ``vmap`` every problem's ``while_loop`` runs until the slowest one
    stops. The results agree to round-off.
    """
    if _maps_with_vmap():
        return jax.vmap(solve, in_axes=in_axes)

    def looped(*args):
        batched = tuple(a for a, axis in zip(args, in_axes) if axis == 0)

        def one(sliced):
            rest = iter(sliced)
            return solve(*(next(rest) if axis == 0 else a for a, axis in zip(args, in_axes)))

        return jax.lax.map(one, batched)

    return looped


def _l1_part(model: Model, priors, names, n, dtype) -> solvers.L1:
    """F's L1 part from the Laplace priors of ``names``: ``sum(w |u - loc|)`` with
    ``w = 1 / (n b)``, ``loc`` and ``b`` the priors' location and scale."""
    locs, weights, masks = [], [], []
    for name, param in model.params.items():
        on = name in names
        prior = priors[name] if on else None
        loc = jnp.asarray(prior.loc, dtype) if on else jnp.zeros((), dtype)
        weight = 1.0 / (jnp.asarray(prior.scale, dtype) * n) if on else jnp.zeros((), dtype)
        locs.append(jnp.broadcast_to(loc, param.shape).ravel())
        weights.append(jnp.broadcast_to(weight, param.shape).ravel())
        masks.append(jnp.full(param.size, on))
    return solvers.L1(jnp.concatenate(locs), jnp.concatenate(weights), jnp.concatenate(masks))
