"""Experiment 6: MAP against the posterior (not yet written: needs mm.sample and mm.compare).

Planned: where the MAP and the posterior agree (much data, a near-Gaussian posterior) and
where they part: a small-n logistic regression; a Laplace prior (the MAP has exact zeros, the
posterior puts no mass at zero); eight schools (the MAP of tau collapses, the posterior does
not); a positive scale parameter (mode, mean and median differ). The Laplace approximation
against NUTS for each.
"""

PENDING = "needs mm.sample (issue 4) and mm.compare and its plots (issue 5)"


def run(ctx):
    raise NotImplementedError(f"not yet available: this experiment {PENDING}.")
