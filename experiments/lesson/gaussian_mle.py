"""Experiment 2: the Gaussian MLE is the sample mean and the 1/n spread.

For :math:`y_i \\sim N(\\mu, \\sigma)` the log-likelihood
:math:`-\\tfrac n2 \\log 2\\pi\\sigma^2 - \\sum (y_i-\\mu)^2 / 2\\sigma^2` is maximized at
:math:`\\hat\\mu = \\bar y` and :math:`\\hat\\sigma^2 = \\tfrac1n \\sum (y_i - \\bar y)^2`, the
biased (1/n) variance, not the unbiased 1/(n-1) one; the maximum is
:math:`-\\tfrac n2 (\\log 2\\pi\\hat\\sigma^2 + 1)`. Simulated data (the truth is known), a
small n so that 1/n and 1/(n-1) differ visibly.
"""

from __future__ import annotations

import math

import numpy as np

TRUE_MU, TRUE_SIGMA = 3.0, 2.0
N = 20  # small on purpose: sqrt((n-1)/n) = 0.975, a 2.5% gap between the two spreads

EXPLANATION = f"""
The maximum-likelihood estimate is the parameter value under which the observed data are
most probable. For a Gaussian sample it has a closed form: the mean is the sample mean, and
the spread is the root mean squared deviation from it, dividing by n, not by n − 1 (the
unbiased variance's denominator). With n = {N} draws the two spreads differ visibly.

Below, the log-likelihood of a simulated sample (the truth is known: μ = {TRUE_MU:g},
σ = {TRUE_SIGMA:g}) is computed by the mlemap model over a grid of (μ, σ); `mm.fit` finds
its maximum, which the claims compare with numpy and `scipy.stats.norm.fit`.
"""


def gaussian_model():
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    import mlemap as mm

    return mm.Model(
        {"mu": mm.Param(), "sigma": mm.Param(constraint=constraints.positive)},
        lambda p, d: dist.Normal(p["mu"], p["sigma"]).log_prob(d["y"]),
    )


def run(ctx):
    import jax
    import jax.numpy as jnp
    import scipy.stats

    import mlemap as mm

    y = ctx.rng.normal(TRUE_MU, TRUE_SIGMA, size=N)
    model = gaussian_model()
    data = {"y": jnp.asarray(y)}
    est = mm.fit(model, data, method="mle")
    mu_hat, sigma_hat = float(est.params["mu"]), float(est.params["sigma"])
    mean = float(np.mean(y))
    s_n, s_n1 = float(np.std(y, ddof=0)), float(np.std(y, ddof=1))
    scipy_mu, scipy_sigma = scipy.stats.norm.fit(y)
    max_ll = -0.5 * N * (math.log(2 * math.pi * s_n**2) + 1)
    for key, value in {"n": N, "true_mu": TRUE_MU, "true_sigma": TRUE_SIGMA,
                       "mle_mu": mu_hat, "mle_sigma": sigma_hat, "sample_mean": mean,
                       "std_ddof0": s_n, "std_ddof1": s_n1, "scipy_norm_fit_mu": scipy_mu,
                       "scipy_norm_fit_sigma": scipy_sigma, "max_log_likelihood": est.log_density,
                       "max_log_likelihood_closed_form": max_ll, "converged": est.converged,
                       "grad_norm": est.grad_norm}.items():
        ctx.metric(key, value)
    tol = ctx.tol(1e-7, 1e-4)
    ctx.check(
        "The MLE of a Gaussian's mean is the sample mean",
        evidence=f"μ̂ = {mu_hat:.10f}, ȳ = {mean:.10f} (n = {N}; scipy.stats.norm.fit: "
                 f"{scipy_mu:.10f}); fit {est.message.split(':')[0]}",
        tolerance=f"|μ̂ − ȳ| / s ≤ {tol:.0e}",
        passed=est.converged and abs(mu_hat - mean) / s_n <= tol,
    )
    gap = ctx.metric("relative_gap_ddof1_vs_ddof0", abs(s_n1 - s_n) / s_n)
    ctx.check(
        "The MLE of the spread divides by n, not n − 1: σ̂ = sqrt(Σ(y − ȳ)² / n)",
        evidence=f"σ̂ = {sigma_hat:.8f}; 1/n: {s_n:.8f}; 1/(n − 1): {s_n1:.8f} "
                 f"({100 * gap:.2f}% larger); scipy.stats.norm.fit: {scipy_sigma:.8f}",
        tolerance=f"|σ̂ − s_1/n| / s ≤ {tol:.0e} while |σ̂ − s_1/(n−1)| / s ≥ 1e-2",
        passed=est.converged and abs(sigma_hat - s_n) / s_n <= tol
        and abs(sigma_hat - s_n1) / s_n >= 1e-2,
    )
    ll_err = abs(float(est.log_density) - max_ll) / abs(max_ll)
    ctx.metric("max_log_likelihood.rel_error", ll_err)
    ctx.check(
        "The maximum log-likelihood is −(n/2)(log 2πσ̂² + 1)",
        evidence=f"mlemap: {float(est.log_density):.10f}; closed form: {max_ll:.10f}",
        tolerance=f"relative difference ≤ {ctx.tol(1e-10, 1e-5):.0e}",
        passed=ll_err <= ctx.tol(1e-10, 1e-5),
    )

    # The log-likelihood surface, computed by the model itself over a (mu, sigma) grid.
    steps = ctx.size(160, 80)
    mus = np.linspace(mean - 1.5 * s_n, mean + 1.5 * s_n, steps)
    sigmas = np.linspace(0.55 * s_n, 1.9 * s_n, steps)
    M, S = np.meshgrid(mus, sigmas)

    def log_lik(mu, sigma, data):
        return jnp.sum(model.log_likelihood({"mu": mu, "sigma": sigma}, data))

    surface = jax.jit(jax.vmap(log_lik, in_axes=(0, 0, None)))(
        jnp.asarray(M.ravel()), jnp.asarray(S.ravel()), data)
    surface = np.asarray(surface).reshape(M.shape)
    profile = np.asarray(jax.vmap(log_lik, in_axes=(None, 0, None))(
        jnp.asarray(mean), jnp.asarray(sigmas), data))
    _figure(ctx, M, S, surface, sigmas, profile, est, mean, s_n, s_n1)


def _figure(ctx, M, S, surface, sigmas, profile, est, mean, s_n, s_n1):
    from lesson._common import panels

    mu_hat, sigma_hat = float(est.params["mu"]), float(est.params["sigma"])
    top = float(est.log_density)
    fig, axes = panels(2, height=3.5, gridspec_kw={"height_ratios": [1.25, 1]})
    floor = top - 25  # the colour scale covers the 25 log-units below the maximum
    filled = axes[0].pcolormesh(M, S, surface, vmin=floor, vmax=top, cmap="viridis",
                                shading="auto", rasterized=True)
    axes[0].contour(M, S, surface, levels=top - np.array([16.0, 8.0, 4.0, 2.0, 1.0, 0.5]),
                    colors="white", linewidths=0.7)
    bar = fig.colorbar(filled, ax=axes[0], pad=0.02, extend="min")
    bar.set_label("log-likelihood")
    axes[0].plot(mu_hat, sigma_hat, "r*", ms=16, mec="white", label="MLE: (ȳ, s with 1/n)")
    axes[0].plot(mean, s_n1, "wx", ms=10, mew=2.5, label="(ȳ, s with 1/(n−1))")
    axes[0].plot(TRUE_MU, TRUE_SIGMA, "o", mfc="none", mec="orange", mew=2, ms=10,
                 label="truth (μ = 3, σ = 2)")
    axes[0].set(xlabel="μ", ylabel="σ")
    axes[0].set_title(f"The log-likelihood of {N} draws peaks at\nthe sample mean and the "
                      "1/n spread")
    axes[0].legend(loc="upper right", framealpha=0.9)
    axes[0].grid(False)
    axes[1].plot(sigmas, profile, color="k")
    axes[1].axvline(s_n, color="r", label=f"σ̂ = {s_n:.3f} (1/n)")
    axes[1].axvline(s_n1, color="0.4", ls="--", label=f"s = {s_n1:.3f} (1/(n−1))")
    axes[1].set(xlabel="σ", ylabel="log-likelihood\nat μ = ȳ",
                ylim=(profile.max() - 6, profile.max() + 0.8))
    axes[1].set_title("Along σ at μ = ȳ: the 1/n spread is the top")
    axes[1].legend(loc="lower center")
    ctx.figure(fig, "surface",
               "Top: the log-likelihood of a Gaussian sample over (μ, σ), computed by the mlemap "
               "model (white contours 0.5, 1, 2, 4, 8 and 16 below the maximum); the MLE (red "
               "star) is the sample mean and the 1/n standard deviation, not the 1/(n−1) one "
               "(white cross). Bottom: the same along σ at μ = ȳ.",
               alt="A filled contour plot of the log-likelihood over mu and sigma with a colour "
                   "bar, the MLE star at its peak and the unbiased estimate slightly above it; "
                   "below, a curve over sigma peaking at the 1/n spread.")
