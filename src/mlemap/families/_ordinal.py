"""Ordered classes: the cumulative logit (proportional odds) model, statsmodels'
``OrderedModel(distr="logit")``, with learned ordered cut points."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from mlemap import _checks
from mlemap._model import Param
from mlemap.families._family import Family

__all__ = ["ordinal"]


class _OrderedLogistic(dist.OrderedLogistic):
    """NumPyro's ``OrderedLogistic``, :math:`P(y \\le k) = \\sigma(c_k - \\eta)`, with the
    log-probability of each class computed in log space.

    NumPyro takes the log of :math:`\\sigma(c_k - \\eta) - \\sigma(c_{k-1} - \\eta)`, a
    difference of two numbers near 1 in the upper tail (every digit lost at
    :math:`c - \\eta = 40`). With :math:`a = c_{k-1} - \\eta < b = c_k - \\eta`,
    :math:`\\sigma(b) - \\sigma(a) = \\sigma(b)\\,\\sigma(-a)\\,(1 - e^{a - b})` exactly, so

    .. math:: \\log p(k) = -\\mathrm{softplus}(-b) - \\mathrm{softplus}(a)
              + \\log(-\\mathrm{expm1}(a - b)),

    with :math:`a = -\\infty` for the first class and :math:`b = +\\infty` for the last.
    """

    def log_prob(self, value):
        cuts = self.cutpoints  # (n, K-1), broadcast against the predictor
        eta = self.predictor[..., None]
        inf = jnp.full(cuts.shape[:-1] + (1,), jnp.inf, cuts.dtype)
        lower = jnp.concatenate([-inf, cuts], axis=-1) - eta  # (n, K): a
        upper = jnp.concatenate([cuts, inf], axis=-1) - eta  # (n, K): b
        index = jnp.asarray(value, jnp.int32)[..., None]
        a = jnp.take_along_axis(lower, index, axis=-1)[..., 0]
        b = jnp.take_along_axis(upper, index, axis=-1)[..., 0]
        # The infinite ends: a = -inf gives softplus(a) = 0 and expm1(-inf) = -1.
        a_finite = jnp.where(jnp.isfinite(a), a, 0.0)
        b_finite = jnp.where(jnp.isfinite(b), b, 0.0)
        log_upper = jnp.where(jnp.isfinite(b), -jax.nn.softplus(-b_finite), 0.0)
        log_lower = jnp.where(jnp.isfinite(a), -jax.nn.softplus(a_finite), 0.0)
        gap = jnp.where(jnp.isfinite(a) & jnp.isfinite(b), a_finite - b_finite, -jnp.inf)
        return log_upper + log_lower + jnp.log(-jnp.expm1(gap))


def _cumulative_start(num_classes: int):
    """Cut points at the log-odds of the empirical cumulative proportions (each class count
    + 1/2, so that they are finite and strictly increasing), with ``beta = 0``."""

    def start(y, mean):
        counts = jnp.sum(jax.nn.one_hot(y, num_classes, dtype=mean.dtype), axis=0) + 0.5
        cumulative = jnp.cumsum(counts)[:-1] / jnp.sum(counts)
        return {"cutpoints": jnp.log(cumulative) - jnp.log1p(-cumulative)}

    return start


def _resolve(family: Family, y) -> Family:
    """The number of classes from the labels (every class observed when it is inferred),
    and the ``(K-1,)`` cut points."""
    _, k = _checks.class_labels(np.asarray(y), family.num_classes, "ordinal")
    prior = family.learned["cutpoints"].prior
    return dataclasses.replace(
        family, num_classes=k,
        learned={"cutpoints": Param((k - 1,), constraints.ordered_vector, prior)},
        _nuisance_start=_cumulative_start(k), _resolve=None)


def ordinal(num_classes: int | None = None, *,
            cutpoints_prior: dist.Distribution | None = None) -> Family:
    """Ordered classes 0..K-1, cumulative logit link (proportional odds): the negative
    log-likelihood is the cross-entropy of the class probabilities.

    .. math:: P(y \\le k \\mid \\eta) = \\sigma(c_k - \\eta), \\qquad
              -\\log p(y \\mid \\eta) = -\\log\\big(\\sigma(c_y - \\eta) - \\sigma(c_{y-1} - \\eta)\\big)

    with cut points :math:`c_0 < \\dots < c_{K-2}` (:math:`c_{-1} = -\\infty`,
    :math:`c_{K-1} = +\\infty`; slope 1, constant 0), statsmodels'
    ``OrderedModel(y, X, distr="logit")`` and NumPyro's ``OrderedLogistic(eta, cutpoints)``.

    The cut points are learned, parameter ``cutpoints`` ``(K-1,)`` with NumPyro's
    ``ordered_vector`` support (statsmodels reports the first and the log-increments; these
    are the cut points themselves). They play the intercept's part: a shift of
    :math:`\\eta` is a shift of every cut point, so a model with both is not identified, and
    ``glm`` gives an ordinal model no intercept.

    Parameters
    ----------
    num_classes : int, optional
        K; default the largest label + 1, with every class observed.
    cutpoints_prior : Distribution, optional
        Prior on the cut points (default flat).
    """
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None; got {num_classes!r}.")
    family = Family(
        name="ordinal",
        link="cumulative logit",
        loss_name="ordinal cross-entropy",
        fixed={},
        learned={},
        _distribution=lambda eta, cutpoints: _OrderedLogistic(eta, cutpoints),
        _loss=lambda eta, y, cutpoints: -_OrderedLogistic(eta, cutpoints).log_prob(y),
        _affine=lambda y, cutpoints: (1.0, 0.0),
        _validate=lambda y: _checks.class_labels(y, num_classes, "ordinal")[0],
        _mean_link=None,  # no intercept: the cut points start at the cumulative log-odds
        _mean=lambda eta, cutpoints: _OrderedLogistic(eta, cutpoints).probs,
        num_classes=None if num_classes is None else int(num_classes),
        runaway_hints={"coefficients": (
            "With ordered classes this means a combination of the columns separates the "
            "classes (every observation above some level of it in a higher class): the MLE "
            "does not exist. Fix: add a proper prior on the coefficients (method='map', "
            "prior=Normal(0, s))."), "cutpoints": (
            "A cut point running off means an extreme class has no or all observations "
            "beyond it: merge it with its neighbour, or give the cut points a prior.")},
        _resolve=_resolve,
    )
    return dataclasses.replace(family, learned={
        "cutpoints": Param((max((num_classes or 2) - 1, 1),), constraints.ordered_vector,
                           cutpoints_prior)})
