"""Experiment 8: choosing the loss by the likelihood.

Each loss is a likelihood: squared error is Gaussian noise, absolute error Laplace noise, and
the bounded-influence Student-t loss is Student-t noise with learned degrees of freedom. So
the choice of loss is a choice of model, and models are compared by how well they predict
data they were not fitted to: PSIS-LOO's expected log predictive density (ELPD), from the
pointwise log-likelihood that ``mm.sample`` records.

Data: a simulated straight line, y = 1 + 2x + N(0, 1), n = 40, in which the four points of
largest x were recorded 15 units too low (gross errors at high leverage). The three
likelihoods are fitted with ``mm.sample`` (flat priors on intercept, slope and scale;
Gamma(2, 0.1) on the Student-t ν; chains start from U(-2, 2) in unconstrained space) and
compared with ``mm.compare_losses``. The Gaussian MAP is ordinary least squares (experiment
2), the Laplace MAP least absolute deviations (scikit-learn's median ``QuantileRegressor``);
the Student-t MAP comes from ``mm.fit``.
"""

from __future__ import annotations

import numpy as np

from lesson._common import panels, quietly

EXPLANATION = """
Each loss is a likelihood: squared error assumes Gaussian noise, absolute error Laplace
noise, and the bounded-influence Student-t loss assumes noise with heavy tails, whose
degrees of freedom can be learned. So choosing a loss is choosing a model of the noise, and
models are compared by how well they predict data they were not fitted to.

PSIS-LOO estimates that from one posterior per model, without refitting: the expected log
predictive density (ELPD), computed from the pointwise log-likelihood that `mm.sample`
records, with a Pareto-k diagnostic that flags observations a model cannot accommodate.
Below, a straight line whose four highest-leverage points were recorded 15 units too low:
least squares is pulled by them; the heavy-tailed likelihoods are not, and LOO prefers them.
"""

N = 40
TRUTH = {"intercept": 1.0, "slope": 2.0, "sigma": 1.0}
NUM_OUTLIERS = 4
OUTLIER_SHIFT = -15.0
LABELS = {"gaussian": "gaussian (squared error)", "laplace": "laplace (absolute error)",
          "student_t": "student_t (robust)"}


def _simulate(rng):
    x = np.sort(rng.normal(size=N))
    y = TRUTH["intercept"] + TRUTH["slope"] * x + rng.normal(0.0, TRUTH["sigma"], size=N)
    outliers = np.arange(N - NUM_OUTLIERS, N)  # the largest x: high leverage
    y[outliers] += OUTLIER_SHIFT
    return x, y, outliers


def run(ctx):
    from sklearn.linear_model import LinearRegression, QuantileRegressor

    import mlemap as mm

    nuts = dict(num_chains=ctx.size(4, 2), num_warmup=ctx.size(1000, 400),
                num_samples=ctx.size(1000, 600), progress_bar=False)
    x, y, outliers = _simulate(ctx.rng)
    X = x[:, None]
    ctx.metric("data", {"n": N, "truth": TRUTH, "outliers": outliers,
                        "outlier_shift": OUTLIER_SHIFT})
    families = {"gaussian": mm.families.gaussian(), "laplace": mm.families.laplace(),
                "student_t": mm.families.student_t()}
    posteriors, sample_warnings, slopes = {}, {}, {}
    for i, (key, family) in enumerate(families.items()):
        ctx.progress(f"NUTS, {LABELS[key]} likelihood")
        model, data = mm.glm(X, y, family=family)
        dt, sample_warnings[key] = quietly(mm.sample, model, data, seed=ctx.seed + i,
                                            init="uniform", **nuts)
        posteriors[LABELS[key]] = dt
        beta = dt.posterior["beta"].values[..., 0].ravel()
        slopes[key] = {"mean": float(beta.mean()), "sd": float(beta.std()),
                       "q05": float(np.quantile(beta, 0.05)),
                       "q95": float(np.quantile(beta, 0.95))}
        if key == "student_t":
            t_model, t_data = model, data
            nu = dt.posterior["nu"].values.ravel()
            ctx.metric("student_t.nu_median", float(np.median(nu)))
    ctx.metric("nuts_settings", {k: v for k, v in nuts.items() if k != "progress_bar"})
    ctx.metric("slope_posterior", slopes)
    ctx.metric("sampling_warnings", sample_warnings)

    table, loo_warnings = quietly(mm.compare_losses, posteriors)
    ctx.metric("loo.table", {label: {c: table.loc[label, c] for c in
                                     ("rank", "elpd", "p", "elpd_diff", "dse", "se", "weight",
                                      "pareto_k_max", "num_high_k")} for label in table.index})
    ctx.metric("loo.warnings", loo_warnings)
    best = table.index[0]
    gauss = LABELS["gaussian"]
    # ELPD of the best model minus the Gaussian's, and the standard error of that difference.
    diff = float(table.loc[best, "elpd"] - table.loc[gauss, "elpd"])
    dse = float(table.loc[gauss, "dse"])
    robust = [LABELS["laplace"], LABELS["student_t"]]
    ctx.check(
        "With gross outliers, PSIS-LOO prefers a heavy-tailed likelihood (a robust loss) to "
        "the Gaussian one (squared error), by more than two standard errors",
        evidence=("ELPD: " + ", ".join(f"{k} {table.loc[k, 'elpd']:.1f}" for k in table.index)
                  + f"; best: {best}, ahead of the Gaussian by {diff:.1f} ± {dse:.1f} (SE of "
                  f"the difference) = {diff / dse:.1f} SE"),
        tolerance="best ∈ {laplace, student_t}; ELPD(best) − ELPD(gaussian) > 2 SE",
        passed=best in robust and diff > 2 * dse,
    )
    high = {k: int(table.loc[k, "num_high_k"]) for k in table.index}
    k_max = {k: float(table.loc[k, "pareto_k_max"]) for k in table.index}
    ctx.check(
        "PSIS-LOO is reliable here: every observation's Pareto-k is below ArviZ's threshold "
        "for the best model and for student_t",
        evidence="; ".join(f"{k}: max k = {k_max[k]:.2f}, {high[k]} high" for k in table.index),
        tolerance="0 high k for the best model and for student_t",
        passed=high[best] == 0 and high[LABELS["student_t"]] == 0,
    )

    ctx.progress("MAP slopes: least squares, least absolute deviations, Student-t (mm.fit)")
    t_map, fit_warnings = quietly(mm.fit, t_model, t_data)
    ols = LinearRegression().fit(X, y)
    lad = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(X, y)
    clean = np.setdiff1d(np.arange(N), outliers)
    ols_clean = LinearRegression().fit(X[clean], y[clean])
    maps = {"gaussian": float(ols.coef_[0]), "laplace": float(lad.coef_[0]),
            "student_t": float(np.asarray(t_map.params["beta"])[0])}
    ctx.metric("map_slope", maps)
    ctx.metric("ols_slope_without_outliers", float(ols_clean.coef_[0]))
    ctx.metric("student_t.map", {k: np.asarray(v) for k, v in t_map.params.items()})
    ctx.metric("student_t.map_status", t_map.message)
    ctx.metric("student_t.map_warnings", fit_warnings)
    sd_t = slopes["student_t"]["sd"]
    oracle = float(ols_clean.coef_[0])  # least squares on the clean points: the best possible
    err = {k: abs(v - TRUTH["slope"]) / sd_t for k, v in maps.items()}
    off = {k: abs(v - oracle) / sd_t for k, v in maps.items()}
    ctx.check(
        "The Student-t MAP's slope is close to the truth while the Gaussian MAP (least "
        "squares) is pulled by the outliers",
        evidence=(f"true slope {TRUTH['slope']:g}; least squares on the {N - NUM_OUTLIERS} clean "
                  f"points {oracle:.3f}; on all points: Student-t MAP {maps['student_t']:.3f}, "
                  f"least absolute deviations {maps['laplace']:.3f}, least squares "
                  f"{maps['gaussian']:.3f}. In Student-t posterior sds ({sd_t:.3f}), distance to "
                  f"the truth / to the clean fit: Student-t {err['student_t']:.1f} / "
                  f"{off['student_t']:.1f}, least squares {err['gaussian']:.1f} / "
                  f"{off['gaussian']:.1f}"),
        tolerance=("Student-t ≤ 3 sd from the truth and ≤ 1 sd from the clean fit; least "
                   "squares > 5 sd from both"),
        passed=(bool(t_map.converged) and err["student_t"] <= 3 and off["student_t"] <= 1
                and err["gaussian"] > 5 and off["gaussian"] > 5),
    )

    intercepts = {"gaussian": float(ols.intercept_), "laplace": float(lad.intercept_),
                  "student_t": float(t_map.params["intercept"])}
    _figures(ctx, table, x, y, outliers, maps, intercepts)
    ctx.note("Choosing a loss is choosing a likelihood, so it can be done with the tools for "
             "choosing models: PSIS-LOO ranks the likelihoods by predictive accuracy, and its "
             "Pareto-k diagnostic flags the observations a likelihood cannot accommodate.")


def _figures(ctx, table, x, y, outliers, maps, intercepts):
    fig, (ax,) = panels(1, height=2.9)
    labels = list(table.index)
    rows = -np.arange(len(labels))
    diff = table["elpd"].to_numpy() - float(table["elpd"].iloc[0])
    ax.errorbar(diff, rows, xerr=table["dse"].to_numpy(), fmt="o", color="k", ms=7,
                capsize=4, lw=1.6)
    ax.axvline(0, color="0.5", ls="--", lw=1)
    ax.set_yticks(rows, [label.replace(" (", "\n(") for label in labels])
    ax.set_ylim(rows[-1] - 0.6, 0.6)
    ax.set_xlabel("ELPD difference to the best (higher is better)")
    ax.set_title("PSIS-LOO ranks the robust likelihoods\nabove the Gaussian (squared error)")
    ax.grid(axis="y", visible=False)
    ctx.figure(fig, "loo",
               "PSIS-LOO's expected log predictive density of each likelihood on the data with "
               "outliers, as the difference to the best model; bars: the standard error of that "
               "difference. The best model sits at 0.",
               alt="A dot plot of three models' ELPD differences with error bars; the Gaussian "
                   "model far to the left of the other two.")

    fig, (ax,) = panels(1, height=3.8)
    ax.plot(np.delete(x, outliers), np.delete(y, outliers), "o", color="0.45", ms=4,
            label="data")
    ax.plot(x[outliers], y[outliers], "x", color="C3", ms=8, mew=2, label="gross errors")
    grid = np.linspace(x.min(), x.max(), 2)
    ax.plot(grid, TRUTH["intercept"] + TRUTH["slope"] * grid, "k:", lw=1.5, label="truth")
    for color, key in zip(("C0", "C1", "C2"), maps):
        ax.plot(grid, intercepts[key] + maps[key] * grid, color=color, lw=2,
                label=f"{LABELS[key]}: slope {maps[key]:.2f}")
    ax.set(xlabel="x", ylabel="y")
    ax.set_title("Four gross errors pull least squares;\nthe Student-t fit follows the data")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=9)
    ctx.figure(fig, "fits", "The data with four gross errors at high leverage and the MAP line "
               f"of each likelihood (the true slope is {TRUTH['slope']:g}): least squares is "
               f"pulled to {maps['gaussian']:.2f}, least absolute deviations to "
               f"{maps['laplace']:.2f}, the Student-t MAP hardly ({maps['student_t']:.2f}).",
               alt="A scatter plot of a rising straight line with four low outliers at the "
                   "right; the blue least-squares line is tilted down by them, the green "
                   "Student-t line follows the bulk of the data.")
