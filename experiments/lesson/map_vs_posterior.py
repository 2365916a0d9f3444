"""Experiment 7: MAP against the posterior, and the Laplace approximation against NUTS.

The MAP is one point of the posterior: its mode, in the coordinates the parameters are
declared in. Where the posterior is close to a Gaussian (much data, few parameters) the mode,
the mean and the median coincide and the Laplace approximation has the right spread; where
it is not, they part, and this experiment measures by how much:

1. **Much data** (breast cancer, n = 569, three standardized features, logistic regression
   with Normal(0, 2.5) priors): the MAP is within a small fraction of a posterior sd of the
   posterior mean, and the Laplace sd is NUTS's.
2. **Little data** (the same model on 20 of the tumours, 10 of each class): the posterior is
   skewed, the MAP sits a large fraction of an sd from the mean, and the Laplace
   approximation is too narrow. Both cases are one model whose data carry observation
   weights (1 for a tumour in the sample, 0 otherwise), so one set of compiled programs
   serves both.
3. **A Laplace prior** (diabetes, σ = 50 fixed, Laplace(0, b) prior = Lasso(alpha = 2)): the
   MAP has exact zeros; the posterior has none, and its mass near zero is far below one.
4. **Eight schools**: the centered model has no MAP (with ``jacobian=False`` the density
   grows without bound as τ → 0), NUTS on it misses the funnel's neck and warns, and the
   non-centered model samples a posterior of τ well away from 0 that matches posteriordb's reference.
5. **A positive scale** (σ of a Gaussian, n = 8, flat priors): the mode, the mode in log σ
   (``jacobian=True``), the posterior median and mean differ, in the order and by the
   amounts of the closed-form posterior σ² | y ~ Inv-Gamma((n − 2)/2, SS/2).

In cases 1–3 every parameter is real, so the MAP with and without the Jacobian is the same
point; it is fitted once, with ``jacobian=True`` (the centre of the Laplace approximation and
NUTS's starting point), to compile one optimizer per model.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from lesson import _posterior_figures as figures
from lesson._common import breast_cancer, diabetes, quietly, rel_error

EXPLANATION = """
The MAP is one point of the posterior: its highest point, in the coordinates the parameters
are written in. Where the posterior is close to a Gaussian (much data, few parameters) its
mode, mean and median coincide, and the Laplace approximation, a Gaussian fitted at the
mode, has the right spread. Where it is not, they part, and a single point hides what the
data leave open.

Five cases, each measured against NUTS (the full posterior, sampled from the same
log-density): a logistic regression with much data and with little; the lasso, whose MAP has
exact zeros that the posterior does not; the eight-schools model, which has no MAP at all;
and the scale of a Gaussian, where mode, median and mean differ in a known order.
"""

LOGISTIC_FEATURES = ["mean texture", "mean smoothness", "mean symmetry"]
LOGISTIC_PRIOR_SCALE = 2.5
SMALL_N_PER_CLASS = 10
AGREE_Z_MAX = 0.2  # |MAP - posterior mean| / posterior sd, much data
AGREE_SD_BAND = 0.10  # Laplace sd / NUTS sd within 1 +- this
PART_Z_MIN = 0.3  # the same, little data: at least this

LASSO_ALPHA = 2.0
LASSO_SIGMA = 50.0
# |beta| < eps, in units of disease progression per sd of the feature: a point mass at 0 would
# keep P(|beta| < eps) above its weight as eps shrinks; a density makes it shrink with eps.
NEAR_ZERO = (1.0, 0.1)

# Rubin (1981) via posteriordb (eight_schools, commit 28f8d3d6): the data and the reference
# posterior of the non-centered model (Stan, 10 chains x 1000 thinned draws), its summary
# rounded to 3 decimals (tests/test_posteriordb.py checks it against posteriordb's file).
SCHOOLS_Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SCHOOLS_SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
SCHOOLS_REFERENCE = {"mu": {"mean": 4.411, "sd": 3.309, "q50": 4.364},
                     "tau": {"mean": 3.602, "sd": 3.198, "q05": 0.257, "q50": 2.747}}

SCALE_N = 8
SCALE_TRUE = (1.0, 2.0)  # mu, sigma of the simulated sample


def _nuts(ctx):
    return dict(num_chains=ctx.size(4, 2), num_warmup=ctx.size(1000, 400),
                num_samples=ctx.size(1000, 600), progress_bar=False)


def run(ctx):
    import mlemap as mm

    nuts = _nuts(ctx)
    ctx.metric("nuts_settings", {k: v for k, v in nuts.items() if k != "progress_bar"})
    _logistic(ctx, mm, nuts)
    _lasso(ctx, mm, nuts)
    _eight_schools(ctx, mm, nuts)
    _positive_scale(ctx, mm, nuts)


# -- 1, 2: logistic regression, much data and little data ------------------------------------


def _logistic(ctx, mm, nuts):
    import arviz_stats
    import numpyro.distributions as dist
    from scipy.stats import skew

    X, y, names = breast_cancer(LOGISTIC_FEATURES)
    n, d = X.shape

    def log_likelihood(p, data):
        eta = p["intercept"] + data["X"] @ p["beta"]
        return data["w"] * dist.Bernoulli(logits=eta).log_prob(data["y"])

    prior = dist.Normal(0.0, LOGISTIC_PRIOR_SCALE)
    model = mm.Model({"intercept": mm.Param(prior=prior), "beta": mm.Param((d,), prior=prior)},
                     log_likelihood)
    sample_rows = np.concatenate([ctx.rng.choice(np.flatnonzero(y == c), SMALL_N_PER_CLASS,
                                                 replace=False) for c in (0, 1)])
    small = np.zeros(n)
    small[sample_rows] = 1.0
    ctx.metric("logistic.features", names)
    ctx.metric("logistic.prior", f"Normal(0, {LOGISTIC_PRIOR_SCALE:g}) on intercept and beta")
    ctx.metric("logistic.small_sample_rows", np.sort(sample_rows))

    results = {}
    for key, weights, seed in (("much_data", np.ones(n), 1), ("little_data", small, 2)):
        data = {"X": X, "y": y, "w": weights}
        ctx.progress(f"logistic regression, {key.replace('_', ' ')} (n = {int(weights.sum())})")
        est = mm.fit(model, data, jacobian=True)
        lap, lap_warnings = quietly(mm.laplace, model, data, mode=est)
        dt, nuts_warnings = quietly(mm.sample, model, data, seed=ctx.seed + seed, **nuts)
        table = mm.compare(dt, {"MAP": est, "Laplace": lap}, psense=False)
        diag = arviz_stats.summary(dt, kind="diagnostics", round_to="none").loc[table.index]
        draws = {k: dt.posterior[k].values.reshape(dt.posterior.sizes["chain"] *
                                                   dt.posterior.sizes["draw"], -1)
                 for k in ("intercept", "beta")}
        skewness = np.concatenate([skew(draws["intercept"], axis=0), skew(draws["beta"], axis=0)])
        r = {
            "n": int(weights.sum()), "status": est.message, "labels": list(table.index),
            "map": table["MAP"].to_numpy(), "mean": table["mean"].to_numpy(),
            "median": table["median"].to_numpy(), "sd": table["sd"].to_numpy(),
            "z": table["MAP_z"].to_numpy(),
            "mcse_over_sd": (diag["mcse_mean"] / table["sd"]).to_numpy(),
            "laplace_sd_ratio": table["Laplace_sd_ratio"].to_numpy(),
            "laplace_z": table["Laplace_z"].to_numpy(),
            "laplace_pareto_k": lap.pareto_k, "skewness": skewness,
            "r_hat_max": float(diag["r_hat"].max()), "ess_bulk_min": float(diag["ess_bulk"].min()),
            "warnings": lap_warnings + nuts_warnings,
        }
        results[key] = r
        for k, v in r.items():
            ctx.metric(f"logistic.{key}.{k}", v)
        if key == "little_data":
            little = (dt, est, lap)

    big, few = results["much_data"], results["little_data"]
    z_big, z_few = float(np.max(np.abs(big["z"]))), float(np.max(np.abs(few["z"])))
    ratio_big = big["laplace_sd_ratio"]
    ctx.check(
        f"Much data (breast cancer, n = {big['n']}, {d} features, logistic): the MAP is the "
        "posterior mean to a small fraction of a posterior sd, and the Laplace approximation "
        "has NUTS's spread",
        evidence=(f"max over {len(big['z'])} parameters of |MAP − posterior mean| / sd = "
                  f"{z_big:.3f} (Monte Carlo error of the mean ≤ {np.max(big['mcse_over_sd']):.3f}"
                  f" sd); Laplace sd / NUTS sd = {np.min(ratio_big):.3f}…"
                  f"{np.max(ratio_big):.3f}; Laplace Pareto-k = {big['laplace_pareto_k']:.2f}"),
        tolerance=(f"|z| ≤ {AGREE_Z_MAX:g}; sd ratio within 1 ± {AGREE_SD_BAND:g}; "
                   "k ≤ 0.7"),
        passed=(z_big <= AGREE_Z_MAX and np.all(np.abs(ratio_big - 1) <= AGREE_SD_BAND)
                and big["laplace_pareto_k"] <= 0.7),
    )
    j = int(np.argmax(np.abs(few["z"])))
    z_lap_few = float(np.max(np.abs(few["laplace_z"])))
    k_big, k_few = big["laplace_pareto_k"], few["laplace_pareto_k"]
    ctx.check(
        f"Little data (the same model on n = {few['n']} tumours): the posterior is not "
        "Gaussian, the MAP parts from the posterior mean, and so does the Laplace "
        "approximation centred on it",
        evidence=(f"max |MAP − mean| / sd = {z_few:.2f} ({few['labels'][j]}: MAP "
                  f"{few['map'][j]:.3f}, mean {few['mean'][j]:.3f}, median "
                  f"{few['median'][j]:.3f}), {z_few / z_big:.1f}× the much-data gap; Laplace: "
                  f"max |mean − NUTS mean| / sd = {z_lap_few:.2f}, sd / NUTS sd = "
                  f"{np.min(few['laplace_sd_ratio']):.2f}…{np.max(few['laplace_sd_ratio']):.2f},"
                  f" Pareto-k = {k_few:.2f} (much data: {k_big:.2f})"),
        tolerance=(f"max |z| ≥ {PART_Z_MIN:g} and ≥ 2× the much-data value, for the MAP and "
                   "for the Laplace mean; Pareto-k ≥ 2× the much-data value"),
        passed=(z_few >= PART_Z_MIN and z_few >= 2 * z_big and z_lap_few >= PART_Z_MIN
                and k_few >= 2 * k_big),
    )
    dt, est, lap = little
    labels = few["labels"]
    figures.logistic_little_data(ctx, names, labels, figures.flat_draws(dt, labels),
                                 figures.flat_draws(lap.draws, labels), few["map"], few["n"])


# -- 3: a Laplace prior -----------------------------------------------------------------------


def _lasso(ctx, mm, nuts):
    X, y, names = diabetes()
    n, d = X.shape
    prior = mm.priors.from_lasso(LASSO_ALPHA, n, sigma=LASSO_SIGMA)
    model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=LASSO_SIGMA), prior=prior)
    ctx.progress("Laplace prior (lasso), diabetes")
    est = mm.fit(model, data)
    beta_map = np.asarray(est.params["beta"])
    zero = beta_map == 0.0
    # All parameters are real: the jacobian=False MAP is also the jacobian=True mode.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="mode was fitted with jacobian=False")
        lap, lap_warnings = quietly(mm.laplace, model, data, mode=est)
    start = {"intercept": np.asarray(est.params["intercept"]), "beta": beta_map}
    dt, nuts_warnings = quietly(mm.sample, model, data, seed=ctx.seed + 3, init=start, **nuts)
    table = mm.compare(dt, {"MAP (lasso)": est, "Laplace": lap}, psense=False)
    draws = dt.posterior["beta"].values.reshape(-1, d)
    exactly_zero = int(np.sum(draws == 0.0))
    near = {eps: np.mean(np.abs(draws) < eps, axis=0) for eps in NEAR_ZERO}
    labels = [f"beta[{j}]" for j in range(d)]
    sd = table.loc[labels, "sd"].to_numpy()
    lap_ratio = table.loc[labels, "Laplace_sd_ratio"].to_numpy()
    mean = table.loc[labels, "mean"].to_numpy()
    ctx.metric("lasso.alpha", LASSO_ALPHA)
    ctx.metric("lasso.laplace_scale_b", float(prior.scale))
    ctx.metric("lasso.map", beta_map)
    ctx.metric("lasso.map_zeros", [names[j] for j in np.flatnonzero(zero)])
    ctx.metric("lasso.posterior_mean", mean)
    ctx.metric("lasso.posterior_sd", sd)
    ctx.metric("lasso.draws_exactly_zero", exactly_zero)
    ctx.metric("lasso.num_draws", int(draws.shape[0]))
    for eps, p in near.items():
        ctx.metric(f"lasso.p_abs_below_{eps:g}", p)
    ctx.metric("lasso.laplace_sd_ratio", lap_ratio)
    ctx.metric("lasso.laplace_pareto_k", lap.pareto_k)
    ctx.metric("lasso.warnings", lap_warnings + nuts_warnings)
    zj = np.flatnonzero(zero)
    ctx.check(
        f"Laplace prior (diabetes, Lasso alpha = {LASSO_ALPHA:g} ↔ Laplace(0, "
        f"{float(prior.scale):.3g})): the MAP has exact zeros, the posterior puts no mass at "
        "zero",
        evidence=(f"MAP: {int(zero.sum())} coefficients == 0.0 ({', '.join(names[j] for j in zj)}); "
                  f"NUTS: {exactly_zero} of {draws.size} coefficient draws == 0.0; for the MAP's "
                  f"zeros P(|β| < {NEAR_ZERO[0]:g}) = "
                  f"{', '.join(f'{near[NEAR_ZERO[0]][j]:.2f}' for j in zj)}, P(|β| < "
                  f"{NEAR_ZERO[1]:g}) = {', '.join(f'{near[NEAR_ZERO[1]][j]:.3f}' for j in zj)};"
                  f" posterior mean / sd = {', '.join(f'{mean[j] / sd[j]:+.2f}' for j in zj)}"),
        tolerance=(f"≥ 1 exact zero in the MAP; 0 draws == 0; P(|β| < {NEAR_ZERO[0]:g}) < 1 and "
                   f"P(|β| < {NEAR_ZERO[1]:g}) < 0.1 for each"),
        passed=(zero.sum() >= 1 and exactly_zero == 0 and bool(np.all(near[NEAR_ZERO[0]][zj] < 1))
                and bool(np.all(near[NEAR_ZERO[1]][zj] < 0.1))),
    )
    ctx.check(
        "The Laplace approximation at the lasso MAP ignores the prior's kink (zero curvature): "
        "it is centred on the zeros and wider than the posterior there",
        evidence=(f"Laplace sd / NUTS sd for the MAP's zeros: "
                  f"{', '.join(f'{lap_ratio[j]:.2f}' for j in zj)}; for the others "
                  f"{np.min(np.delete(lap_ratio, zj)):.2f}…{np.max(np.delete(lap_ratio, zj)):.2f};"
                  f" Pareto-k = {lap.pareto_k:.2f}"),
        tolerance="every sd ratio of a zeroed coefficient > 1.1",
        passed=bool(np.all(lap_ratio[zj] > 1.1)),
    )
    figures.lasso(ctx, names, draws, figures.flat_draws(lap.draws, labels), beta_map,
                  lap_ratio, float(prior.scale))


# -- 4: eight schools -------------------------------------------------------------------------


def _reference():
    return SCHOOLS_REFERENCE, "posteriordb's reference posterior (eight_schools_noncentered)"


def _eight_schools(ctx, mm, nuts):
    import arviz_stats
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from numpyro.distributions import constraints


    data = {"y": np.asarray(SCHOOLS_Y), "sigma": np.asarray(SCHOOLS_SIGMA)}
    J = len(SCHOOLS_Y)
    hyper = {"mu": mm.Param(prior=dist.Normal(0.0, 5.0)),
             "tau": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(5.0))}

    def likelihood(p, d):
        return dist.Normal(p["theta"], d["sigma"]).log_prob(d["y"])

    # In posteriordb's order (theta, mu, tau).
    centered = mm.Model({"theta": mm.Param((J,), prior=lambda p: dist.Normal(
        p["mu"], p["tau"])), **hyper}, likelihood)

    def theta(p):
        return p["mu"] + p["tau"] * p["z"]

    noncentered = mm.Model(
        {**hyper, "z": mm.Param((J,), prior=dist.Normal(0.0, 1.0))},
        lambda p, d: dist.Normal(theta(p), d["sigma"]).log_prob(d["y"]),
        derived=lambda p, d: {"theta": theta(p)},
    )

    ctx.progress("eight schools, centered: MAP and NUTS")
    est, fit_warnings = quietly(mm.fit, centered, data)
    # The density along theta_j = mu, tau -> 0: log p = const - J log tau + log p(tau).
    taus = 10.0 ** -np.arange(0, 13, 3, dtype=float)
    positions = jnp.stack([centered.unconstrain({"mu": 0.0, "tau": t, "theta": np.zeros(J)})
                           for t in taus])
    path = np.asarray(jax.jit(jax.vmap(mm.log_density_fn(centered, prior=True, jacobian=False),
                                       in_axes=(0, None)))(positions, data))
    grows = bool(np.all(np.diff(path) > 0))
    ctx.metric("eight_schools.centered.map_result", est.result.name)
    ctx.metric("eight_schools.centered.map_status", est.message)
    ctx.metric("eight_schools.centered.map_tau", float(est.params["tau"]))
    ctx.metric("eight_schools.centered.map_warnings", fit_warnings)
    ctx.metric("eight_schools.centered.path_tau", taus)
    ctx.metric("eight_schools.centered.path_log_density", path)
    ctx.check(
        "Eight schools, centered: the MAP of τ collapses. With jacobian=False the log-density "
        "grows without bound as τ → 0 (θ_j → μ): there is no MAP, and mm.fit says so",
        evidence=(f"mm.fit: {est.result.name}, stopped at τ = {float(est.params['tau']):.1e}; "
                  f"log-density at θ_j = μ = 0, τ = "
                  f"{', '.join(f'1e{int(round(math.log10(t)))}' for t in taus)}: "
                  f"{', '.join(f'{v:.0f}' for v in path)}"),
        tolerance="status UNBOUNDED; log-density increasing along the path",
        passed=est.result == mm.Status.UNBOUNDED and grows,
    )
    dt_c, c_warnings = quietly(mm.sample, centered, data, seed=ctx.seed + 4, init="uniform",
                                **nuts)
    divergent = int(dt_c.sample_stats["diverging"].sum())
    diag_c = arviz_stats.summary(dt_c, kind="diagnostics", round_to="none")
    total = int(dt_c.sample_stats["diverging"].size)
    ctx.metric("eight_schools.centered.divergences", divergent)
    ctx.metric("eight_schools.centered.num_draws", total)
    ctx.metric("eight_schools.centered.r_hat_max", float(diag_c["r_hat"].max()))
    ctx.metric("eight_schools.centered.tau_median", float(dt_c.posterior["tau"].median()))
    ctx.metric("eight_schools.centered.nuts_warnings", c_warnings)
    q05_c = float(np.quantile(dt_c.posterior["tau"].values, 0.05))
    ctx.metric("eight_schools.centered.tau_q05", q05_c)
    flagged = [w for w in c_warnings if any(s in w for s in ("diverged", "R-hat", "E-BFMI"))]

    ctx.progress("eight schools, non-centered: Laplace and NUTS")
    # tol=1e-6 (on the mean log-density) is ample for the centre of a Gaussian, and L-BFGS
    # reaches it; the default 1e-9 compiles the Newton polish as well. The chains start from
    # U(-2, 2) in unconstrained space (Stan's default), not at this mode.
    lap, lap_warnings = quietly(mm.laplace, noncentered, data, tol=1e-6)
    dt, nc_warnings = quietly(mm.sample, noncentered, data, seed=ctx.seed + 5, init="uniform",
                               **nuts)
    reference, source = _reference()
    post = dt.posterior
    summary = arviz_stats.summary(dt, var_names=["mu", "tau"], round_to="none")
    tau = post["tau"].values.ravel()
    q05, q50 = np.quantile(tau, [0.05, 0.5])
    divergent_nc = int(dt.sample_stats["diverging"].sum())
    zs = {k: (summary.loc[k, "mean"] - reference[k]["mean"]) /
          math.hypot(summary.loc[k, "mcse_mean"], reference[k]["sd"] / 100) for k in ("mu", "tau")}
    sd_rel = {k: summary.loc[k, "sd"] / reference[k]["sd"] - 1 for k in ("mu", "tau")}
    for k in ("mu", "tau"):
        ctx.metric(f"eight_schools.noncentered.{k}.mean", summary.loc[k, "mean"])
        ctx.metric(f"eight_schools.noncentered.{k}.sd", summary.loc[k, "sd"])
        ctx.metric(f"eight_schools.noncentered.{k}.mcse_mean", summary.loc[k, "mcse_mean"])
        ctx.metric(f"eight_schools.noncentered.{k}.z_vs_reference", zs[k])
        ctx.metric(f"eight_schools.noncentered.{k}.sd_rel_diff", sd_rel[k])
    ctx.metric("eight_schools.noncentered.tau.q05", q05)
    ctx.metric("eight_schools.noncentered.tau.median", q50)
    ctx.metric("eight_schools.noncentered.divergences", divergent_nc)
    ctx.metric("eight_schools.noncentered.nuts_warnings", nc_warnings)
    ctx.metric("eight_schools.reference", reference)
    ctx.metric("eight_schools.reference_source", source)
    ctx.check(
        "…while the posterior of τ does not collapse: NUTS on the non-centered model has τ's "
        "median well above 0 and matches posteriordb's reference; on the centered model's "
        "funnel NUTS misses the neck, and mm.sample says so (divergences, R-hat or E-BFMI)",
        evidence=(f"non-centered: τ median {q50:.2f} (reference {reference['tau']['q50']:.2f}), "
                  f"5% quantile {q05:.2f}; mean τ {summary.loc['tau', 'mean']:.2f}, μ "
                  f"{summary.loc['mu', 'mean']:.2f} against {reference['tau']['mean']:.2f}, "
                  f"{reference['mu']['mean']:.2f}: z = {zs['tau']:+.1f}, {zs['mu']:+.1f}; sd "
                  f"{sd_rel['tau']:+.0%}, {sd_rel['mu']:+.0%}; {divergent_nc} divergences. "
                  f"Centered: τ's 5% quantile {q05_c:.2f}; {divergent} of {total} transitions "
                  f"diverged, max R-hat {float(diag_c['r_hat'].max()):.3f}; mm.sample warned: "
                  f"{'; '.join(w.split(':')[1].strip().split(' (')[0] for w in flagged) or 'no'}"),
        tolerance=("median τ ≥ 1; |z| < 4 (README rule, MCSE and reference error); sd within "
                   "15%; centered: τ's 5% quantile above the posterior's and a warning of "
                   "divergences, R-hat or E-BFMI"),
        passed=(q50 >= 1.0 and all(abs(v) < 4 for v in zs.values())
                and all(abs(v) <= 0.15 for v in sd_rel.values()) and q05_c > q05
                and bool(flagged)),
    )
    lap_tau = float(lap.mode.params["tau"])
    ratio_tau = float(np.asarray(lap.std_errors["tau"]) / summary.loc["tau", "sd"])
    ctx.metric("eight_schools.noncentered.laplace.mode_tau", lap_tau)
    ctx.metric("eight_schools.noncentered.laplace.sd_ratio_tau", ratio_tau)
    ctx.metric("eight_schools.noncentered.laplace.pareto_k", lap.pareto_k)
    ctx.metric("eight_schools.noncentered.laplace.warnings", lap_warnings)
    mode_quantile = float(np.mean(tau < lap_tau))
    ctx.check(
        "The Laplace approximation fails on eight schools: the centered model has no mode to "
        "centre it on, and the non-centered model's mode (in log τ, jacobian=True) is far "
        "in τ's tail, with an importance-sampling Pareto-k above 0.7",
        evidence=(f"non-centered mode τ = {lap_tau:.1f} (posterior quantile "
                  f"{mode_quantile:.2f}); Laplace sd(τ) / NUTS sd(τ) = {ratio_tau:.2f}; "
                  f"Pareto-k = {lap.pareto_k:.2f}"),
        tolerance="k > 0.7",
        passed=lap.pareto_k > 0.7,
    )
    # The funnel shows in log τ: the centered chains against the non-centered posterior.
    post_c = dt_c.posterior
    figures.eight_schools_funnel(
        ctx, (post_c["theta"].values[..., 0].ravel(), np.log(post_c["tau"].values).ravel()),
        (post["theta"].values[..., 0].ravel(), np.log(tau)),
        dt_c.sample_stats["diverging"].values.astype(bool).ravel(), (q05_c, q05))
    figures.eight_schools_tau(ctx, tau, lap.draws["posterior"]["tau"].values.ravel(), lap_tau,
                              q50, lap.pareto_k)


# -- 5: a positive scale ----------------------------------------------------------------------


def _positive_scale(ctx, mm, nuts):
    import arviz_stats
    import numpyro.distributions as dist
    from numpyro.distributions import constraints
    from scipy.special import gammaln
    from scipy.stats import gamma

    n = SCALE_N
    y = ctx.rng.normal(*SCALE_TRUE, size=n)
    data = {"y": y}
    model = mm.Model({"mu": mm.Param(), "sigma": mm.Param(constraint=constraints.positive)},
                     lambda p, d: dist.Normal(p["mu"], p["sigma"]).log_prob(d["y"]))
    ctx.progress(f"a positive scale: σ of a Gaussian, n = {n}, flat priors")
    ss = float(np.sum((y - y.mean()) ** 2))
    a, b = (n - 2) / 2, ss / 2  # sigma^2 | y ~ Inv-Gamma(a, b)
    exact = {
        "mode": math.sqrt(ss / n),
        "mode_jacobian": math.sqrt(ss / (n - 1)),
        "median": math.sqrt(b / gamma.ppf(0.5, a)),
        "mean": math.sqrt(b) * math.exp(gammaln(a - 0.5) - gammaln(a)),
    }
    exact_sd = math.sqrt(b / (a - 1) - exact["mean"] ** 2)
    est = mm.fit(model, data)
    est_j = mm.fit(model, data, jacobian=True)
    lap, lap_warnings = quietly(mm.laplace, model, data, mode=est_j)
    dt, nuts_warnings = quietly(mm.sample, model, data, seed=ctx.seed + 6, **nuts)
    sigma = dt.posterior["sigma"]
    nuts_mean, nuts_median = float(sigma.mean()), float(sigma.median())
    mcse_mean = float(arviz_stats.mcse(dt, var_names=["sigma"])["sigma"])
    mcse_median = float(arviz_stats.mcse(dt, method="median", var_names=["sigma"])["sigma"])
    fits = {"mode": float(est.params["sigma"]), "mode_jacobian": float(est_j.params["sigma"])}
    err_fit = max(rel_error(fits[k], exact[k]) for k in fits)
    z_mean = (nuts_mean - exact["mean"]) / mcse_mean
    z_median = (nuts_median - exact["median"]) / mcse_median
    lap_sd = float(np.asarray(lap.std_errors["sigma"]))
    lap_mean = float(lap.draws.posterior["sigma"].mean())
    for k, v in exact.items():
        ctx.metric(f"positive_scale.exact.{k}", v)
    ctx.metric("positive_scale.exact.sd", exact_sd)
    ctx.metric("positive_scale.n", n)
    ctx.metric("positive_scale.ss", ss)
    ctx.metric("positive_scale.fit", fits)
    ctx.metric("positive_scale.nuts", {"mean": nuts_mean, "median": nuts_median,
                                       "sd": float(sigma.std()), "mcse_mean": mcse_mean,
                                       "mcse_median": mcse_median})
    ctx.metric("positive_scale.laplace", {"sd": lap_sd, "draws_mean": lap_mean,
                                          "pareto_k": lap.pareto_k})
    ctx.metric("positive_scale.warnings", lap_warnings + nuts_warnings)
    tol = ctx.tol(1e-8, 1e-4)
    ctx.check(
        f"A positive scale (σ of a Gaussian, n = {n}, flat priors): mm.fit's mode is √(SS/n) "
        "(the MLE) without the Jacobian and √(SS/(n−1)) with it (the mode in log σ)",
        evidence=(f"σ̂ = {fits['mode']:.6f} vs {exact['mode']:.6f}; jacobian=True "
                  f"{fits['mode_jacobian']:.6f} vs {exact['mode_jacobian']:.6f}: max rel. "
                  f"error {err_fit:.1e}"),
        tolerance=f"≤ {tol:.0e}",
        passed=err_fit <= tol and bool(est.converged) and bool(est_j.converged),
    )
    order = ["mode", "mode_jacobian", "median", "mean"]
    nuts_order = fits["mode_jacobian"] < nuts_median < nuts_mean
    ctx.check(
        "…and mode < mode in log σ < posterior median < posterior mean, as the closed-form "
        "posterior σ² | y ~ Inv-Gamma((n−2)/2, SS/2) says; NUTS finds the same median and mean",
        evidence=(f"closed form: {' < '.join(f'{exact[k]:.3f}' for k in order)} "
                  f"({', '.join(order)}); NUTS median {nuts_median:.3f} (z = {z_median:+.1f}), "
                  f"mean {nuts_mean:.3f} (z = {z_mean:+.1f}) in MCSE units"),
        tolerance="strict order (closed form and NUTS); |z| < 4",
        passed=(all(exact[order[i]] < exact[order[i + 1]] for i in range(3)) and nuts_order
                and abs(z_mean) < 4 and abs(z_median) < 4),
    )
    ctx.check(
        "The Laplace approximation (Gaussian in log σ at the jacobian=True mode) is too narrow "
        "for a scale at small n, and its mean is below the posterior mean",
        evidence=(f"Laplace sd(σ) {lap_sd:.3f} vs exact {exact_sd:.3f} (ratio "
                  f"{lap_sd / exact_sd:.2f}); mean of its draws {lap_mean:.3f} vs exact "
                  f"{exact['mean']:.3f}; Pareto-k {lap.pareto_k:.2f}"),
        tolerance="sd ratio < 0.8 and Laplace mean < exact mean",
        passed=lap_sd / exact_sd < 0.8 and lap_mean < exact["mean"],
    )
    figures.positive_scale(ctx, n, sigma.values.ravel(), exact, fits, lap_mean, a, b)
    ctx.note("The MAP is the posterior's mode in the coordinates the parameters are declared "
             "in. It agrees with the posterior mean where the posterior is close to Gaussian "
             "(much data, few parameters); with little data, a non-smooth prior, a hierarchical "
             "scale or a positive scale it does not, and neither does the Laplace "
             "approximation built at a mode.")
