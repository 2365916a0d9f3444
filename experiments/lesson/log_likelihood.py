"""Experiment 1: why the log-likelihood: a product of many probabilities underflows.

The likelihood of n independent coin flips with ``k`` heads is the product
:math:`L(p) = \\prod_i p^{y_i}(1-p)^{1-y_i} = p^k (1-p)^{n-k}`. Each factor is below one, so in
float64 the product becomes exactly 0.0 once :math:`\\log L < \\log(4.9 \\cdot 10^{-324})
\\approx -744.4` (the smallest positive subnormal), at every ``p`` alike. The log-likelihood
:math:`k \\log p + (n - k) \\log(1 - p)` stays finite, and as the logarithm is increasing it
has the same maximizer, :math:`\\hat p = k / n`. Simulated flips, so that the truth is known.
"""

from __future__ import annotations

import math

import numpy as np

from lesson._common import panels

EXPLANATION = """
The likelihood of independent observations is the product of their probabilities. Every
factor is below one, so the product shrinks geometrically with the number of observations:
after enough coin flips (the first figure shows how many) it is smaller than the smallest
positive float64 number, and the computer stores exactly 0.0, at every parameter value
alike. A likelihood that is 0 everywhere cannot tell a good parameter from a bad one.

The logarithm turns the product into a sum, a moderate negative number that nothing
underflows. Because the logarithm is increasing, it does not move the maximum: the
maximizer of the log-likelihood is the maximizer of the likelihood. That is why MLE and MAP
are computed, by mlemap as by every fitting library, on log-densities.
"""

P_TRUE = 0.3
N_LARGE = 2000
N_SMALL = 40
N_CURVE = 5000  # the running product is followed this far
SMALLEST_SUBNORMAL = math.ulp(0.0)  # 4.9e-324


def coin_model():
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    import mlemap as mm

    return mm.Model({"p": mm.Param(constraint=constraints.unit_interval)},
                    lambda p, d: dist.Bernoulli(probs=p["p"]).log_prob(d["y"]))


def run(ctx):
    import jax
    import jax.numpy as jnp
    from scipy.stats import bernoulli, binom

    import mlemap as mm

    flips = (ctx.rng.random(N_CURVE) < P_TRUE).astype(float)
    grid = np.linspace(0.001, 0.999, 999)
    model = coin_model()

    @jax.jit
    def log_likelihood(p, data):  # the model's own pointwise log-likelihood, summed
        return jnp.sum(model.log_likelihood({"p": p}, data))

    grid_ll = jax.vmap(log_likelihood, in_axes=(0, None))
    out = {}
    for n in (N_SMALL, N_LARGE):
        y = flips[:n]
        k = int(y.sum())
        # The likelihood as the product of n probabilities (scipy), in float64.
        product = np.array([np.prod(bernoulli.pmf(y, p)) for p in grid])
        ll = np.asarray(grid_ll(jnp.asarray(grid), {"y": jnp.asarray(y)}))
        closed = k * np.log(grid) + (n - k) * np.log1p(-grid)
        est = mm.fit(model, {"y": jnp.asarray(y)}, method="mle")
        out[n] = {"k": k, "product": product, "ll": ll, "closed": closed, "est": est,
                  "p_hat": float(est.params["p"])}
        ctx.metric(f"n_{n}.heads", k)
        ctx.metric(f"n_{n}.max_product", float(product.max()))
        ctx.metric(f"n_{n}.max_log_likelihood", float(ll.max()))
        ctx.metric(f"n_{n}.mle", out[n]["p_hat"])
        ctx.metric(f"n_{n}.argmax_product", float(grid[np.argmax(product)]))
        ctx.metric(f"n_{n}.argmax_log_likelihood", float(grid[np.argmax(ll)]))

    big, small = out[N_LARGE], out[N_SMALL]
    err_ll = float(np.max(np.abs(big["ll"] - big["closed"])) / np.max(np.abs(big["closed"])))
    # Where the product of the first n flips at p = 0.3 first becomes 0.0, and where the
    # closed form says it must (log L below log of the smallest subnormal, give or take
    # rounding of the last factor).
    running = np.cumprod(bernoulli.pmf(flips, P_TRUE))
    first_zero = int(np.argmax(running == 0.0)) + 1 if np.any(running == 0.0) else None
    log_running = np.cumsum(bernoulli.logpmf(flips, P_TRUE))
    predicted = int(np.argmax(log_running < math.log(SMALLEST_SUBNORMAL))) + 1
    ctx.metric("running_product.first_zero_n", first_zero)
    ctx.metric("running_product.predicted_first_zero_n", predicted)
    ctx.metric("log_likelihood_vs_closed_form.rel_error", err_ll)
    tol = ctx.tol(1e-12, 1e-5)
    ctx.check(
        f"A product of many probabilities underflows: the likelihood of n = {N_LARGE} coin "
        f"flips is exactly 0.0 in float64 at every one of {len(grid)} values of p, while the "
        "sum of the logs stays finite",
        evidence=(f"{big['k']} heads: max over p of Π p^y (1−p)^(1−y) = "
                  f"{big['product'].max():g}; log-likelihood between {big['ll'].min():.1f} "
                  f"and {big['ll'].max():.1f}, equal to k log p + (n−k) log(1−p) to "
                  f"{err_ll:.1e}; at p = {P_TRUE:g} the running product first hits 0.0 at "
                  f"n = {first_zero} (predicted from the log-sum passing "
                  f"log {SMALLEST_SUBNORMAL:.2g} = {math.log(SMALLEST_SUBNORMAL):.1f}: "
                  f"n = {predicted})"),
        tolerance=(f"product == 0.0 at every p; log-likelihood finite and within {tol:.0e} of "
                   "the closed form; underflow within 2 flips of the prediction"),
        passed=(bool(np.all(big["product"] == 0.0)) and bool(np.all(np.isfinite(big["ll"])))
                and err_ll <= tol and first_zero is not None
                and abs(first_zero - predicted) <= 2),
    )
    same_small = int(np.argmax(small["product"])) == int(np.argmax(small["ll"]))
    spacing = grid[1] - grid[0]
    p_bar = big["k"] / N_LARGE
    near = abs(grid[np.argmax(big["ll"])] - p_bar) <= spacing / 2 + 1e-12
    mle_ok = bool(big["est"].converged) and abs(big["p_hat"] - p_bar) <= ctx.tol(1e-8, 1e-4)
    ctx.check(
        "Taking logs keeps the maximizer: where the product is still representable it peaks "
        "where the log-likelihood does; where it has underflowed, the log-likelihood still "
        "peaks at the MLE k/n",
        evidence=(f"n = {N_SMALL}: argmax of the product p = "
                  f"{grid[np.argmax(small['product'])]:.3f}, of the log-likelihood "
                  f"{grid[np.argmax(small['ll'])]:.3f} (largest product "
                  f"{small['product'].max():.2e}); n = {N_LARGE}: log-likelihood peaks at p = "
                  f"{grid[np.argmax(big['ll'])]:.3f}, k/n = {p_bar:.4f}, mm.fit's MLE "
                  f"{big['p_hat']:.6f}; scipy binom.pmf(k; n, k/n) = "
                  f"{binom.pmf(big['k'], N_LARGE, p_bar):.3g} (the binomial coefficient keeps "
                  "that one representable; the product of the flips' probabilities is not)"),
        tolerance="same grid point at n = 40; grid peak within half a step of k/n; "
                  f"|MLE − k/n| ≤ {ctx.tol(1e-8, 1e-4):.0e}",
        passed=same_small and near and mle_ok,
    )
    _figures(ctx, grid, small, big, running, log_running, first_zero)


def _figures(ctx, grid, small, big, running, log_running, first_zero):
    n_axis = np.arange(1, len(running) + 1)
    fig, (ax,) = panels(1, height=3.6)
    with np.errstate(divide="ignore"):
        log10_product = np.log10(running)
    ax.plot(n_axis, log_running / math.log(10), color="k", label="sum of logs (÷ ln 10)")
    ax.plot(n_axis, np.where(running > 0, log10_product, np.nan), color="C3", lw=3, alpha=0.7,
            label="log10 of the float64 product")
    floor = math.log10(SMALLEST_SUBNORMAL)
    ax.axhline(floor, color="0.5", ls="--", lw=1)
    ax.text(n_axis[-1], floor + 25, f"smallest float64 > 0: {SMALLEST_SUBNORMAL:.2g}", ha="right",
            va="bottom", fontsize=10, color="0.3")
    ax.plot([first_zero], [floor], "o", color="C3", ms=8)
    ax.annotate(f"n = {first_zero}:\nthe product is 0.0", (first_zero, floor),
                xytext=(first_zero + 0.12 * n_axis[-1], floor + 120), fontsize=10, color="C3",
                va="bottom", arrowprops=dict(arrowstyle="->", color="C3"))
    ax.set(xlabel="number of coin flips n", ylabel="log10 likelihood at p = 0.3",
           ylim=(log_running[-1] / math.log(10) * 1.05, 40))
    ax.set_title("The product of probabilities reaches 0.0;\nthe sum of their logs does not")
    ax.legend(loc="lower left")
    ctx.figure(fig, "underflow",
               f"The likelihood of the first n of {len(running)} simulated coin flips at p = 0.3: "
               "as a product of probabilities (red) it shrinks until float64 stores 0.0; the "
               "sum of the logs (black) goes on, a straight line.",
               alt="Line chart: log10 of the likelihood against the number of flips. The red "
                   "product curve stops at the dashed floor of the smallest float64 number; the "
                   "black sum-of-logs line continues down to about minus 1300.")

    fig, axes = panels(3, height=2.3, sharex=True)
    j = int(np.argmax(small["product"]))
    exponent = math.floor(math.log10(small["product"].max()))
    axes[0].plot(grid, small["product"] / 10.0**exponent, color="C3")
    axes[0].set(ylabel=f"likelihood\n(× 1e{exponent})")
    axes[0].set_title(f"n = {N_SMALL}: the product (top) and the\nlog-sum (below) peak "
                      "at the same p")
    axes[1].plot(grid, small["ll"], color="k")
    axes[1].set(ylabel="log-likelihood", ylim=(small["ll"].max() - 40, small["ll"].max() + 4))
    for ax in axes[:2]:
        ax.axvline(grid[j], color="C0", ls=":", lw=1.5)
    axes[0].text(grid[j] + 0.17, 0.5 * small["product"].max() / 10.0**exponent,
                 f"p = {grid[j]:.3f}", color="C0", fontsize=10)
    axes[2].plot(grid, big["ll"], color="k", label="log-likelihood")
    axes[2].axvline(big["p_hat"], color="C0", ls=":", lw=1.5)
    axes[2].set(ylabel="log-likelihood", xlabel="probability of heads p",
                ylim=(big["ll"].max() - 200, big["ll"].max() + 20))
    axes[2].text(0.98, 0.9, f"the product: 0.0 at all\n{len(grid)} values of p",
                 transform=axes[2].transAxes, ha="right", va="top", color="C3", fontsize=10)
    axes[2].set_title(f"n = {N_LARGE}: the log-likelihood peaks\nat the MLE p = "
                      f"{big['p_hat']:.3f}")
    ctx.figure(fig, "same_maximizer",
               f"Top two: {N_SMALL} flips; the likelihood (a product) and the log-likelihood "
               f"have their maximum at the same p. Bottom: {N_LARGE} flips, where the product "
               "is 0.0 at every p; the log-likelihood still has its maximum at k/n, mm.fit's "
               "MLE (dotted).",
               alt="Three stacked line charts over p from 0 to 1: a likelihood bump and a "
                   "log-likelihood curve for 40 flips peaking at the same dotted line, and the "
                   "log-likelihood of 2000 flips peaking at the MLE.")
