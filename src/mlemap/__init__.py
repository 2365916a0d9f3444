"""mlemap: MLE, MAP, Laplace and NUTS on one JAX log-density.

Every common loss is a negative log-likelihood and every common regularizer a log-prior:
MAP = MLE + prior. The package, in the order of its flow:

- model     ``_model`` (Model, Param: the flat unconstrained vector), ``_density`` (the three
            log-densities), ``families``/``priors``/``glm`` (losses and penalties as models;
            ``_glm`` a glm's structure), ``_numpyro`` (``from_numpyro``: NumPyro models);
- solvers   ``solvers`` (one interface, one loop, a registry: lbfgs, newton, fista, polish);
- fit       ``_fit`` (check -> solve -> diagnose) with ``_diagnose`` (what an end point means);
- laplace   ``_laplace`` (Gaussian at the mode, delta method, Pareto-k);
- sample    ``_sample`` (coordinator), ``_starts``, ``_nuts`` (NumPyro's NUTS), ``_adapt``
            (the warm-up: metric windows, step size), ``_metric`` (the metric from draws and
            gradients, as a change of variables), ``_draws``;
- posterior ``_posterior`` (Laplace + PSIS when Pareto-k passes, else NUTS from the mode);
- results   ``_summary`` (statsmodels' coefficient table), ``_predict`` (glm predictions);
- compare   ``_compare``, ``_sweep``, ``plots``, all reading ``_flat`` views;
- shared    ``_data`` (the data check), ``_checks`` (arguments), ``_programs`` (the compiled-
            program store, one per model structure), ``_shard`` (devices and processes).
"""

from mlemap import families, priors, solvers
from mlemap._compare import CompareWarning, compare, compare_losses
from mlemap._density import log_density_fn
from mlemap._diagnose import Status
from mlemap._fit import FitError, FitWarning, PointEstimate, fit
from mlemap._laplace import LaplaceApprox, LaplaceWarning, laplace
from mlemap._model import Model, Param
from mlemap._numpyro import from_numpyro
from mlemap._posterior import posterior
from mlemap._predict import predict
from mlemap._sample import SamplingWarning, sample
from mlemap._shard import shard
from mlemap._summary import Summary, summary
from mlemap._sweep import prior_sweep
from mlemap.glm import glm

__all__ = [
    "Model",
    "Param",
    "from_numpyro",
    "log_density_fn",
    "families",
    "priors",
    "glm",
    "fit",
    "solvers",
    "PointEstimate",
    "Status",
    "FitError",
    "FitWarning",
    "laplace",
    "LaplaceApprox",
    "LaplaceWarning",
    "posterior",
    "sample",
    "SamplingWarning",
    "summary",
    "Summary",
    "predict",
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
