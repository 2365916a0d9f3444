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
    # Seconds of a cold ``--quick`` run (measured on 2 shared cores); only orders the work
    # of ``run.py --jobs N``, longest first, so a rough value is enough.
    cost: float = 10.0

    def load(self):
        name = self.module if "." in self.module else f"{__name__}.{self.module}"
        return importlib.import_module(name).run


EXPERIMENTS = (
    Experiment("log_likelihood", "Why the log-likelihood: products of probabilities underflow",
               "log_likelihood", 6.5),
    Experiment("gaussian_mle", "Gaussian MLE: the sample mean and the 1/n spread", "gaussian_mle",
               6),
    Experiment("squared_error", "Squared error is Gaussian likelihood, absolute error Laplace",
               "squared_error", 6),
    Experiment("cross_entropy", "Cross-entropy is Bernoulli and categorical likelihood",
               "cross_entropy", 16),
    Experiment("regularization", "MAP is regularization: ridge, lasso, LogisticRegression(C)",
               "regularization", 18),
    Experiment("prior_sweep", "The prior pulls the estimate: toggle the prior", "prior_sweep",
               14),
    Experiment("map_vs_posterior", "MAP against the posterior", "map_vs_posterior", 41),
    Experiment("choosing_the_loss", "Choosing the loss by the likelihood", "choosing_the_loss",
               13),
    Experiment("quick_checks", "The lesson's quick-check numbers, recomputed", "quick_checks",
               7.5),
)

BY_NAME = {e.name: e for e in EXPERIMENTS}
