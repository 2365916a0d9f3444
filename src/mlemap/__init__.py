"""mlemap: MLE, MAP, Laplace and NUTS on one JAX log-density.

Every common loss is a negative log-likelihood and every common regularizer a log-prior:
MAP = MLE + prior. A model is written once, as named parameters and a pointwise
log-likelihood; ``fit`` finds its MLE or MAP, ``laplace`` approximates its posterior at the
mode, ``sample`` draws from it with NumPyro's NUTS, and ``compare`` puts them side by side.
"""

from mlemap import families, priors
from mlemap._compare import CompareWarning, compare, compare_losses, prior_sweep
from mlemap._fit import FitError, FitWarning, PointEstimate, Status, fit
from mlemap._laplace import LaplaceApprox, LaplaceWarning, laplace
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
    "Status",
    "FitError",
    "FitWarning",
    "laplace",
    "LaplaceApprox",
    "LaplaceWarning",
    "sample",
    "compare",
    "compare_losses",
    "prior_sweep",
    "CompareWarning",
    "plots",
    "shard",
]


def __getattr__(name):
    # mm.plots imports arviz_plots and matplotlib (about half of the import time): only
    # when it is first used.
    if name == "plots":
        import importlib

        return importlib.import_module("mlemap.plots")
    raise AttributeError(f"module 'mlemap' has no attribute {name!r}")
