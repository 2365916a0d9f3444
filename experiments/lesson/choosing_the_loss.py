"""Experiment 7: choosing the loss by the likelihood (not yet written: needs mm.sample and
mm.compare).

Planned: data with outliers, gaussian against laplace against student_t likelihoods (squared,
absolute and bounded-influence losses), compared by PSIS-LOO.
"""

PENDING = "needs mm.sample (issue 4) and mm.compare (issue 5)"


def run(ctx):
    raise NotImplementedError(f"not yet available: this experiment {PENDING}.")
