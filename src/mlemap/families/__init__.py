"""Likelihood families, and the loss that each one's negative log-likelihood is.

A family turns a linear predictor ``eta`` into a NumPyro distribution for the response. Its
negative log-likelihood is an exact *affine* function of a familiar loss, observation by
observation:

.. math::

    -\\log p(y_i \\mid \\eta_i, \\phi) = a(\\phi)\\, L(\\eta_i, y_i) + c_i(y_i, \\phi)

so minimizing the loss and maximizing the likelihood give the same point whenever the
nuisance parameters :math:`\\phi` are fixed.

=============  ========  =========================================  ============  ==========================================
family         link      loss :math:`L`                             slope a       constant :math:`c_i`
=============  ========  =========================================  ============  ==========================================
gaussian(s)    identity  squared error :math:`(y-\\eta)^2`         1/(2 s^2)     :math:`\\log s + \\tfrac12\\log 2\\pi`
laplace(b)     identity  absolute error :math:`|y-\\eta|`          1/b           :math:`\\log 2b`
student_t      identity  :math:`\\tfrac{\\nu+1}{2}\\log(1+r^2/\\nu s^2)` 1       :math:`\\log s + \\tfrac12\\log\\nu\\pi + \\log\\Gamma(\\tfrac\\nu2) - \\log\\Gamma(\\tfrac{\\nu+1}2)`
bernoulli      logit     binary cross-entropy (log loss)            1             0
categorical    softmax   softmax cross-entropy                      1             0
poisson        log       half Poisson deviance :math:`y\\log(y/\\mu) - (y-\\mu)`  1   :math:`\\log y! - y\\log y + y`
gamma(k)       inv, log  half Gamma deviance :math:`y/\\mu - \\log(y/\\mu) - 1`   k   :math:`\\log\\Gamma(k) - k\\log k + k + \\log y`
binomial(n)    logit     log loss of the proportion :math:`\\ell(\\eta, y/n)`  n_i (trials)  :math:`-\\log\\binom{n}{y}`
neg. binomial  log       half NB2 deviance :math:`y\\log\\frac y\\mu - (y+r)\\log\\frac{y+r}{\\mu+r}`  1  :math:`\\log y! + \\log\\Gamma(r) - \\log\\Gamma(y+r) - r\\log r - y\\log y + (y+r)\\log(y+r)`, :math:`r = 1/\\alpha`
beta(phi)      logit     beta log-loss :math:`\\log B(\\mu\\phi, (1-\\mu)\\phi) - \\mu\\phi\\,\\mathrm{logit}\\,y`  1  :math:`\\log y + \\log(1-y) - \\phi\\log(1-y)`
ordinal        cum. logit  ordinal cross-entropy :math:`-\\log(\\sigma(c_y-\\eta) - \\sigma(c_{y-1}-\\eta))`  1  0
=============  ========  =========================================  ============  ==========================================

Each family's ``loss`` is optax's where optax has it (``squared_error``,
``sigmoid_binary_cross_entropy``, ``softmax_cross_entropy_with_integer_labels``); the
log-probabilities are NumPyro's distributions, a few with their ``log_prob`` rewritten for
accuracy (Bernoulli and binomial: an exact gradient at 0; negative binomial and beta:
log-gamma functions instead of JAX's ``betaln``; ordinal: in log space), each saying why.
A nuisance parameter passed as a number is fixed; left as ``None`` it becomes a learned
parameter of the model (a positive :class:`~mlemap.Param`; the ordinal cut points an
ordered vector). A family's per-observation arrays besides the response (binomial's trials)
are data: ``glm`` puts them in the data pytree (:attr:`Family.data`).
"""

from mlemap.families._continuous import beta, gamma, gaussian, laplace, student_t
from mlemap.families._counts import binomial, negative_binomial
from mlemap.families._discrete import bernoulli, categorical, poisson
from mlemap.families._family import Family
from mlemap.families._ordinal import ordinal

__all__ = [
    "Family",
    "gaussian",
    "laplace",
    "student_t",
    "bernoulli",
    "categorical",
    "poisson",
    "gamma",
    "binomial",
    "negative_binomial",
    "beta",
    "ordinal",
]
