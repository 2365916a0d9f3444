"""sample(): NumPyro NUTS on the model's log-density (placeholder until issue 4 lands)."""


def sample(model, data, **kwargs):
    raise NotImplementedError("mlemap.sample is being written (issue 4)")
