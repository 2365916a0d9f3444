"""fit(): MLE and MAP with optax (placeholder until issue 3 lands)."""


class PointEstimate:  # placeholder
    pass


def fit(model, data, **kwargs):
    raise NotImplementedError("mlemap.fit is being written (issue 3)")
