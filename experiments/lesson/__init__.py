"""The lesson's experiments, one module each, in the order the report shows them.

Each module defines ``run(ctx)``. Modules are imported only when their experiment runs,
after the runner has set JAX's platform and precision.
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    module: str  # inside this package; a dotted name is absolute (the runner's tests use it)
    # CPU seconds of a cold ``--quick`` run (measured on 2 cores); only orders the work of
    # ``run.py --jobs N``, longest first, so a rough value is enough.
    cost: float = 10.0

    def load(self):
        name = self.module if "." in self.module else f"{__name__}.{self.module}"
        return importlib.import_module(name).run


EXPERIMENTS = (
    Experiment("log_likelihood", "Why the log-likelihood: products of probabilities underflow",
               "log_likelihood", 2.5),
    Experiment("gaussian_mle", "Gaussian MLE: the sample mean and the 1/n spread", "gaussian_mle",
               3),
    Experiment("squared_error", "Squared error is Gaussian likelihood, absolute error Laplace",
               "squared_error", 3.5),
    Experiment("cross_entropy", "Cross-entropy is Bernoulli and categorical likelihood",
               "cross_entropy", 9),
    Experiment("regularization", "MAP is regularization: ridge, lasso, LogisticRegression(C)",
               "regularization", 14),
    Experiment("prior_sweep", "The prior pulls the estimate: toggle the prior", "prior_sweep",
               4.3),
    Experiment("map_vs_posterior", "MAP against the posterior", "map_vs_posterior", 37),
    Experiment("choosing_the_loss", "Choosing the loss by the likelihood", "choosing_the_loss",
               16),
    Experiment("quick_checks", "The lesson's quick-check numbers, recomputed", "quick_checks",
               3.6),
)

BY_NAME = {e.name: e for e in EXPERIMENTS}
