"""Experiment 3: squared error is Gaussian likelihood, absolute error Laplace likelihood.

With the noise scale fixed at :math:`\\sigma`, the Gaussian negative log-likelihood of a
linear model is, at *any* parameter value,

.. math:: \\mathrm{NLL}(\\beta) = \\frac{n}{2\\sigma^2}\\,\\mathrm{MSE}(\\beta)
          + n\\,(\\log\\sigma + \\tfrac12\\log 2\\pi),

an exact affine function of the MSE, so both have the same minimizer: the MLE is least
squares. With :math:`\\sigma` learned too, :math:`\\hat\\sigma^2 = \\mathrm{RSS}/n`.
Likewise, with Laplace noise of fixed scale :math:`b`,
:math:`\\mathrm{NLL}(\\beta) = \\frac{n}{b}\\,\\mathrm{MAE}(\\beta) + n \\log 2b` exactly: the
MLE is least absolute deviations. Data: scikit-learn's diabetes.
"""

from __future__ import annotations

import math

import numpy as np

from lesson._common import diabetes

SIGMA = 50.0  # the fixed noise scale of the affine check (diabetes' target spans 25..346)
B = 40.0  # the fixed Laplace scale of the absolute-error check

EXPLANATION = """
Assume each target is a straight-line prediction plus Gaussian noise of a fixed scale σ.
Then the negative log-likelihood of the data is the mean squared error times n/(2σ²) plus
a constant that does not depend on the coefficients: minimizing the one minimizes the other,
so the MLE of a linear model is ordinary least squares. The same holds for absolute error:
with Laplace noise the negative log-likelihood is the mean absolute error times n/b plus a
constant, and the MLE is least absolute deviations (the median regression).

Both identities are exact at every parameter value, not only at the optimum; below, random
coefficient vectors on scikit-learn's diabetes data fall on the straight lines the formulas
give.
"""


def run(ctx):
    import jax
    import jax.numpy as jnp
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, mean_squared_error

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

    # 1b. The same for absolute error and Laplace noise of fixed scale B.
    lap_model, lap_data = mm.glm(X, y, family=mm.families.laplace(scale=B))
    lap_nll = -np.asarray(jax.jit(jax.vmap(mm.log_density_fn(lap_model, prior=False),
                                           in_axes=(0, None)))(positions, lap_data))
    mae = np.array([mean_absolute_error(y, X @ b + a) for a, b in zip(intercepts, betas)])
    lap_slope, lap_constant = n / B, n * math.log(2 * B)
    lap_residual = float(np.max(np.abs(lap_nll - (lap_slope * mae + lap_constant)))
                         / np.ptp(lap_nll))
    fitted = np.polyfit(mae, lap_nll, 1)
    ctx.metric("laplace_affine.b", B)
    ctx.metric("laplace_affine.fitted_slope", fitted[0])
    ctx.metric("laplace_affine.fitted_constant", fitted[1])
    ctx.metric("laplace_affine.slope_n_over_b", lap_slope)
    ctx.metric("laplace_affine.constant_n_log_2b", lap_constant)
    ctx.metric("laplace_affine.max_residual_over_range", lap_residual)
    ctx.check(
        "Laplace NLL is an exact affine function of the mean absolute error: "
        "NLL = (n/b)·MAE + n log 2b",
        evidence=(f"the same {draws} parameter values, b = {B:g}, MAE from scikit-learn's "
                  f"mean_absolute_error: least-squares line slope {fitted[0]:.6f} (n/b = "
                  f"{lap_slope:.6f}), constant {fitted[1]:.4f} (n log 2b = {lap_constant:.4f}); "
                  f"max |NLL − line| / range = {lap_residual:.1e}"),
        tolerance=f"max deviation from the stated line / NLL range ≤ {tol:.0e}",
        passed=lap_residual <= tol,
    )
    scatter = {"gaussian": (mse, nll, theory_slope, theory_constant),
               "laplace": (mae, lap_nll, lap_slope, lap_constant)}

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

    _figures(ctx, scatter, names, sk, ours, n)


def _figures(ctx, scatter, names, sk, ours, n):
    from lesson._common import panels

    fig, axes = panels(2, height=3.0)
    for ax, (key, (loss, nll, slope, constant)) in zip(axes, scatter.items()):
        grid = np.linspace(0, loss.max() * 1.05, 10)
        ax.plot(loss, nll, "o", ms=3.5, alpha=0.5, color="C0" if key == "gaussian" else "C1",
                label="random coefficient vectors")
        ax.plot(grid, slope * grid + constant, "k-", lw=1.2,
                label=f"NLL = {slope:.4g}·{'MSE' if key == 'gaussian' else 'MAE'} + "
                      f"{constant:.5g}")
        ax.legend(loc="upper left")
    axes[0].set(xlabel="mean squared error", ylabel=f"Gaussian NLL\n(σ = {SIGMA:g})")
    axes[0].set_title("Gaussian NLL is a straight line in the MSE")
    axes[1].set(xlabel="mean absolute error", ylabel=f"Laplace NLL\n(b = {B:g})")
    axes[1].set_title("Laplace NLL is a straight line in the MAE")
    ctx.figure(fig, "nll_vs_mse",
               f"Diabetes (n = {n}): at every coefficient vector the Gaussian negative "
               "log-likelihood is the MSE scaled by n/2σ² plus a constant (top), and the Laplace "
               "one is the MAE scaled by n/b plus a constant (bottom): every point lies on the "
               "line the formula gives.",
               alt="Two scatter plots, NLL against MSE and NLL against MAE, every point exactly "
                   "on a straight black line.")

    fig, (ax,) = panels(1, height=3.9)
    rows = np.arange(len(names))
    ax.plot(sk[1:], rows, "o", mfc="none", ms=11, mew=1.5, label="scikit-learn LinearRegression")
    ax.plot(ours[1:], rows, "x", color="C3", ms=8, mew=2, label="mlemap MLE (Gaussian likelihood)")
    ax.set_yticks(rows, names)
    ax.invert_yaxis()
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set(xlabel="coefficient (per sd of the feature)")
    ax.set_title("The Gaussian MLE is the least-squares fit")
    fig.legend(loc="outside lower center", ncol=1)
    ctx.figure(fig, "mle",
               "Each coefficient of the diabetes regression: scikit-learn's least squares "
               f"(circles) and mlemap's Gaussian MLE (crosses) coincide; so do the intercepts "
               f"({sk[0]:.2f} and {ours[0]:.2f}).",
               alt="A dot plot of ten coefficients, each red cross inside its circle.")
