"""The solvers, each on its own (mlemap.solvers): Newton's elimination against LAPACK, its
step forms against each other, L-BFGS against scipy's L-BFGS-B, FISTA's exact zeros.

Expected numbers come from numpy/LAPACK, scipy.optimize and closed forms.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlemap import solvers
from mlemap.solvers import _newton as newton_module


@pytest.mark.parametrize("dim", [1, 2, 5, 11, 20])
def test_newton_solve_and_definiteness_equal_lapacks(rng, dim):
    """Newton's elimination gives LAPACK's solution (numpy.linalg.solve) on positive definite
    matrices, condition numbers up to 1e8, and tells them from indefinite ones as the
    eigenvalues do. (An exactly singular matrix may round to a tiny positive pivot; Newton
    then relies on its descent check, so no claim is tested for it here.)"""
    solve = jax.jit(newton_module.solve_positive_definite)
    for condition in (1.0, 1e4, 1e8):
        q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
        eigenvalues = np.geomspace(1.0, 1.0 / condition, dim)
        matrix = (q * eigenvalues) @ q.T
        matrix = 0.5 * (matrix + matrix.T)
        rhs = rng.normal(size=dim)
        x, positive_definite = solve(matrix, rhs)
        assert bool(positive_definite)
        expected = np.linalg.solve(matrix, rhs)
        # Both are backward stable: they agree to ~ eps * condition, relative.
        np.testing.assert_allclose(x, expected, rtol=0,
                                   atol=1e-13 * condition * np.linalg.norm(expected))
    for smallest in (-1.0, -1e-6):
        q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
        eigenvalues = np.linspace(1.0, 2.0, dim)
        eigenvalues[rng.integers(dim)] = smallest
        matrix = (q * eigenvalues) @ q.T
        matrix = 0.5 * (matrix + matrix.T)
        assert np.linalg.eigvalsh(matrix)[0] <= 1e-12
        x, positive_definite = solve(matrix, rng.normal(size=dim))
        assert not bool(positive_definite)


def test_newton_backtracks_alike_under_vmap_and_in_a_loop(monkeypatch):
    """The forms of Newton's step take the same steps: value, gradient and Hessian at every
    trial under vmap (eager); in a loop of problems, value and gradient at the trials and the
    Hessian from the residuals the state keeps (lazy), or eager where those residuals cannot
    be carried (another JAX version's pullback). The pseudo-Huber objective
    sum(sqrt(1 + u^2)) has its minimum at 0, and from |u| > 1 the full Newton step
    -u (1 + u^2) overshoots, so these starts backtrack."""
    def objective(u):
        return jnp.sum(jnp.sqrt(1.0 + u * u))

    starts = jnp.array([[0.5, -0.3], [3.0, -2.0], [10.0, 0.1], [-40.0, 25.0]])
    tol = 1e-10

    def solve(vectorized):
        return lambda u0: solvers.minimize(solvers.newton(vectorized=vectorized), objective, u0,
                                           tol, 0.0, 100)

    mapped = jax.jit(jax.vmap(solve(True)))(starts)
    looped = jax.jit(lambda s: jax.lax.map(solve(False), s))(starts)

    class Unusable(newton_module._Residuals):
        def __init__(self, *args):
            super().__init__(*args)
            self.usable = False

    monkeypatch.setattr(newton_module, "_Residuals", Unusable)
    looped_eager = jax.jit(lambda s: jax.lax.map(solve(False), s))(starts)
    for a, b, c in zip(mapped, looped, looped_eager):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
        np.testing.assert_allclose(c, b, rtol=0, atol=1e-15)
    position, _, grad, steps, code, hessian = looped
    grad_norm = np.max(np.abs(np.asarray(grad)), axis=-1)
    assert np.all(np.asarray(code) == solvers.Stop.GRADIENT)
    assert np.all(np.asarray(grad_norm) <= tol)
    np.testing.assert_allclose(position, 0.0, atol=tol)
    # The Hessian the last step was taken with, diag((1 + u^2)^(-3/2)) where it began: near
    # the minimum (Newton converges cubically here, u -> -u^3), so within 1e-6 of I.
    np.testing.assert_allclose(hessian, np.broadcast_to(np.eye(2), (4, 2, 2)), atol=1e-6)
    # The first start converges without backtracking in few steps; the far ones needed halving.
    assert int(steps[0]) <= 4 and int(steps[-1]) > int(steps[0])
    # Converged at the start (no step): the Hessian at u0 itself, diag((1 + u0^2)^(-3/2)).
    u0 = jnp.array([[0.0, 1e-12], [0.0, 2.0]])
    solution = jax.jit(lambda s: jax.lax.map(
        lambda u: solvers.minimize(solvers.newton(), objective, u, 1e-9, 0.0, 100), s))(u0)
    steps, hessian = solution.num_steps, solution.hessian
    np.testing.assert_array_equal(np.asarray(steps) == 0, [True, False])
    np.testing.assert_allclose(hessian[0], np.diag((1.0 + np.asarray(u0[0]) ** 2) ** -1.5),
                               rtol=1e-15)


def test_newtons_loop_state_leaves_the_data_out():
    """In a loop of problems Newton keeps the residuals of the gradient's pullback to build the
    next Hessian; the data, the same at every point, are not among them (for a logistic
    regression only n-vectors and smaller are carried, not the (n, d) design), and the
    Hessian rebuilt from them is jax.hessian's."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(50, 4)), (rng.uniform(size=50) < 0.5).astype(float)
    point = rng.normal(size=4)

    def check(X, y, u):
        def objective(w):
            eta = X @ w
            return jnp.sum(jax.nn.softplus(eta) - y * eta)

        value_grad_pullback = newton_module._value_grad_pullback(objective)
        pullback0 = value_grad_pullback(jnp.zeros(4))[2]
        residuals = newton_module._Residuals(pullback0, value_grad_pullback(jnp.zeros(4) + 0)[2], 4, u.dtype)
        assert residuals.usable
        varying = residuals.varying(value_grad_pullback(u)[2])
        assert varying and all(leaf.size <= 50 for leaf in varying), [v.shape for v in varying]
        return residuals.hessian(varying), jax.hessian(objective)(u)

    rebuilt, expected = jax.jit(check)(X, y, point)
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-13)


def test_default_lbfgs_takes_the_steps_of_scipys_lbfgsb(rng):
    """fit's L-BFGS starts with a step of length 1 as L-BFGS-B does (scipy, scikit-learn's
    lbfgs), not optax's shorter -min(1, 1/|g|) g: after 1, 2 and all iterations its iterates
    are scipy's to round-off, in as many iterations. (With optax's own first step they differ
    by 0.4 after one iteration, and the whole solve takes more iterations.)"""
    import scipy.optimize

    n, d = 2000, 5
    X = rng.normal(size=(n, d))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ rng.normal(size=d) + 0.5)))).astype(float)

    def objective(w):  # the mean log loss + an L2 penalty, scikit-learn's scaling
        eta = X @ w[1:] + w[0]
        return jnp.mean(jax.nn.softplus(eta) - y * eta) + 0.5 * jnp.sum(w[1:] ** 2) / n

    value_and_grad = jax.jit(jax.value_and_grad(objective))
    for iterations in (1, 2, 100):
        reference = scipy.optimize.minimize(
            lambda w: tuple(np.asarray(v) for v in value_and_grad(w)), np.zeros(d + 1),
            jac=True, method="L-BFGS-B", options={"maxiter": iterations, "gtol": 1e-10, "ftol": 0})
        solution = solvers.minimize(solvers.lbfgs(), objective, jnp.zeros(d + 1), 1e-10, 0.0,
                                    iterations)
        assert int(solution.num_steps) == reference.nit
        np.testing.assert_allclose(solution.position, reference.x, rtol=0, atol=1e-12)
