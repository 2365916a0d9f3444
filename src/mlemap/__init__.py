"""mlemap: MLE, MAP, Laplace and NUTS on one JAX log-density.

Every common loss is a negative log-likelihood and every common regularizer a log-prior:
MAP = MLE + prior. A model is written once, as named parameters and a pointwise
log-likelihood; ``fit`` finds its MLE or MAP, ``laplace`` approximates its posterior at the
mode, ``sample`` draws from it with NumPyro's NUTS, and ``compare`` puts them side by side.
"""

from mlemap import families, priors
from mlemap._fit import PointEstimate, fit
from mlemap._laplace import LaplaceApprox, laplace
from mlemap._model import Model, Param
from mlemap._sample import sample
from mlemap._shard import shard
from mlemap.glm import glm

__all__ = [
    "Model",
    "Param",
    "families",
    "priors",
    "glm",
    "fit",
    "PointEstimate",
    "laplace",
    "LaplaceApprox",
    "sample",
    "shard",
]
