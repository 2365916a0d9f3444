"""Solvers: one interface (:class:`Solver`), one loop (:func:`minimize`), one registry.

Each solver minimizes :math:`F(u)` over the flat unconstrained vector and is built by a
factory in its own module; ``fit`` looks it up in :data:`REGISTRY` by name:

============  ===========================================================================
``lbfgs``     optax's L-BFGS with its zoom line search (or any optax transformation given
              as ``optimizer``); the default of a single fit
``newton``    exact-Hessian Newton with Armijo backtracking; the default of batched fits of
              at most ``NEWTON_MAX_DIM`` coordinates
``fista``     FISTA with soft-thresholding, for Laplace priors on real parameters (exact
              zeros); chosen whenever such a prior is present under ``method="map"``
============  ===========================================================================

After ``lbfgs``, :func:`polish` takes Newton steps when it stopped short of ``tol`` (on
at most ``POLISH_MAX_DIM`` coordinates; L-BFGS gets ``max(POLISH_AFTER, 10 * dim)``
iterations there, the polish the rest of ``max_steps``).
A new solver is a module with a factory returning a :class:`Solver`, and a line below.
"""

from mlemap.solvers._base import Iterate, Solution, Solver, Stop, minimize
from mlemap.solvers._fista import L1, fista
from mlemap.solvers._lbfgs import lbfgs
from mlemap.solvers._newton import MAX_DIM as NEWTON_MAX_DIM
from mlemap.solvers._newton import newton
from mlemap.solvers._polish import MAX_DIM as POLISH_MAX_DIM
from mlemap.solvers._polish import POLISH_AFTER, needs_polish, polish

__all__ = ["Solver", "Solution", "Iterate", "Stop", "minimize", "REGISTRY", "lbfgs",
           "newton", "fista", "L1", "polish", "needs_polish", "NEWTON_MAX_DIM",
           "POLISH_MAX_DIM", "POLISH_AFTER"]

#: Solver name -> factory returning a :class:`Solver`.
REGISTRY = {
    "lbfgs": lbfgs,
    "newton": newton,
    "fista": fista,
}
