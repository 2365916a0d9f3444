"""laplace(): Gaussian approximation at the mode (placeholder until issue 3 lands)."""


class LaplaceApprox:  # placeholder
    pass


def laplace(model, data, **kwargs):
    raise NotImplementedError("mlemap.laplace is being written (issue 3)")
