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
    module: str  # inside this package

    def load(self):
        return importlib.import_module(f"{__name__}.{self.module}").run


EXPERIMENTS = (
    Experiment("gaussian_mle", "Gaussian MLE: the sample mean and the 1/n spread", "gaussian_mle"),
    Experiment("squared_error", "Squared error is Gaussian likelihood", "squared_error"),
    Experiment("cross_entropy", "Cross-entropy is Bernoulli and categorical likelihood",
               "cross_entropy"),
    Experiment("regularization", "MAP is regularization: ridge, lasso, LogisticRegression(C)",
               "regularization"),
    Experiment("prior_sweep", "The prior pulls the estimate", "prior_sweep"),
    Experiment("map_vs_posterior", "MAP against the posterior", "map_vs_posterior"),
    Experiment("choosing_the_loss", "Choosing the loss by the likelihood", "choosing_the_loss"),
    Experiment("quick_checks", "The lesson's quick-check numbers, recomputed", "quick_checks"),
)

BY_NAME = {e.name: e for e in EXPERIMENTS}
