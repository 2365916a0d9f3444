"""Experiment 6: the prior pulls the estimate; the lesson's "toggle the prior", done fully.

Diabetes (442 patients, 10 standardized features), a Gaussian likelihood with σ fixed and a
flat intercept. A Normal(0, τ) prior on the weights has an exact Gaussian posterior,

.. math:: \\beta \\mid y \\sim N\\big(A^{-1} X^\\top y / \\sigma^2,\\; A^{-1}\\big),
          \\qquad A = X^\\top X / \\sigma^2 + I / \\tau^2

(X centred), whose mean is the MAP: Ridge with alpha = σ²/τ². A Laplace(0, b) prior gives the
lasso, alpha = σ²/(n b), with exact zeros. The two priors are compared at equal standard
deviation s (τ = s, b = s/√2), on one grid of s from 1000 (the MLE, to a part in a thousand)
to 0.1 (every coefficient at or near 0). Each path is one batched ``mm.fit`` over the grid
(the prior scale is an argument of the compiled program; FISTA for the Laplace prior); the
Gaussian posterior is the closed form, which ``mm.laplace`` reproduces (Pareto-k = -inf:
exact). The report's interactive demo draws these numbers; nothing is computed in the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lesson._common import diabetes, panels, rel_error

SIGMA = 50.0
SD_RANGE = (3.0, -1.0)  # log10 of the prior's standard deviation, weakest to strongest
FOCUS = "bmi"
DEMO_TEMPLATE = Path(__file__).with_name("prior_demo.html")

EXPLANATION = """
A prior is a second opinion about the coefficients, held before the data are seen; the MAP
weighs it against the likelihood. A wide prior barely matters and the MAP is the MLE; a
narrow one dominates and pulls the MAP to the prior's centre, 0. Which prior decides how the
pull acts: a Gaussian (L2, ridge) shrinks every coefficient smoothly and never to exactly
zero; a Laplace (L1, lasso) sets coefficients to exactly 0, one after another, as it
tightens: variable selection.

Try it below on scikit-learn's diabetes data: switch the prior and move its strength (to the
right is stronger, a smaller prior standard deviation). For the Gaussian prior the posterior
is known exactly, and its 95% band shows how much the data still leave open.
"""


def run(ctx):
    import numpyro.distributions as dist

    import mlemap as mm

    X, y, names = diabetes()
    n, d = X.shape
    sds = np.logspace(*SD_RANGE, ctx.size(61, 31))
    model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=SIGMA),
                         prior=mm.priors.from_ridge(1.0, sigma=SIGMA))
    ctx.progress(f"Gaussian prior: one batched fit over {len(sds)} strengths")
    l2 = mm.fit(model, data, priors={"beta": dist.Normal(0.0, sds[:, None])}, batch="priors")
    ctx.progress(f"Laplace prior: one batched FISTA fit over {len(sds)} strengths")
    l1 = mm.fit(model, data, priors={"beta": dist.Laplace(0.0, sds[:, None] / math.sqrt(2))},
                batch="priors")
    mle_fit = mm.fit(model, data, method="mle")
    path = {"l2": np.asarray(l2.params["beta"]), "l1": np.asarray(l1.params["beta"])}
    exact = _closed_form(X, y, sds)
    ridge_alpha = SIGMA**2 / sds**2
    lasso_alpha = SIGMA**2 / (n * sds / math.sqrt(2))

    _gaussian_claims(ctx, mm, model, data, sds, l2, path["l2"], exact, ridge_alpha, X, y)
    _laplace_claim(ctx, sds, l1, path["l1"], lasso_alpha, X, y, names)
    mle = np.asarray(mle_fit.params["beta"])
    ctx.metric("mle", mle)
    ctx.metric("mle_vs_closed_form.rel_error", rel_error(mle, exact["mle"]))
    _figures(ctx, sds, path, exact, names)
    ctx.demo(demo_html({
        "names": names, "n": n, "sigma": SIGMA, "sd": sds, "mle": mle, "l2": path["l2"],
        "l2_sd": exact["sd"], "l1": path["l1"], "ridge_alpha": ridge_alpha,
        "lasso_alpha": lasso_alpha, "focus": names.index(FOCUS),
    }))


def demo_html(payload: dict) -> str:
    """The demo's HTML fragment (``prior_demo.html``) with its data embedded as JSON.

    ``payload``: ``names`` (P,), ``n``, ``sigma``, ``sd`` (T,) the prior sds from weakest to
    strongest, ``mle`` (P,), ``l2`` and ``l1`` (T, P) the MAPs, ``l2_sd`` (T, P) the exact
    posterior sds, ``ridge_alpha`` and ``lasso_alpha`` (T,), ``focus`` (an index).
    """
    data = {k: (_round(v) if isinstance(v, np.ndarray) else v) for k, v in payload.items()}
    data_json = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    fragment = DEMO_TEMPLATE.read_text()
    for key, value in {"__N__": payload["n"], "__P__": len(payload["names"]),
                       "__SIGMA__": f"{payload['sigma']:g}", "__DATA__": data_json}.items():
        fragment = fragment.replace(key, str(value))
    return fragment


def _round(a):
    """Nine significant digits: enough for the page, and 0.0 stays exactly 0.0."""
    return np.vectorize(lambda v: float(f"{v:.9g}"))(np.asarray(a, dtype=float)).tolist()


def _closed_form(X, y, sds):
    """MLE, and the exact posterior mean and sd of the weights under Normal(0, s) priors."""
    d = X.shape[1]
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    XtX, Xty = Xc.T @ Xc, Xc.T @ yc
    mean, sd = [], []
    for s in sds:
        cov = np.linalg.inv(XtX / SIGMA**2 + np.eye(d) / s**2)
        mean.append(cov @ Xty / SIGMA**2)
        sd.append(np.sqrt(np.diag(cov)))
    return {"mle": np.linalg.solve(XtX, Xty), "mean": np.array(mean), "sd": np.array(sd),
            "likelihood_sd": SIGMA * np.sqrt(np.diag(np.linalg.inv(XtX)))}


def _gaussian_claims(ctx, mm, model, data, sds, fit, maps, exact, alphas, X, y):
    from sklearn.linear_model import Ridge

    ridge = np.array([Ridge(alpha=a, solver="cholesky").fit(X, y).coef_ for a in alphas])
    mle = exact["mle"]
    for key, value in {"sigma": SIGMA, "prior_sd": sds, "l2.map": maps,
                       "l2.posterior_mean": exact["mean"], "l2.posterior_sd": exact["sd"],
                       "l2.ridge_alpha": alphas}.items():
        ctx.metric(key, value)
    tol = ctx.tol(1e-6, 1e-3)
    scale = np.max(np.abs(mle))  # the path's scale: relative to it, not to a shrunk MAP
    err_post = float(np.max(np.abs(maps - exact["mean"])) / scale)
    err_ridge = float(np.max(np.abs(maps - ridge)) / scale)
    ctx.metric("l2.map_vs_posterior_mean.max_rel_error", err_post)
    ctx.metric("l2.map_vs_ridge.max_rel_error", err_ridge)
    ctx.check(
        f"Gaussian prior: at every strength the MAP is the exact posterior mean and "
        f"Ridge(alpha = σ²/τ²) ({len(sds)} prior sds τ from {sds[0]:g} to {sds[-1]:g}, one "
        "batched fit)",
        evidence=f"max over τ of max |MAP − posterior mean| / max |MLE| = "
                 f"{err_post:.1e}; against Ridge: {err_ridge:.1e}",
        tolerance=f"≤ {tol:.0e}",
        passed=bool(np.all(fit.converged)) and err_post <= tol and err_ridge <= tol,
    )
    weak = float(np.linalg.norm(maps[0] - mle) / np.linalg.norm(mle))
    strong = float(np.linalg.norm(maps[-1]) / np.linalg.norm(mle))
    ctx.metric("l2.weakest.rel_distance_to_mle", weak)
    ctx.metric("l2.strongest.rel_norm", strong)
    ctx.check(
        "As the prior widens the MAP becomes the MLE; as it tightens, the prior mean (0)",
        evidence=f"τ = {sds[0]:g}: ‖MAP − MLE‖ / ‖MLE‖ = {weak:.1e}; τ = {sds[-1]:g}: "
                 f"‖MAP‖ / ‖MLE‖ = {strong:.1e}",
        tolerance="both ≤ 1e-2",
        passed=weak <= 1e-2 and strong <= 1e-2,
    )
    distance = np.linalg.norm(maps - mle, axis=1)
    norms = np.linalg.norm(maps, axis=1)
    monotone = bool(np.all(np.diff(distance) > 0) and np.all(np.diff(norms) < 0))
    ctx.metric("l2.distance_to_mle", distance)
    ctx.metric("l2.map_norm", norms)
    ctx.check(
        "The pull is monotone: a tighter prior always moves the MAP further from the MLE, "
        "towards the prior mean",
        evidence=f"‖MAP − MLE‖ increases and ‖MAP‖ decreases at each of the {len(sds) - 1} "
                 f"steps to a tighter prior: {monotone}",
        tolerance="strictly monotone",
        passed=monotone,
    )
    middle = len(sds) // 2
    lap = mm.laplace(model, data, priors={"beta": mm.priors.from_ridge(alphas[middle],
                                                                       sigma=SIGMA)})
    lap_sd = np.asarray(lap.std_errors["beta"])
    err_lap = rel_error(lap_sd, exact["sd"][middle])
    ctx.metric("laplace.tau", sds[middle])
    ctx.metric("laplace.sd", lap_sd)
    ctx.metric("laplace.rel_error", err_lap)
    ctx.metric("laplace.pareto_k", lap.pareto_k)
    ctx.check(
        "For this Gaussian posterior the Laplace approximation is exact, and says so",
        evidence=(f"τ = {sds[middle]:.3g}: max |Laplace sd − exact sd| / max sd = "
                  f"{err_lap:.1e}; its Pareto-k = {lap.pareto_k:g} (−inf: every importance "
                  "ratio equal)"),
        tolerance=f"≤ {tol:.0e}; Pareto-k < 0.5",
        passed=err_lap <= tol and lap.pareto_k < 0.5,
    )


def _laplace_claim(ctx, sds, fit, maps, alphas, X, y, names):
    from sklearn.linear_model import Lasso

    lasso = np.array([Lasso(alpha=a, tol=1e-14, max_iter=1_000_000).fit(X, y).coef_
                      for a in alphas])
    scale = np.max(np.abs(lasso[0]))
    err = float(np.max(np.abs(maps - lasso)) / scale)
    same = [bool(np.array_equal(m == 0, s == 0)) for m, s in zip(maps, lasso)]
    zeros = (maps == 0).sum(axis=1)
    ctx.metric("l1.map", maps)
    ctx.metric("l1.lasso_alpha", alphas)
    ctx.metric("l1.sklearn_lasso", lasso)
    ctx.metric("l1.num_zeros", zeros)
    ctx.metric("l1.map_vs_lasso.max_rel_error", err)
    first = int(np.argmax(zeros > 0))
    first_names = ", ".join(names[j] for j in np.flatnonzero(maps[first] == 0))
    tol = ctx.tol(1e-4, 1e-3)
    ctx.check(
        f"Laplace prior: at every strength the MAP is Lasso(alpha = σ²/(n b)) with the same "
        f"exact zeros ({len(sds)} values of b = s/√2, one batched FISTA fit): none at the "
        f"weakest prior, all {len(names)} at the strongest",
        evidence=(f"zero sets identical at {sum(same)} of {len(same)} strengths; exact zeros "
                  f"per strength from {zeros[0]} to {zeros[-1]} (the first at s = "
                  f"{sds[first]:.3g}: {first_names}"
                  f"); max |MAP − Lasso| / max |Lasso| = {err:.1e}; all converged: "
                  f"{bool(np.all(fit.converged))}"),
        tolerance=(f"identical zero sets everywhere; ≤ {tol:.0e} (FISTA's gradient-map test at "
                   "1e-9 leaves ~1e-5 along the diabetes features' collinear directions)"),
        passed=(all(same) and err <= tol and bool(np.all(fit.converged)) and zeros[0] == 0
                and zeros[-1] == len(names)),
    )


def _strength_axis(ax, sds):
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.set_xlim(sds[0] * 1.6, sds[-1] / 1.3)  # decreasing: a stronger prior to the right
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("prior sd (log scale) · stronger prior →")


def _figures(ctx, sds, path, exact, names):
    j = names.index(FOCUS)
    fig, axes = panels(2, height=3.4, sharex=True)
    titles = {"l2": "Gaussian prior (L2, ridge): every\ncoefficient shrinks smoothly to 0",
              "l1": "Laplace prior (L1, lasso): coefficients\nbecome exactly 0, one by one"}
    for ax, key in zip(axes, ("l2", "l1")):
        for k, name in enumerate(names):
            ax.plot(sds, path[key][:, k], color=f"C{k}", lw=2.6 if k == j else 1.2,
                    label=name, zorder=3 if k == j else 2)
        ax.plot(np.full(len(names), sds[0] * 1.35), exact["mle"], "<", color="k", ms=5,
                label="MLE")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set(ylabel="coefficient")
        ax.set_title(titles[key])
    axes[0].fill_between(sds, exact["mean"][:, j] - 1.96 * exact["sd"][:, j],
                         exact["mean"][:, j] + 1.96 * exact["sd"][:, j], color=f"C{j}",
                         alpha=0.2, lw=0, label=f"{FOCUS}: 95% posterior")
    zeros = path["l1"] == 0
    for k in range(len(names)):
        first = np.argmax(zeros[:, k]) if zeros[:, k].any() else None
        if first is not None:
            axes[1].plot(sds[first], 0, "o", mfc="white", mec=f"C{k}", ms=6, zorder=4)
    _strength_axis(axes[1], sds)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=9)
    ctx.figure(fig, "paths",
               f"Diabetes: each coefficient's MAP as the prior tightens (left to right), from the "
               f"MLE (◀) to 0. Top: a Gaussian prior, with the exact 95% posterior band of "
               f"{FOCUS} (thick line). Bottom: a Laplace prior of the same sd; a circle marks "
               "where a coefficient first becomes exactly 0.",
               alt="Two stacked line charts of ten coefficient paths against the prior sd on a "
                   "log axis: smooth curves shrinking to zero under the Gaussian prior, and "
                   "piecewise-linear paths hitting exactly zero under the Laplace prior.")

    shrink = exact["mean"][:, j] / exact["mle"][j]
    picks = [int(np.argmin(np.abs(shrink - f))) for f in (0.9, 0.5, 0.15)]
    fig, axes = panels(3, height=2.3, sharex=True)
    grid = np.linspace(-5 * exact["likelihood_sd"][j], exact["mle"][j]
                       + 4 * exact["likelihood_sd"][j], 600)

    def normal(x, m, s):
        return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    for ax, k in zip(axes, picks):
        prior = normal(grid, 0.0, sds[k])
        likelihood = normal(grid, exact["mle"][j], exact["likelihood_sd"][j])
        posterior = normal(grid, exact["mean"][k, j], exact["sd"][k, j])
        ax.fill_between(grid, prior, color="0.6", alpha=0.35, lw=0, label="prior")
        ax.plot(grid, posterior, color="C0", lw=2.2, label="posterior")
        ax.plot(grid, likelihood, color="k", ls="--", lw=1.6, label="likelihood (normalized)",
                zorder=4)
        ax.axvline(exact["mean"][k, j], color="C0", lw=1, ls=":")
        ax.set_ylim(0, 1.15 * max(posterior.max(), likelihood.max(), prior.max()))
        ax.set_title(f"prior sd τ = {sds[k]:.3g}: MAP {exact['mean'][k, j]:.1f} "
                     f"({100 * shrink[k]:.0f}% of the MLE)", fontsize=11, fontweight="normal")
        ax.set_yticks([])
        ax.set_ylabel("density")
    axes[0].legend(loc="upper left", fontsize=9)
    axes[-1].set_xlabel(f"coefficient of {FOCUS}")
    fig.suptitle(f"{FOCUS}: the posterior sits between the prior\nand the likelihood",
                 x=0.02, ha="left", fontweight="bold", fontsize=12.5)
    ctx.figure(fig, "posterior",
               f"The coefficient of {FOCUS} under three Gaussian priors: the prior (grey, "
               "centred at 0), the likelihood (dashed, centred at the MLE) and the exact "
               "posterior (blue; dotted: its mean, the MAP). The tighter the prior, the closer "
               "the posterior moves to 0.",
               alt="Three stacked density plots: a grey prior at zero, a dashed likelihood at "
                   "the MLE and a blue posterior between them, moving towards zero as the prior "
                   "narrows.")
