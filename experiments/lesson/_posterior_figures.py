"""The figures of experiment 7 (MAP against the posterior), drawn with matplotlib.

Each is made for a narrow page (stacked panels, labels at 12 pt) and says in its title what
to see. They draw draws: NUTS's, from the ``mm.sample`` DataTree, and the Laplace
approximation's, from ``LaplaceApprox.draws``; points are ``PointEstimate.params``.
"""

from __future__ import annotations

import math

import numpy as np

from lesson._common import panels

NUTS_COLOR, LAPLACE_COLOR, MAP_COLOR = "C0", "C1", "k"


def flat_draws(tree, labels: list[str]) -> np.ndarray:
    """(S, len(labels)) draws of flat labels (``beta[2]``, ``tau``) from a DataTree's
    posterior (or a ``LaplaceApprox.draws``), chains pooled."""
    post = tree["posterior"]
    columns = []
    for label in labels:
        name, _, index = label.partition("[")
        values = np.asarray(post[name].values)
        values = values.reshape(values.shape[0] * values.shape[1], -1)
        columns.append(values[:, int(index.rstrip("]")) if index else 0])
    return np.column_stack(columns)


def _interval(ax, y, draws, color, label):
    lo95, lo50, hi50, hi95 = np.quantile(draws, [0.025, 0.25, 0.75, 0.975])
    ax.plot([lo95, hi95], [y, y], color=color, lw=1.4, solid_capstyle="butt")
    ax.plot([lo50, hi50], [y, y], color=color, lw=4.5, solid_capstyle="butt", label=label)
    ax.plot([np.mean(draws)], [y], "o", ms=6, mfc="white", mec=color, mew=1.6)


def forest(ax, labels, nuts, laplace, point, *, point_label="MAP", zeros=None):
    """Per row: NUTS's 50% and 95% intervals and mean (above), the Laplace approximation's
    (below), and the point estimate between them; rows top to bottom in ``labels``' order."""
    for i in range(len(labels)):
        y = -i
        _interval(ax, y + 0.2, nuts[:, i], NUTS_COLOR, "NUTS posterior" if i == 0 else None)
        _interval(ax, y - 0.2, laplace[:, i], LAPLACE_COLOR,
                  "Laplace approximation" if i == 0 else None)
        ax.plot([point[i]], [y], "D", ms=6, color=MAP_COLOR, label=point_label if i == 0 else None,
                zorder=5)
        if zeros is not None and zeros[i]:
            ax.plot([0], [y], "o", ms=15, mfc="none", mec="C3", mew=2, zorder=6,
                    label="MAP exactly 0" if not np.any(zeros[:i]) else None)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(-np.arange(len(labels)), labels)
    ax.set_ylim(-len(labels) + 0.4, 0.6)
    ax.grid(axis="y", visible=False)


def legend_below(fig, ax, ncol=2):
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9.5)


def logistic_little_data(ctx, names, labels, nuts, laplace, point, n):
    shown = [_feature_label(label, names) for label in labels]
    fig, (ax,) = panels(1, height=3.6)
    forest(ax, shown, nuts, laplace, point)
    ax.set_xlabel("coefficient (log-odds per sd of the feature)")
    ax.set_title(f"{n} tumours: the MAP and the Laplace\napproximation part from the posterior")
    legend_below(fig, ax, ncol=3)
    ctx.figure(fig, "logistic_little_data",
               f"Logistic regression on {n} tumours: for each coefficient the NUTS posterior "
               "(50% and 95% intervals, open circle: mean), the Laplace approximation at the "
               "mode (the same, below) and the MAP (diamond). The posterior is skewed and "
               "its mean lies beyond the MAP; the Laplace approximation, a Gaussian centred "
               "near the MAP, misses that.",
               alt="A forest plot of four coefficients with blue NUTS intervals, orange "
                   "Laplace intervals and black MAP diamonds; the blue means sit further from "
                   "zero than the diamonds.")


def _feature_label(label, names):
    name, _, index = label.partition("[")
    return names[int(index.rstrip("]"))] if index and name == "beta" else label


def lasso(ctx, names, nuts, laplace, point, ratio, scale_b):
    zeros = point == 0.0
    fig, axes = panels(2, height=3.5, gridspec_kw={"height_ratios": [1.45, 1]})
    forest(axes[0], names, nuts, laplace, point, point_label="MAP (lasso)", zeros=zeros)
    axes[0].set_xlabel("coefficient (per sd of the feature)")
    axes[0].set_title("The lasso MAP sets coefficients to exactly 0;\nthe posterior does not")
    legend_below(fig, axes[0], ncol=2)
    j = int(np.flatnonzero(zeros)[np.argmax(ratio[zeros])])
    draws = nuts[:, j]
    half = max(4 * np.std(draws), 4 * np.std(laplace[:, j]))
    bins = np.linspace(-6 * np.std(draws), 6 * np.std(draws), 50)
    axes[1].hist(draws, bins=bins, density=True, color=NUTS_COLOR, alpha=0.45,
                 label="NUTS posterior")
    grid = np.linspace(-half, half, 400)
    sd = np.std(laplace[:, j])
    axes[1].plot(grid, np.exp(-0.5 * (grid / sd) ** 2) / (sd * math.sqrt(2 * math.pi)),
                 color=LAPLACE_COLOR, lw=2.2, label=f"Laplace approximation (sd {sd:.2f})")
    axes[1].axvline(0, color=MAP_COLOR, lw=1.5, ls="--", label="MAP = 0 exactly")
    axes[1].set(xlabel=f"coefficient of {names[j]}", ylabel="density")
    axes[1].set_yticks([])
    axes[1].set_title(f"{names[j]}: the Laplace approximation is\n{ratio[j]:.1f}× as wide as "
                      "the posterior", fontsize=11.5)
    axes[1].legend(loc="upper left", fontsize=9)
    ctx.figure(fig, "lasso",
               f"Diabetes with a Laplace(0, {scale_b:.3g}) prior (Lasso alpha = 2). Top: each "
               "coefficient's NUTS posterior and Laplace approximation (50% and 95% intervals, "
               "open circle: mean) and the lasso MAP (diamond; red ring: exactly 0). Bottom: "
               f"at {names[j]}, a zero of the MAP, the posterior is peaked at the prior's "
               "kink, while the Laplace approximation, which sees no curvature from the prior "
               "there, is wider.",
               alt="A forest plot of ten diabetes coefficients with red rings where the MAP is "
                   "exactly zero, and below a histogram of one zeroed coefficient's posterior, "
                   "narrower than the orange Gaussian of the Laplace approximation.")


def eight_schools_tau(ctx, tau_nuts, tau_laplace, mode, median, k):
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    fig, (ax,) = panels(1, height=3.4)
    log_nuts, log_laplace = np.log10(tau_nuts), np.log10(tau_laplace)
    lo = min(np.quantile(log_nuts, 0.002), np.quantile(log_laplace, 0.002))
    hi = max(np.quantile(log_nuts, 0.998), np.quantile(log_laplace, 0.998))
    bins = np.linspace(lo, hi, 50)  # densities in log10 τ, so that the areas compare
    ax.hist(log_nuts, bins=bins, density=True, color=NUTS_COLOR, alpha=0.5,
            label="NUTS posterior")
    ax.hist(log_laplace, bins=bins, density=True, histtype="step", color=LAPLACE_COLOR, lw=2.2,
            label="Laplace approximation")
    ax.axvline(math.log10(median), color=NUTS_COLOR, lw=2, ls=":",
               label=f"posterior median τ = {median:.1f}")
    ax.axvline(math.log10(mode), color=LAPLACE_COLOR, lw=2, ls="--",
               label=f"Laplace centre: the mode in log τ, τ = {mode:.1f}")
    ax.xaxis.set_major_locator(MultipleLocator(1.0))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10 ** v:g}"))
    ax.set(xlabel="τ, the between-school sd (log scale)", ylabel="density of log τ")
    ax.set_yticks([])
    ax.set_title("Eight schools: the Laplace approximation is\ncentred far in τ's tail")
    legend_below(fig, ax, ncol=1)
    ctx.figure(fig, "eight_schools_tau",
               "Eight schools, non-centered: the NUTS posterior of τ (blue) and the Laplace "
               f"approximation (orange), a Gaussian in log τ centred on the mode τ = {mode:.1f} "
               f"(dashed), where the posterior has little mass (median {median:.1f}, dotted); its "
               f"Pareto-k is {k:.2f}.",
               alt="Histograms of log tau: the blue posterior mostly below 10, the orange "
                   "Laplace approximation centred on the dashed mode near 30.")


def eight_schools_funnel(ctx, centered, noncentered, divergent, q05):
    """``centered``/``noncentered``: (θ₀ draws, log τ draws); ``q05``: τ's 5% quantile under
    each, (centered, non-centered)."""
    fig, (ax,) = panels(1, height=3.8)
    ax.scatter(*noncentered, s=5, alpha=0.25, color="0.6", rasterized=True,
               label="the posterior (non-centered NUTS)")
    ax.scatter(*centered, s=5, alpha=0.35, color=NUTS_COLOR, rasterized=True,
               label="centered NUTS")
    theta0, log_tau = centered
    if divergent.any():
        ax.scatter(theta0[divergent], log_tau[divergent], s=28, color="C3", edgecolor="k",
                   zorder=4, label=f"divergent transitions ({int(divergent.sum())})")
    for q, color, who in zip(q05, (NUTS_COLOR, "0.35"), ("centered", "posterior")):
        ax.axhline(np.log(q), color=color, ls="--", lw=1.2, label=f"τ's 5% quantile, {who}: {q:.2f}")
    ax.set(xlabel="θ₀, the first school's effect", ylabel="log τ")
    ax.set_title("The centered model's funnel: its chains\nmiss the neck (τ → 0)")
    ax.legend(loc="lower right", fontsize=9)
    ctx.figure(fig, "eight_schools_funnel",
               "Eight schools: NUTS draws of θ₀ against log τ, on the centered model (blue) "
               "and on the non-centered one (grey), whose posterior is the same. The centered "
               "chains rarely enter the funnel's neck (τ → 0): τ's 5% quantile (dashed) is "
               f"{q05[0]:.2f} for them against {q05[1]:.2f} for the posterior. "
               + (f"Their {int(divergent.sum())} divergent transitions (red) are NUTS's "
                  "warning of it." if divergent.any() else
                  "None of their transitions diverged here; mm.sample's R-hat and E-BFMI "
                  "warnings flag it."),
               alt="A scatter plot shaped like a funnel, wide at large log tau and narrow at "
                   "small log tau: grey points reach far down the narrow neck, blue points "
                   "stop higher.")


def positive_scale(ctx, n, sigma_draws, exact, fits, lap_mean, a, b):
    from scipy.special import gammaln

    fig, axes = panels(2, height=3.0, gridspec_kw={"height_ratios": [1.4, 1]})
    hi = float(np.quantile(sigma_draws, 0.995))
    grid = np.linspace(1e-3, hi, 500)
    # p(sigma | y) = p(v = sigma^2) * 2 sigma, v ~ Inv-Gamma(a, b)
    log_pdf = (a * math.log(b) - gammaln(a) - (a + 1) * np.log(grid**2) - b / grid**2
               + np.log(2 * grid))
    axes[0].hist(sigma_draws[sigma_draws <= hi], bins=70, density=True, color=NUTS_COLOR,
                 alpha=0.4, label="NUTS draws")
    axes[0].plot(grid, np.exp(log_pdf), color="k", lw=1.6, label="exact posterior")
    points = {
        "MAP σ̂ = √(SS/n)": (fits["mode"], "C3", "-"),
        "mode in log σ = √(SS/(n−1))": (fits["mode_jacobian"], "C4", "--"),
        "posterior median": (exact["median"], "k", ":"),
        "posterior mean": (exact["mean"], "C2", "-."),
    }
    for label, (value, color, style) in points.items():
        axes[0].axvline(value, color=color, ls=style, lw=1.6)
    axes[0].set(xlabel="σ", ylabel="density", xlim=(0, hi))
    axes[0].set_yticks([])
    axes[0].set_title(f"σ of a Gaussian from n = {n} draws:\nfour summaries of one posterior")
    axes[0].legend(loc="upper right", fontsize=9)
    ordered = sorted(points.items(), key=lambda item: item[1][0])
    ordered.append(("Laplace mean (its draws' mean)", (lap_mean, LAPLACE_COLOR, "")))
    for i, (label, (value, color, _)) in enumerate(ordered):
        axes[1].plot([value], [-i], "o", ms=9, color=color)
        axes[1].annotate(f"{label}: {value:.3f}", (value, -i), xytext=(8, 0),
                         textcoords="offset points", va="center", fontsize=10)
    values = [v for _, (v, _, _) in ordered]
    span = max(values) - min(values)
    axes[1].set_xlim(min(values) - 0.08 * span, max(values) + 1.6 * span)
    axes[1].set_ylim(-len(ordered) + 0.4, 0.6)
    axes[1].set_yticks([])
    axes[1].set_xlabel("σ (zoomed)")
    axes[1].set_title("Zoomed: mode < log-mode < median < mean", fontsize=11.5)
    ctx.figure(fig, "positive_scale",
               f"σ of a Gaussian from n = {n} draws (flat priors). Top: NUTS draws and the exact "
               "posterior (σ² | y is inverse-gamma) with four of its summaries. Bottom, zoomed: "
               "the MAP σ̂ = √(SS/n), the mode in log σ √(SS/(n−1)), the median and the mean, in "
               "that order, and the mean of the Laplace approximation's draws.",
               alt="A right-skewed density of sigma with four vertical lines close together, "
                   "and below a zoomed number line with the MAP, log-mode, median, mean and "
                   "Laplace mean labelled in increasing order.")
