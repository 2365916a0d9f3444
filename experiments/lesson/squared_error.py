"""Experiment 2: squared error is Gaussian likelihood (scikit-learn's diabetes data).

With the noise scale fixed at :math:`\\sigma`, the Gaussian negative log-likelihood of a
linear model is, at *any* parameter value,

.. math:: \\mathrm{NLL}(\\beta) = \\frac{n}{2\\sigma^2}\\,\\mathrm{MSE}(\\beta)
          + n\\,(\\log\\sigma + \\tfrac12\\log 2\\pi),

an exact affine function of the MSE, so both have the same minimizer: the MLE is least
squares. With :math:`\\sigma` learned too, :math:`\\hat\\sigma^2 = \\mathrm{RSS}/n`.
"""

from __future__ import annotations

import math

import numpy as np

from lesson._common import diabetes

SIGMA = 50.0  # the fixed noise scale of the affine check (diabetes' target spans 25..346)


def run(ctx):
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error

    import mlemap as mm

    X, y, names = diabetes()
    n, d = X.shape
    ctx.metric("dataset", f"sklearn load_diabetes: n = {n}, d = {d}, standardized features")

    # 1. NLL against MSE over random parameter values, noise scale fixed.
    model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=SIGMA))
    ols = LinearRegression().fit(X, y)
    draws = ctx.size(500, 100)
    intercepts = ols.intercept_ + ctx.rng.normal(0, 40, size=draws)
    betas = ols.coef_ + ctx.rng.normal(0, 20, size=(draws, d))
    positions = jnp.asarray(np.column_stack([intercepts, betas]))
    nll = -np.asarray(jax.jit(jax.vmap(mm.log_density_fn(model, prior=False),
                                       in_axes=(0, None)))(positions, data))
    mse = np.array([mean_squared_error(y, X @ b + a) for a, b in zip(intercepts, betas)])
    slope, constant = np.polyfit(mse, nll, 1)
    theory_slope = n / (2 * SIGMA**2)
    theory_constant = n * (math.log(SIGMA) + 0.5 * math.log(2 * math.pi))
    family_slope, family_constant = mm.families.gaussian(sigma=SIGMA).loss_affine(y)
    residual = float(np.max(np.abs(nll - (theory_slope * mse + theory_constant))) / np.ptp(nll))
    for key, value in {"sigma": SIGMA, "num_draws": draws, "fitted_slope": slope,
                       "fitted_constant": constant, "slope_n_over_2sigma2": theory_slope,
                       "constant_n_log_sigma_sqrt_2pi": theory_constant,
                       "family_loss_affine_slope_per_obs": float(family_slope),
                       "family_loss_affine_constant_per_obs": float(family_constant),
                       "max_residual_over_range": residual}.items():
        ctx.metric(f"affine.{key}", value)
    tol = ctx.tol(1e-12, 1e-5)
    ctx.check(
        "Gaussian NLL is an exact affine function of the MSE: "
        "NLL = n/(2σ²)·MSE + n(log σ + ½ log 2π)",
        evidence=(f"{draws} random parameter values, σ = {SIGMA:g}: least-squares line slope "
                  f"{slope:.6f} (n/2σ² = {theory_slope:.6f}), constant {constant:.4f} "
                  f"(n(log σ + ½ log 2π) = {theory_constant:.4f}); max |NLL − line| / range "
                  f"= {residual:.1e}"),
        tolerance=f"max deviation from the stated line / NLL range ≤ {tol:.0e}",
        passed=residual <= tol
        and abs(family_slope * n - theory_slope) <= tol * theory_slope,
    )

    # 2. The MLE (sigma learned) is least squares, as numpy and scikit-learn compute it.
    model, data = mm.glm(X, y, family=mm.families.gaussian())
    est = mm.fit(model, data, method="mle")
    ours = np.concatenate([[float(est.params["intercept"])], np.asarray(est.params["beta"])])
    A = np.column_stack([np.ones(n), X])
    lstsq = np.linalg.lstsq(A, y, rcond=None)[0]
    sk = np.concatenate([[ols.intercept_], ols.coef_])
    ctx.metric("mle.coefficients", ours)
    ctx.metric("mle.lstsq", lstsq)
    ctx.metric("mle.sklearn_linear_regression", sk)
    ctx.metric("mle.converged", est.converged)
    tol = ctx.tol(1e-7, 1e-3)
    ctx.compare("The Gaussian MLE of a linear model equals least squares (numpy lstsq)",
                ours, lstsq, tol=tol, key="mle_vs_lstsq", reference_name="lstsq")
    ctx.compare("The Gaussian MLE of a linear model equals scikit-learn's LinearRegression", ours, sk, tol=tol,
                key="mle_vs_sklearn", reference_name="sklearn")
    rss = float(np.sum((y - A @ lstsq) ** 2))
    sigma_hat = float(est.params["sigma"])
    ctx.metric("mle.sigma", sigma_hat)
    ctx.metric("mle.sqrt_rss_over_n", math.sqrt(rss / n))
    ctx.metric("mle.sqrt_rss_over_n_minus_p", math.sqrt(rss / (n - d - 1)))
    ctx.check(
        "The MLE of the noise scale is sqrt(RSS / n) (not the unbiased RSS / (n − p))",
        evidence=f"σ̂ = {sigma_hat:.8f}; sqrt(RSS/n) = {math.sqrt(rss / n):.8f}; "
                 f"sqrt(RSS/(n − p)) = {math.sqrt(rss / (n - d - 1)):.8f}",
        tolerance=f"relative difference ≤ {tol:.0e}",
        passed=bool(est.converged) and abs(sigma_hat - math.sqrt(rss / n)) <= tol * sigma_hat,
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(mse, nll, ".", ms=4, alpha=0.6, label="random parameter values")
    grid = np.linspace(0, mse.max() * 1.05, 10)
    axes[0].plot(grid, theory_slope * grid + theory_constant, "r-", lw=1,
                 label=f"NLL = {theory_slope:.4f}·MSE + {theory_constant:.1f}")
    axes[0].set(xlabel="mean squared error", ylabel=f"Gaussian NLL (σ = {SIGMA:g})",
                title="Diabetes: NLL against MSE")
    axes[0].legend(fontsize=8)
    order = np.arange(d + 1)
    axes[1].plot(order, sk, "o", mfc="none", ms=10, label="scikit-learn LinearRegression")
    axes[1].plot(order, ours, "x", color="r", label="mlemap MLE (Gaussian likelihood)")
    axes[1].set_xticks(order, ["intercept"] + names, rotation=60)
    axes[1].set(ylabel="coefficient", title="MLE = least squares")
    axes[1].legend(fontsize=8)
    ctx.figure(fig, "nll_vs_mse",
               "Left: at every parameter value the Gaussian negative log-likelihood is the MSE "
               "scaled by n/2σ² plus a constant. Right: so the MLE is the least-squares fit.")
