"""The Moré-Garbow-Hillstrom test problems, fitted as maximum likelihood.

J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing Unconstrained Optimization
Software", ACM Trans. Math. Softw. 7(1):17-41, 1981 (MGH below). Each problem is a sum of
squares :math:`f(x) = \\sum_{i=1}^m f_i(x)^2`; here it is an ``mm.Model`` with one real
parameter ``x`` of shape ``(n,)``, a flat prior, and the pointwise log-likelihood
:math:`-f_i(x)^2`, so that ``mm.fit(..., method="mle")`` minimizes
:math:`F(x) = f(x)/m` (mlemap divides by ``n_obs = m``; ``x`` is real, so the unconstrained
space is ``x`` itself). The problem's constants (Bard's, Meyer's, Osborne's ``y_i``, the
``t_i``) are the model's data, passed as an argument; problems without constants get the
index ``i = 1..m`` as data.

The property tested, for every problem, from MGH's standard starting point at mlemap's
default settings: **the status never lies** (``test_status_never_lies``).

- ``Status.CONVERGED``: the gradient of :math:`F`, recomputed here by ``jax.grad`` of this
  module's own objective (not mlemap's), has max-abs ``<= tol`` (mlemap's default, 1e-9 in
  float64); the Hessian of :math:`F` there has no negative eigenvalue beyond round-off
  (:math:`\\lambda_{\\min} \\ge -\\sqrt{\\epsilon}\\max|\\lambda|`: a maximum of the
  log-likelihood, not a saddle); and :math:`f(x)` is one of the minimal values listed for
  the problem (relative 1e-6 against the value at a minimizer, refined here to more digits
  than MGH print, or absolute 1e-10 where it is 0), at MGH's minimizer where they give a
  unique regular one (within what ``tol`` allows).
- Any other status: exactly one ``FitWarning``, carrying the non-empty message, and what
  the status claims is true of the returned point: ``MAX_STEPS`` and ``STALLED`` say the
  gradient is still above ``tol`` (recomputed here); ``NO_MAXIMUM`` says the supremum of
  the log-likelihood is approached as ``x`` diverges, true only for the problems listed
  with an infimum at infinity (Bard, Kowalik-Osborne); ``NOT_UNIQUE`` says the minimum is
  one of a continuum, true only where the minimizers are not isolated (Box 3-D on its line
  ``x1 = x2, x3 = 0``; the linear rank-1 problems 33 and 34 everywhere on their minimal
  affine set); ``UNBOUNDED`` and ``BOUNDARY`` are never true here (``-f <= 0`` is bounded,
  and ``x`` is unconstrained); ``NONFINITE``: a gradient above ``tol`` or not finite.

Every number in ``PROBLEMS`` (n, m, x0, the minimal values f*, the exact minimizers) is the
paper's, as printed, unless its comment says otherwise. The ``refined`` minimizers are
computed here (scipy's ``least_squares``, method "lm", ``xtol = ftol = gtol = 1e-15``, from
x0 and perturbed starts, then Newton steps on ``jax.hessian`` in float64), so that f* is
known beyond MGH's six digits; ``test_refined_minima_match_the_paper`` checks them, and the
formulas, against the printed digits.
"""

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlemap as mm

TOL = 1e-9  # mm.fit's default tol in float64: max-abs gradient of F = f/m


# --------------------------------------------------------------------------------------------
# The residuals f_i(x), one function per problem: (x (n,), data) -> (m,)
# --------------------------------------------------------------------------------------------


def _index(m):
    """Data for a problem without constants: i = 1..m."""
    return {"i": np.arange(1.0, m + 1.0)}


def rosenbrock(x, d):  # 1
    return jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def freudenstein_roth(x, d):  # 2
    return jnp.stack([-13.0 + x[0] + ((5.0 - x[1]) * x[1] - 2.0) * x[1],
                      -29.0 + x[0] + ((x[1] + 1.0) * x[1] - 14.0) * x[1]])


def powell_badly_scaled(x, d):  # 3
    return jnp.stack([1e4 * x[0] * x[1] - 1.0,
                      jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x, d):  # 4
    return jnp.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0])


def beale(x, d):  # 5
    return d["y"] - x[0] * (1.0 - x[1] ** d["i"])


def jennrich_sampson(x, d):  # 6
    i = d["i"]
    return 2.0 + 2.0 * i - (jnp.exp(i * x[0]) + jnp.exp(i * x[1]))


def helical_valley(x, d):  # 7
    # theta = arctan(x2/x1)/(2 pi) (+ 1/2 when x1 < 0): MGH's definition, not arctan2.
    x1 = jnp.where(x[0] == 0.0, 1.0, x[0])
    theta = jnp.arctan(x[1] / x1) / (2.0 * jnp.pi) + jnp.where(x[0] < 0.0, 0.5, 0.0)
    return jnp.stack([10.0 * (x[2] - 10.0 * theta),
                      10.0 * (jnp.sqrt(x[0] ** 2 + x[1] ** 2) - 1.0),
                      x[2]])


def bard(x, d):  # 8
    u, v, w = d["u"], d["v"], d["w"]
    return d["y"] - (x[0] + u / (v * x[1] + w * x[2]))


def gaussian(x, d):  # 9
    return x[0] * jnp.exp(-0.5 * x[1] * (d["t"] - x[2]) ** 2) - d["y"]


def meyer(x, d):  # 10
    return x[0] * jnp.exp(x[1] / (d["t"] + x[2])) - d["y"]


def gulf(x, d):  # 11 (MGH print "mi" for the minus sign in |y_i - x2|)
    return jnp.exp(-(jnp.abs(d["y"] - x[1]) ** x[2]) / x[0]) - d["t"]


def box_3d(x, d):  # 12
    t = d["t"]
    return (jnp.exp(-t * x[0]) - jnp.exp(-t * x[1])
            - x[2] * (jnp.exp(-t) - jnp.exp(-10.0 * t)))


def powell_singular(x, d):  # 13
    return jnp.stack([x[0] + 10.0 * x[1],
                      math.sqrt(5.0) * (x[2] - x[3]),
                      (x[1] - 2.0 * x[2]) ** 2,
                      math.sqrt(10.0) * (x[0] - x[3]) ** 2])


def wood(x, d):  # 14
    return jnp.stack([10.0 * (x[1] - x[0] ** 2),
                      1.0 - x[0],
                      math.sqrt(90.0) * (x[3] - x[2] ** 2),
                      1.0 - x[2],
                      math.sqrt(10.0) * (x[1] + x[3] - 2.0),
                      (x[1] - x[3]) / math.sqrt(10.0)])


def kowalik_osborne(x, d):  # 15
    u = d["u"]
    return d["y"] - x[0] * (u ** 2 + u * x[1]) / (u ** 2 + u * x[2] + x[3])


def brown_dennis(x, d):  # 16 (f_i is itself a sum of two squares)
    t = d["t"]
    return ((x[0] + t * x[1] - jnp.exp(t)) ** 2
            + (x[2] + x[3] * jnp.sin(t) - jnp.cos(t)) ** 2)


def osborne_1(x, d):  # 17
    t = d["t"]
    return d["y"] - (x[0] + x[1] * jnp.exp(-t * x[3]) + x[2] * jnp.exp(-t * x[4]))


def biggs_exp6(x, d):  # 18
    t = d["t"]
    y = jnp.exp(-t) - 5.0 * jnp.exp(-10.0 * t) + 3.0 * jnp.exp(-4.0 * t)
    return (x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1])
            + x[5] * jnp.exp(-t * x[4]) - y)


def osborne_2(x, d):  # 19
    t = d["t"]
    return d["y"] - (x[0] * jnp.exp(-t * x[4])
                     + x[1] * jnp.exp(-((t - x[8]) ** 2) * x[5])
                     + x[2] * jnp.exp(-((t - x[9]) ** 2) * x[6])
                     + x[3] * jnp.exp(-((t - x[10]) ** 2) * x[7]))


def watson(x, d):  # 20: t_i = i/29 for i = 1..29, then f_30 = x1, f_31 = x2 - x1^2 - 1
    n = x.shape[0]
    powers = d["t"][:, None] ** jnp.arange(n)[None, :]  # (29, n): t^(j-1), j = 1..n
    j = jnp.arange(1, n)  # (n-1,): j - 1 for j = 2..n
    first = powers[:, :-1] @ (j * x[1:])  # sum_{j>=2} (j-1) x_j t^(j-2)
    second = powers @ x  # sum_j x_j t^(j-1)
    return jnp.concatenate([first - second ** 2 - 1.0,
                            jnp.stack([x[0], x[1] - x[0] ** 2 - 1.0])])


def extended_rosenbrock(x, d):  # 21
    odd, even = x[0::2], x[1::2]
    return jnp.stack([10.0 * (even - odd ** 2), 1.0 - odd], axis=1).reshape(-1)


def extended_powell_singular(x, d):  # 22
    x1, x2, x3, x4 = x[0::4], x[1::4], x[2::4], x[3::4]
    return jnp.stack([x1 + 10.0 * x2, math.sqrt(5.0) * (x3 - x4), (x2 - 2.0 * x3) ** 2,
                      math.sqrt(10.0) * (x1 - x4) ** 2], axis=1).reshape(-1)


def penalty_1(x, d):  # 23, a = 1e-5
    return jnp.concatenate([math.sqrt(1e-5) * (x - 1.0), jnp.stack([jnp.sum(x ** 2) - 0.25])])


def penalty_2(x, d):  # 24, a = 1e-5, y_i = exp(i/10) + exp((i-1)/10)
    n = x.shape[0]
    i = jnp.arange(2, n + 1)
    y = jnp.exp(i / 10.0) + jnp.exp((i - 1) / 10.0)
    e = jnp.exp(x / 10.0)
    a = math.sqrt(1e-5)
    weights = jnp.arange(n, 0, -1)  # n - j + 1
    return jnp.concatenate([jnp.stack([x[0] - 0.2]),
                            a * (e[1:] + e[:-1] - y),
                            a * (e[1:] - math.exp(-0.1)),
                            jnp.stack([jnp.sum(weights * x ** 2) - 1.0])])


def variably_dimensioned(x, d):  # 25
    s = jnp.sum(jnp.arange(1, x.shape[0] + 1) * (x - 1.0))
    return jnp.concatenate([x - 1.0, jnp.stack([s, s ** 2])])


def trigonometric(x, d):  # 26
    i = jnp.arange(1, x.shape[0] + 1)
    return x.shape[0] - jnp.sum(jnp.cos(x)) + i * (1.0 - jnp.cos(x)) - jnp.sin(x)


def brown_almost_linear(x, d):  # 27
    n = x.shape[0]
    return jnp.concatenate([x[:-1] + jnp.sum(x) - (n + 1.0), jnp.stack([jnp.prod(x) - 1.0])])


def _grid(n):
    h = 1.0 / (n + 1)
    return h, h * jnp.arange(1, n + 1)


def discrete_boundary_value(x, d):  # 28, x_0 = x_{n+1} = 0
    h, t = _grid(x.shape[0])
    padded = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return 2.0 * x - padded[:-2] - padded[2:] + h ** 2 * (x + t + 1.0) ** 3 / 2.0


def discrete_integral_equation(x, d):  # 29
    h, t = _grid(x.shape[0])
    c = (x + t + 1.0) ** 3
    below = jnp.cumsum(t * c)  # sum_{j <= i} t_j c_j
    above = jnp.sum((1.0 - t) * c) - jnp.cumsum((1.0 - t) * c)  # sum_{j > i} (1 - t_j) c_j
    return x + h * ((1.0 - t) * below + t * above) / 2.0


def broyden_tridiagonal(x, d):  # 30, x_0 = x_{n+1} = 0
    padded = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return (3.0 - 2.0 * x) * x - padded[:-2] - 2.0 * padded[2:] + 1.0


def broyden_banded(x, d):  # 31, ml = 5, mu = 1: the band J_i (j != i) is the data
    return x * (2.0 + 5.0 * x ** 2) + 1.0 - d["band"] @ (x * (1.0 + x))


def linear_full_rank(x, d):  # 32: f_i = x_i - 2/m sum x - 1 (i <= n), -2/m sum x - 1 (i > n)
    m = d["i"].shape[0]
    return jnp.concatenate([x, jnp.zeros(m - x.shape[0])]) - 2.0 / m * jnp.sum(x) - 1.0


def linear_rank_1(x, d):  # 33: f_i = i sum_j j x_j - 1
    return d["i"] * jnp.sum(jnp.arange(1, x.shape[0] + 1) * x) - 1.0


def linear_rank_1_zero(x, d):  # 34: f_1 = f_m = -1, f_i = (i-1) sum_{j=2}^{n-1} j x_j - 1
    n, i = x.shape[0], d["i"]
    s = jnp.sum(jnp.arange(2, n) * x[1:-1])
    inner = (i - 1.0) * s - 1.0
    return jnp.where((i == 1.0) | (i == i.shape[0]), -1.0, inner)


def chebyquad(x, d):  # 35: f_i = mean_j T_i(x_j) - int_0^1 T_i, T_i shifted to [0, 1]
    m = d["integral"].shape[0]
    y = 2.0 * x - 1.0
    previous, current, rows = jnp.ones_like(y), y, [jnp.mean(y)]
    for _ in range(1, m):
        previous, current = current, 2.0 * y * current - previous
        rows.append(jnp.mean(current))
    return jnp.stack(rows) - d["integral"]


# --------------------------------------------------------------------------------------------
# The problems' constants (MGH's, as printed)
# --------------------------------------------------------------------------------------------


def _bard_data():
    u = np.arange(1.0, 16.0)
    v = 16.0 - u
    return {"y": np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73,
                           0.96, 1.34, 2.10, 4.39]),
            "u": u, "v": v, "w": np.minimum(u, v)}


def _gulf_data(m):
    t = np.arange(1.0, m + 1.0) / 100.0
    return {"t": t, "y": 25.0 + (-50.0 * np.log(t)) ** (2.0 / 3.0)}


def _band(n, lower=5, upper=1):
    i, j = np.indices((n, n))
    return {"band": ((j >= i - lower) & (j <= i + upper) & (j != i)).astype(float)}


def _chebyquad_data(m):
    i = np.arange(1.0, m + 1.0)
    integral = np.zeros(m)
    even = i % 2 == 0
    integral[even] = -1.0 / (i[even] ** 2 - 1.0)
    return {"integral": integral}


BEALE = {"y": np.array([1.5, 2.25, 2.625]), "i": np.arange(1.0, 4.0)}
GAUSSIAN = {"t": (8.0 - np.arange(1.0, 16.0)) / 2.0,
            "y": np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
                           0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009])}
MEYER = {"t": 45.0 + 5.0 * np.arange(1.0, 17.0),
         "y": np.array([34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0,
                        8261.0, 7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0])}
KOWALIK_OSBORNE = {
    "y": np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323,
                   0.0235, 0.0246]),
    "u": np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])}
OSBORNE_1 = {
    "t": 10.0 * np.arange(33.0),
    "y": np.array([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
                   0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
                   0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406])}
OSBORNE_2 = {
    "t": np.arange(65.0) / 10.0,
    "y": np.array([1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746,
                   0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649,
                   0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395,
                   0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653,
                   0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739,
                   0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054])}


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


class Minimum(NamedTuple):
    """A minimal value listed for a problem.

    ``value`` is as MGH print it, ``digits`` significant digits (MGH cut some values and
    round others: 87.9458 is 87.945855..., 5.65565e-3 is 5.6556499...e-3; None: exact, as
    0 or m - n). ``x``: MGH's own minimizer where they give it exactly; ``unique``: that
    minimizer is isolated and regular, so a fitted point is compared with it too.
    ``refined``: a minimizer computed here (see the module's docstring) where MGH give none,
    so that the value is known beyond MGH's digits. ``at_infinity``: an infimum approached
    as x diverges, never attained (a fit there may not say converged). ``note``: a value
    that is not MGH's.
    """

    value: float
    digits: int | None = None
    x: tuple | None = None
    unique: bool = False
    refined: tuple | None = None
    at_infinity: bool = False
    note: str = ""


class Problem(NamedTuple):
    number: int  # MGH's numbering
    name: str
    n: int
    m: int
    x0: tuple  # MGH's standard starting point
    minima: tuple  # of Minimum
    residuals: Callable
    data: dict
    source: str
    # Where the minimizers form a continuum: a predicate of an end point that lies on it, so
    # that Status.NOT_UNIQUE there is the truth.
    flat: Callable | None = None


def _n(n, value):
    return tuple(float(value(j)) for j in range(1, n + 1))


# n, m, x0, f* and the exact minimizers: MGH 1981, section 3 (numbered as there), as printed.
# The refined=... minimizers are computed here (float64, scipy least_squares then Newton on
# jax.hessian; |grad F| <= 2e-12 at each except Meyer's, whose Hessian has condition 1e16).
PROBLEMS = [
    Problem(1, "rosenbrock", 2, 2, (-1.2, 1.0),
            (Minimum(0.0, x=(1.0, 1.0), unique=True),), rosenbrock, _index(2), "MGH"),
    Problem(2, "freudenstein_roth", 2, 2, (0.5, -2.0),
            (Minimum(0.0, x=(5.0, 4.0), unique=True),
             Minimum(48.9842, 6,  # MGH: at (11.41..., -0.8968...)
                     refined=(11.412778986902094, -0.8968052532744766))),
            freudenstein_roth, _index(2), "MGH"),
    Problem(3, "powell_badly_scaled", 2, 2, (0.0, 1.0),
            (Minimum(0.0),),  # MGH: at (1.098...e-5, 9.106...)
            powell_badly_scaled, _index(2), "MGH"),
    Problem(4, "brown_badly_scaled", 2, 3, (1.0, 1.0),
            (Minimum(0.0, x=(1e6, 2e-6), unique=True),), brown_badly_scaled, _index(3), "MGH"),
    Problem(5, "beale", 2, 3, (1.0, 1.0),
            (Minimum(0.0, x=(3.0, 0.5), unique=True),), beale, BEALE, "MGH"),
    Problem(6, "jennrich_sampson", 2, 10, (0.3, 0.4),
            (Minimum(124.362, 6,  # MGH: at x1 = x2 = 0.2578 (m = 10)
                     refined=(0.2578252136703641, 0.2578252136703641)),),
            jennrich_sampson, _index(10), "MGH (m = 10)"),
    Problem(7, "helical_valley", 3, 3, (-1.0, 0.0, 0.0),
            (Minimum(0.0, x=(1.0, 0.0, 0.0), unique=True),), helical_valley, _index(3), "MGH"),
    Problem(8, "bard", 3, 15, (1.0, 1.0, 1.0),
            (Minimum(8.21487e-3, 6,
                     refined=(0.08241055974978924, 1.1330360920297329, 2.343695178642526)),
             Minimum(17.4286, 6, at_infinity=True)),  # MGH: at (0.8406..., -inf, -inf)
            bard, _bard_data(), "MGH"),
    Problem(9, "gaussian", 3, 15, (0.4, 1.0, 0.0),
            (Minimum(1.12793e-8, 6,
                     refined=(0.39895613783875666, 1.0000190844878059, 0.0)),),
            gaussian, GAUSSIAN, "MGH"),
    Problem(10, "meyer", 3, 16, (0.02, 4000.0, 250.0),
            (Minimum(87.9458, 6,
                     refined=(0.005609636471027897, 6181.346346286396, 345.2236346241373)),),
            meyer, MEYER, "MGH"),
    Problem(11, "gulf", 3, 99, (5.0, 2.5, 0.15),
            (Minimum(0.0, x=(50.0, 25.0, 1.5), unique=True),), gulf, _gulf_data(99),
            "MGH (m = 99 of 3 <= m <= 100; MGH's 'mi' read as a minus sign)"),
    Problem(12, "box_3d", 3, 10, (0.0, 10.0, 20.0),
            # MGH: f = 0 at (1, 10, 1), (10, 1, -1) and wherever x1 = x2 and x3 = 0
            (Minimum(0.0),), box_3d, {"t": 0.1 * np.arange(1.0, 11.0)}, "MGH (m = 10)",
            flat=lambda x: abs(x[0] - x[1]) < 1e-3 and abs(x[2]) < 1e-3),
    Problem(13, "powell_singular", 4, 4, (3.0, -1.0, 0.0, 1.0),
            # the origin: isolated but singular (Hessian of rank 2), so F is quartic there and
            # a point with |grad F| <= tol is ~1e-4 away: the value is tested, not the point
            (Minimum(0.0, x=(0.0, 0.0, 0.0, 0.0)),), powell_singular, _index(4), "MGH"),
    Problem(14, "wood", 4, 6, (-3.0, -1.0, -3.0, -1.0),
            (Minimum(0.0, x=(1.0, 1.0, 1.0, 1.0), unique=True),), wood, _index(6), "MGH"),
    Problem(15, "kowalik_osborne", 4, 11, (0.25, 0.39, 0.415, 0.39),
            (Minimum(3.07505e-4, 6, refined=(0.1928069345790379, 0.1912823287343667,
                                             0.12305650692632074, 0.13606233068379472)),
             Minimum(1.02734e-3, 6, at_infinity=True)),  # MGH: at (+inf, -14.07..., -inf, -inf)
            kowalik_osborne, KOWALIK_OSBORNE, "MGH"),
    Problem(16, "brown_dennis", 4, 20, (25.0, 5.0, -5.0, -1.0),
            (Minimum(85822.2, 6, refined=(-11.594439904762163, 13.203630051207202,
                                          -0.40343948817685954, 0.23677877445573625)),),
            brown_dennis, {"t": np.arange(1.0, 21.0) / 5.0}, "MGH (m = 20)"),
    Problem(17, "osborne_1", 5, 33, (0.5, 1.5, -1.0, 0.01, 0.02),
            (Minimum(5.46489e-5, 6, refined=(0.37541005210695183, 1.9358469127123334,
                                             -1.4646871366133891, 0.012867534640057224,
                                             0.022122699661672757)),),
            osborne_1, OSBORNE_1, "MGH"),
    Problem(18, "biggs_exp6", 6, 13, (1.0, 2.0, 1.0, 1.0, 1.0, 1.0),
            # MGH list 5.65565e-3 for m = 13. The point with that value (x1 = x5, so only
            # x3 + x6 matters) is a saddle, not a minimum: the Hessian of F there has an
            # eigenvalue -7.5e-4 (largest 0.87). f = 0 at (1, 10, 1, 5, 4, 3) and
            # (4, 10, 3, 5, 1, 1) is the global minimum for every m >= 6 (the data are made
            # from it; whether MGH print it is uncertain: jlmelville/funconstrain says not).
            (Minimum(5.65565e-3, 6, refined=(1.7114159947195877, 17.683198180949052,
                                             1.161889163893394, 5.186561551993446,
                                             1.7114159947195877, 1.1643981579443914)),
             Minimum(0.0, x=(1.0, 10.0, 1.0, 5.0, 4.0, 3.0))),
            biggs_exp6, {"t": 0.1 * np.arange(1.0, 14.0)}, "MGH (m = 13)"),
    Problem(19, "osborne_2", 11, 65, (1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5),
            (Minimum(4.01377e-2, 6, refined=(
                1.3099771546273005, 0.4315537946029888, 0.633661698960724, 0.599430534785916,
                0.7541832263280109, 0.9042885798596347, 1.3658118352370272, 4.823698817227159,
                2.3986848661317546, 4.568874597667672, 5.6753414705806415)),),
            osborne_2, OSBORNE_2, "MGH"),
    Problem(20, "watson_6", 6, 31, (0.0,) * 6,
            (Minimum(2.28767e-3, 6, refined=(
                -0.015725086401458324, 1.0124348693691096, -0.2329916259567352,
                1.260430087799601, -1.5137289227222706, 0.9929964324311307)),),
            watson, {"t": np.arange(1.0, 30.0) / 29.0}, "MGH (n = 6)"),
    Problem(20, "watson_9", 9, 31, (0.0,) * 9,
            (Minimum(1.39976e-6, 6, refined=(
                -1.5307036514061076e-05, 0.9997897039319477, 0.014763963693604542,
                0.14634232829897034, 1.0008211030063916, -2.6177311405227375,
                4.104403164483335, -3.1436122785592144, 1.0526264080108647)),),
            watson, {"t": np.arange(1.0, 30.0) / 29.0}, "MGH (n = 9)"),
    Problem(21, "extended_rosenbrock", 10, 10, (-1.2, 1.0) * 5,
            (Minimum(0.0, x=(1.0,) * 10, unique=True),), extended_rosenbrock, _index(10),
            "MGH (n = 10)"),
    Problem(22, "extended_powell_singular", 8, 8, (3.0, -1.0, 0.0, 1.0) * 2,
            (Minimum(0.0, x=(0.0,) * 8),), extended_powell_singular, _index(8), "MGH (n = 8)"),
    Problem(23, "penalty_1", 4, 5, _n(4, lambda j: j),
            (Minimum(2.24997e-5, 6, refined=(0.2500074995875379,) * 4),),
            penalty_1, _index(5), "MGH (n = 4)"),
    Problem(24, "penalty_2", 4, 8, (0.5,) * 4,
            (Minimum(9.37629e-6, 6, refined=(0.1999993333503804, 0.19131670099277248,
                                             0.48010148533262326, 0.5188454043902003)),),
            penalty_2, _index(8), "MGH (n = 4)"),
    Problem(25, "variably_dimensioned", 10, 12, _n(10, lambda j: 1.0 - j / 10),
            (Minimum(0.0, x=(1.0,) * 10, unique=True),), variably_dimensioned, _index(12),
            "MGH (n = 10)"),
    Problem(26, "trigonometric", 10, 10, (0.1,) * 10,
            (Minimum(0.0),
             Minimum(2.79506e-5, 6, note="not MGH's: a local minimum (Hessian positive "
                     "definite, eigenvalue ratio 0.024) found here from x0 by scipy too",
                     refined=(0.05515090398069225, 0.05684061679473956, 0.05876400176269602,
                              0.06099060865676192, 0.06362621369585594, 0.06684317945276058,
                              0.2081615185698791, 0.16436309588564238, 0.0850068956885108,
                              0.09143145071470783)),
             Minimum(4.21863e-5, 6, note="not MGH's: another local minimum (Hessian positive "
                     "definite, eigenvalues 0.065 to 2.7), where mlemap's damped Newton ends "
                     "from x0; refined from there by scipy's trust-exact",
                     refined=(0.05391292540937104, 0.055496591417120586, 0.05728588097236895,
                              0.05933664548743764, 0.06173012720256506, 0.25788600359128794,
                              0.06811418218066807, 0.07262293116291707, 0.07846159932548726,
                              0.0837538642562455))),
            trigonometric, _index(10), "MGH (n = 10)"),
    Problem(27, "brown_almost_linear", 10, 10, (0.5,) * 10,
            # f = 0 at (a, ..., a, a^(1-n)), n a^n - (n+1) a^(n-1) + 1 = 0 (a = 1 among them)
            (Minimum(0.0), Minimum(1.0, x=(0.0,) * 9 + (11.0,))),
            brown_almost_linear, _index(10), "MGH (n = 10)"),
    Problem(28, "discrete_boundary_value", 10, 10, _n(10, lambda j: j / 11 * (j / 11 - 1)),
            (Minimum(0.0),), discrete_boundary_value, _index(10), "MGH (n = 10)"),
    Problem(29, "discrete_integral_equation", 10, 10, _n(10, lambda j: j / 11 * (j / 11 - 1)),
            (Minimum(0.0),), discrete_integral_equation, _index(10), "MGH (n = 10)"),
    Problem(30, "broyden_tridiagonal", 10, 10, (-1.0,) * 10,
            (Minimum(0.0),), broyden_tridiagonal, _index(10), "MGH (n = 10)"),
    Problem(31, "broyden_banded", 10, 10, (-1.0,) * 10,
            (Minimum(0.0),), broyden_banded, _band(10), "MGH (n = 10)"),
    Problem(32, "linear_full_rank", 10, 20, (1.0,) * 10,
            (Minimum(10.0, x=(-1.0,) * 10, unique=True),),  # f = m - n at x = -1
            linear_full_rank, _index(20), "MGH (n = 10, m = 20)"),
    Problem(33, "linear_rank_1", 5, 10, (1.0,) * 5,
            # f = m(m-1)/(2(2m+1)) wherever sum_j j x_j = 3/(2m+1): a hyperplane
            (Minimum(10 * 9 / (2 * 21)),), linear_rank_1, _index(10), "MGH (n = 5, m = 10)",
            flat=lambda x: True),
    Problem(34, "linear_rank_1_zero", 5, 10, (1.0,) * 5,
            # f = (m^2 + 3m - 6)/(2(2m - 3)) wherever sum_{j=2}^{n-1} j x_j = 3/(2m - 3)
            (Minimum((100 + 30 - 6) / (2 * 17)),), linear_rank_1_zero, _index(10),
            "MGH (n = 5, m = 10)", flat=lambda x: True),
    Problem(35, "chebyquad", 8, 8, _n(8, lambda j: j / 9),
            (Minimum(3.51687e-3, 6, refined=(
                0.04315276015101663, 0.1930908403841861, 0.26632870689027294, 0.5, 0.5,
                0.733671293109727, 0.8069091596158139, 0.9568472398489833)),),
            chebyquad, _chebyquad_data(8), "MGH (n = m = 8)"),
]


# --------------------------------------------------------------------------------------------
# This module's own objective (not mlemap's)
# --------------------------------------------------------------------------------------------


def _f(problem):
    """f(x) = sum_i f_i(x)^2, the problem's objective, as a JAX function of x."""
    data = jax.tree.map(jnp.asarray, problem.data)
    return lambda x: jnp.sum(problem.residuals(x, data) ** 2)


def _gradient_of_F(problem, x):
    """max |grad F(x)|, F = f/m: what mlemap's tol bounds, recomputed here."""
    return float(jnp.max(jnp.abs(jax.grad(_f(problem))(jnp.asarray(x)))) / problem.m)


def _hessian_of_F(problem, x):
    h = np.asarray(jax.hessian(_f(problem))(jnp.asarray(x))) / problem.m
    return 0.5 * (h + h.T)


def _reference_value(minimum, problem):
    """The listed value to more digits: exact where it is exact, else f at the refined
    minimizer."""
    if minimum.digits is None:
        return minimum.value
    return float(_f(problem)(jnp.asarray(minimum.refined)))


def _matches(value, reference):
    """f at a fitted point equals a listed minimal value: relative 1e-6, absolute 1e-10
    where the value is 0."""
    if reference == 0.0:
        return abs(value) <= 1e-10
    return abs(value - reference) <= 1e-6 * abs(reference)


def _scaled_gradient_of_F(problem, x) -> float:
    """max_j |dF/dx_j| / sqrt(|H_jj|) at x (H_jj floored at eps max |H_kk|)."""
    g = np.asarray(jax.grad(_f(problem))(jnp.asarray(x))) / problem.m
    diagonal = np.abs(np.diag(_hessian_of_F(problem, x)))
    diagonal = np.maximum(diagonal, np.finfo(float).eps * diagonal.max())
    return float(np.max(np.abs(g) / np.sqrt(diagonal)))


def _newton_decrement(problem, x) -> float:
    """sqrt(g' H^-1 g) of F at x (inf where H is not positive definite), with this module's
    objective and jax.hessian."""
    g = np.asarray(jax.grad(_f(problem))(jnp.asarray(x))) / problem.m
    try:
        factor = np.linalg.cholesky(_hessian_of_F(problem, x))
    except np.linalg.LinAlgError:
        return np.inf
    half = np.linalg.solve(factor, g)
    return float(np.sqrt(half @ half))


def _model(problem):
    residuals = problem.residuals
    return mm.Model({"x": mm.Param(shape=(problem.n,))},
                    lambda params, data: -residuals(params["x"], data) ** 2)


def _id(problem):
    return problem.name


# --------------------------------------------------------------------------------------------
# The table against the paper
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS, ids=_id)
def test_refined_minima_match_the_paper(problem):
    """Every listed minimum that has a minimizer here: f there is the printed value (to one
    unit of its last printed digit; exactly where the value is exact), and the refined
    minimizers are stationary (|grad F| <= 1e-10, a tenth of mlemap's tol; Meyer's 4e-7, the
    float64 limit of a Hessian of condition 1e16, at <= 1e-6). Checks the formulas and the table, not mlemap."""
    f = _f(problem)
    assert len(problem.x0) == problem.n
    assert np.shape(problem.residuals(jnp.asarray(problem.x0),
                                      jax.tree.map(jnp.asarray, problem.data))) == (problem.m,)
    for minimum in problem.minima:
        point = minimum.refined if minimum.refined is not None else minimum.x
        if point is None:
            continue
        value = float(f(jnp.asarray(point)))
        if minimum.digits is None:
            assert value == pytest.approx(minimum.value, rel=1e-12, abs=1e-20), minimum
        else:
            unit = 10.0 ** (math.floor(math.log10(minimum.value)) - minimum.digits + 1)
            assert abs(value - minimum.value) <= unit, (value, minimum)
        limit = 1e-6 if problem.name == "meyer" else 1e-10
        assert _gradient_of_F(problem, point) <= limit, minimum


# --------------------------------------------------------------------------------------------
# The property: the status never lies
# --------------------------------------------------------------------------------------------


def _fit(problem):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = mm.fit(_model(problem), problem.data, method="mle",
                     init={"x": np.asarray(problem.x0)})
    others = [w for w in caught if not issubclass(w.category, mm.FitWarning)]
    assert not others, [str(w.message) for w in others]
    return est, [w for w in caught if issubclass(w.category, mm.FitWarning)]


@pytest.mark.parametrize("problem", PROBLEMS, ids=_id)
def test_status_never_lies(problem):
    """From MGH's x0 at mlemap's defaults: a converged fit is a minimum MGH list (gradient
    recomputed here <= tol, no direction of negative curvature, the value one of the listed
    minima, the point MGH's where that is unique); any other status is warned, and is true
    of the returned point."""
    est, fit_warnings = _fit(problem)
    x = np.asarray(est.params["x"], dtype=float)
    assert x.shape == (problem.n,)
    value = float(_f(problem)(jnp.asarray(x)))
    gradient = _gradient_of_F(problem, x)
    status = mm.Status(est.result)
    where = (f"{problem.name}: {status.name} after {est.num_steps} steps, f = {value!r}, "
             f"|grad F| = {gradient:.3g} (mlemap's {est.grad_norm:.3g}), x = {x.tolist()}; "
             f"{est.message}")

    decrement = _newton_decrement(problem, x)
    scaled = _scaled_gradient_of_F(problem, x)
    where += f" (scaled gradient {scaled:.3g}, Newton decrement {decrement:.3g})"
    if status == mm.Status.CONVERGED:
        assert est.converged and not fit_warnings, where
        lies = []
        # First order, recomputed from this module's objective: the gradient test, plain or
        # in the units of the curvature, or in the Hessian's metric (mlemap's definitions;
        # the last two are invariant to units). The scaled test is mlemap's with the Hessian
        # at x, where Newton's uses its last step's: 1% apart at most here.
        if not (gradient <= TOL or scaled <= 1.01 * TOL or decrement <= TOL):
            lies.append(f"|grad F| = {gradient:.3g}, scaled {scaled:.3g} and the Newton "
                        f"decrement {decrement:.3g} are all > tol = {TOL:g}")
        # Second order: a maximum of the log-likelihood has no direction of positive
        # curvature (of -loglik: negative curvature of F), up to the Hessian's round-off.
        eigenvalues = np.linalg.eigvalsh(_hessian_of_F(problem, x))
        scale = np.max(np.abs(eigenvalues))
        if eigenvalues[0] < -np.sqrt(np.finfo(float).eps) * scale:
            lies.append(f"a saddle point: the Hessian of F has the eigenvalue "
                        f"{eigenvalues[0]:.3g} (largest {scale:.3g})")
        # The value: one of the (attained) minima listed for the problem.
        finite = [m for m in problem.minima if not m.at_infinity]
        hits = [m for m in finite if _matches(value, _reference_value(m, problem))]
        if not hits:
            lies.append(f"f = {value!r} is none of the listed minima "
                        f"{[_reference_value(m, problem) for m in finite]}")
        # The point, where the minimizer is unique and regular: within what |grad F| <= tol
        # allows, |x - x*| <~ sqrt(n) tol / lambda_min(H(x*)) (ten times that).
        for minimum in hits:
            if minimum.unique:
                star = np.asarray(minimum.x)
                smallest = np.linalg.eigvalsh(_hessian_of_F(problem, star))[0]
                radius = 10.0 * np.sqrt(problem.n) * TOL / smallest
                if not np.all(np.abs(x - star) <= radius + 1e-12 * np.abs(star)):
                    lies.append(f"x is {np.max(np.abs(x - star)):.3g} from the minimizer "
                                f"{star.tolist()} (allowed {radius:.3g})")
        assert not lies, f"converged, but: {'; '.join(lies)}. {where}"
        return

    # Not converged: said, with a message, and true.
    assert not est.converged, where
    assert isinstance(est.message, str) and est.message.strip(), where
    assert len(fit_warnings) == 1, where
    assert est.message in str(fit_warnings[0].message), where
    if status in (mm.Status.MAX_STEPS, mm.Status.STALLED):
        # Both messages say the gradient is still above tol, in every metric.
        assert gradient > TOL and scaled > TOL and not decrement <= TOL, (
            f"{status.name}, but the first-order condition holds. {where}")
    elif status == mm.Status.SADDLE:
        # True only with a direction of negative curvature at the returned point.
        eigenvalues = np.linalg.eigvalsh(_hessian_of_F(problem, x))
        assert eigenvalues[0] < -np.sqrt(np.finfo(float).eps) * np.max(np.abs(eigenvalues)), (
            f"SADDLE, but the Hessian of F has no negative eigenvalue: {eigenvalues}. {where}")
    elif status == mm.Status.NONFINITE:
        assert not (np.isfinite(value) and np.isfinite(gradient)) or gradient > TOL, where
    elif status == mm.Status.NOT_UNIQUE:
        # True only on a continuum of minimizers, at one of the listed minimal values.
        assert problem.flat is not None and problem.flat(x), (
            f"NOT_UNIQUE, but the problem's minimizers are isolated here. {where}")
        assert any(_matches(value, _reference_value(m, problem))
                   for m in problem.minima if not m.at_infinity), where
    elif status == mm.Status.NO_MAXIMUM:
        # True only where an infimum is approached at infinity (the value close to it:
        # the approach is slow, so 1% relative).
        assert any(m.at_infinity and abs(value - m.value) <= 1e-2 * m.value
                   for m in problem.minima), (
            f"NO_MAXIMUM, but f = {value!r} is not near an infimum at infinity. {where}")
    else:
        # UNBOUNDED: the log-likelihood -f <= 0 is bounded above. BOUNDARY: x is real.
        pytest.fail(f"{status.name} cannot be true of a sum of squares in a real x. {where}")


def test_result_is_a_status_member():
    """PointEstimate.result is documented as the Status member behind the message; a
    converged fit's should be Status.CONVERGED itself (its name, its repr), not the int 0."""
    problem = PROBLEMS[0]
    est, _ = _fit(problem)
    assert est.result == mm.Status.CONVERGED
    assert isinstance(est.result, mm.Status), type(est.result)
