"""Experiment 5: MAP is regularization, checked against scikit-learn.

Zero-mean priors on the weights, a flat prior on the intercept (scikit-learn never
penalizes it), and the mappings of ``mm.priors``:

- Gaussian likelihood (σ fixed), Normal(0, τ) prior = ``Ridge(alpha)``, alpha = σ²/τ²;
- Gaussian likelihood (σ fixed), Laplace(0, b) prior = ``Lasso(alpha)``, alpha = σ²/(n b),
  with the same exact zeros;
- Bernoulli / categorical likelihood, Normal(0, τ) prior = ``LogisticRegression(C)``, C = τ².

Data: diabetes (regression), breast cancer with all 30 features (whose MLE does not exist:
the classes are separable, and the prior is what makes the estimate finite), wine with all 13
features (3 classes).
"""

from __future__ import annotations

import warnings

import numpy as np

from lesson._common import breast_cancer, diabetes, panels, rel_error, wine

EXPLANATION = """
A prior on the coefficients adds its log-density to the log-likelihood, and the MAP
maximizes the sum. A Normal(0, τ) prior adds −β²/(2τ²), the L2 penalty of ridge regression;
a Laplace(0, b) prior adds −|β|/b, the L1 penalty of the lasso. So a penalized fit is a MAP
estimate, and its penalty strength is a prior's scale: ridge's alpha is σ²/τ², the lasso's
alpha is σ²/(n b), logistic regression's C is τ².

The correspondence is exact, zeros included: the lasso's coefficients that are exactly 0
are exactly 0 in the MAP under a Laplace prior (mlemap's proximal solver, FISTA, sets them
so). It also explains what a penalty is for: with all thirty breast-cancer features the
classes can be separated, the likelihood has no maximum, and only the prior makes the
estimate finite.
"""

SIGMA = 50.0
RIDGE_ALPHAS = (1.0, 20.0, 200.0)
LASSO_ALPHAS = (0.5, 2.0, 5.0)
C_BINARY = 1.0
C_MULTI = 0.5


def run(ctx):
    from sklearn.linear_model import Lasso, LogisticRegression, Ridge

    import mlemap as mm

    tol = ctx.tol(1e-7, 1e-3)
    pairs = {}  # what the figures draw: scikit-learn's coefficients against the MAP

    # -- Ridge: one batched fit over the alphas (the priors are arguments, not constants) ---
    X, y, names = diabetes()
    n, d = X.shape
    model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=SIGMA),
                         prior=mm.priors.from_ridge(RIDGE_ALPHAS[0], sigma=SIGMA))
    alphas = np.asarray(RIDGE_ALPHAS)
    path = mm.fit(model, data, priors={"beta": mm.priors.from_ridge(alphas[:, None], SIGMA)},
                  batch="priors")
    ours = np.column_stack([np.asarray(path.params["intercept"]), np.asarray(path.params["beta"])])
    sk = np.array([np.concatenate([[r.intercept_], r.coef_])
                   for r in (Ridge(alpha=a, solver="cholesky").fit(X, y) for a in alphas)])
    taus = SIGMA / np.sqrt(alphas)
    ctx.metric("ridge.sigma", SIGMA)
    ctx.metric("ridge.alphas", alphas)
    ctx.metric("ridge.taus", taus)
    ctx.metric("ridge.map", ours)
    ctx.metric("ridge.sklearn", sk)
    ctx.metric("ridge.converged", np.asarray(path.converged))
    err = max(rel_error(o, s) for o, s in zip(ours, sk))
    ctx.metric("ridge.max_rel_error", err)
    ctx.check(
        "Gaussian likelihood + Normal(0, τ) prior: the MAP is Ridge(alpha) with "
        "alpha = σ²/τ²",
        evidence=(f"σ = {SIGMA:g}; τ = {', '.join(f'{t:.3g}' for t in taus)} ↔ alpha = "
                  f"{', '.join(f'{a:g}' for a in alphas)} (one batched fit): max |MAP − Ridge| "
                  f"/ max |Ridge| = {err:.1e}"),
        tolerance=f"≤ {tol:.0e} at each alpha",
        passed=bool(np.all(path.converged)) and err <= tol,
    )
    pairs["ridge"] = [(f"alpha = {a:g}", s_[1:], o[1:]) for a, s_, o in zip(alphas, sk, ours)]

    # -- Lasso: the same zeros ----------------------------------------------------------------
    rows, zeros_ok, errs, zero_counts = [], True, [], []
    for alpha in LASSO_ALPHAS:
        prior = mm.priors.from_lasso(alpha, n, sigma=SIGMA)
        est = mm.fit(model, data, priors={"beta": prior})
        lasso = Lasso(alpha=alpha, tol=1e-14, max_iter=1_000_000).fit(X, y)
        beta = np.asarray(est.params["beta"])
        errs.append(rel_error(np.concatenate([[float(est.params["intercept"])], beta]),
                              np.concatenate([[lasso.intercept_], lasso.coef_])))
        same = bool(np.array_equal(beta == 0, lasso.coef_ == 0)) and bool(est.converged)
        zeros_ok &= same
        zero_counts.append(int(np.sum(lasso.coef_ == 0)))
        rows.append((alpha, float(prior.scale), beta, lasso.coef_, est.solver))
        ctx.metric(f"lasso.alpha_{alpha:g}.map", beta)
        ctx.metric(f"lasso.alpha_{alpha:g}.sklearn", lasso.coef_)
        ctx.metric(f"lasso.alpha_{alpha:g}.laplace_scale_b", float(prior.scale))
        ctx.metric(f"lasso.alpha_{alpha:g}.zeros_map", [names[j] for j in np.flatnonzero(beta == 0)])
        ctx.metric(f"lasso.alpha_{alpha:g}.zeros_sklearn",
                   [names[j] for j in np.flatnonzero(lasso.coef_ == 0)])
        ctx.metric(f"lasso.alpha_{alpha:g}.solver", est.solver)
    tol_lasso = ctx.tol(1e-6, 1e-3)
    ctx.metric("lasso.max_rel_error", max(errs))
    ctx.check(
        "Gaussian likelihood + Laplace(0, b) prior: the MAP is Lasso(alpha) with "
        "alpha = σ²/(n b), with the same exact zeros",
        evidence=(f"alpha = {', '.join(f'{a:g}' for a in LASSO_ALPHAS)} (b = "
                  f"{', '.join(f'{r[1]:.3g}' for r in rows)}): zeros per alpha "
                  f"{zero_counts}, identical sets of exact zeros: {zeros_ok}; "
                  f"max |MAP − Lasso| / max |Lasso| = {max(errs):.1e} (solver: {rows[0][4]})"),
        tolerance=f"same zero set (β_j == 0 exactly); coefficients ≤ {tol_lasso:.0e}",
        passed=zeros_ok and max(errs) <= tol_lasso,
    )
    pairs["lasso"] = [(f"alpha = {alpha:g}", coef, beta) for alpha, _, beta, coef, _ in rows]

    # -- LogisticRegression(C): breast cancer, all 30 features (separable) -------------------
    X, y, names = breast_cancer(features=None)
    n, d = X.shape
    model, data = mm.glm(X, y, family=mm.families.bernoulli(),
                         prior=mm.priors.from_logistic(C_BINARY))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mle = mm.fit(model, data, method="mle")
    mle_warnings = [str(w.message) for w in caught]
    with warnings.catch_warnings():  # no optimum exists: lbfgs stops at max_iter, as expected
        warnings.simplefilter("ignore")
        separable = LogisticRegression(C=1e4, max_iter=2000).fit(X, y)
    ctx.metric("logistic.mle_status", mle.message)
    ctx.metric("logistic.mle_result", mle.result.name)
    ctx.metric("logistic.mle_warnings", mle_warnings)
    ctx.metric("logistic.unpenalized_training_accuracy", separable.score(X, y))
    ctx.metric("logistic.unpenalized_max_abs_coef", np.abs(separable.coef_).max())
    ctx.check(
        "Without a prior the MLE need not exist: with all 30 breast-cancer features the "
        "classes are (quasi-)separable, and mlemap reports that the likelihood has no maximum",
        evidence=(f"mm.fit(method='mle'): {mle.result.name} ({len(mle_warnings)} FitWarning); "
                  f"LogisticRegression(C=1e4) reaches training accuracy "
                  f"{separable.score(X, y):.3f} with max |coef| {np.abs(separable.coef_).max():.0f}"),
        tolerance="result NO_MAXIMUM and a warning",
        passed=mle.result.name == "NO_MAXIMUM" and bool(mle_warnings),
    )
    est = mm.fit(model, data)
    sk = LogisticRegression(C=C_BINARY, tol=1e-12, max_iter=100_000).fit(X, y)
    ours = np.concatenate([[float(est.params["intercept"])], np.asarray(est.params["beta"])])
    ref = np.concatenate([sk.intercept_, sk.coef_[0]])
    tol_logistic = ctx.tol(1e-6, 1e-3)
    ctx.metric("logistic.C", C_BINARY)
    ctx.metric("logistic.tau", float(np.sqrt(C_BINARY)))
    ctx.metric("logistic.map", ours)
    ctx.metric("logistic.sklearn", ref)
    ctx.compare(f"Bernoulli likelihood + Normal(0, τ) prior: the MAP is LogisticRegression(C) "
                f"with C = τ² (C = {C_BINARY:g}; it exists where the MLE does not)",
                ours, ref, tol=tol_logistic if est.converged else -1.0,
                key="logistic.map_vs_sklearn", reference_name="sklearn")
    pairs["binary"] = [(f"C = {C_BINARY:g}", ref, ours)]

    # -- Multinomial LogisticRegression(C): wine, all 13 features, symmetric form -------------
    X, y, names = wine(features=None)
    n, d = X.shape
    model, data = mm.glm(X, y, family=mm.families.categorical(),
                         prior=mm.priors.from_logistic(C_MULTI))
    est = mm.fit(model, data)
    sk = LogisticRegression(C=C_MULTI, tol=1e-12, max_iter=100_000).fit(X, y)
    beta = np.asarray(est.params["beta"])  # (d, K), identified by the prior
    intercept = np.asarray(est.params["intercept"])  # (K-1,), class 0 at 0
    sk_intercept = sk.intercept_[1:] - sk.intercept_[0]
    ours = np.concatenate([intercept, beta.ravel()])
    ref = np.concatenate([sk_intercept, sk.coef_.T.ravel()])
    ctx.metric("multinomial.C", C_MULTI)
    ctx.metric("multinomial.map_beta", beta)
    ctx.metric("multinomial.sklearn_coef_T", sk.coef_.T)
    ctx.compare(f"Categorical likelihood + Normal(0, τ) prior: the MAP is multinomial "
                f"LogisticRegression(C = τ² = {C_MULTI:g}), symmetric coefficients (d, K); "
                "intercepts as differences from class 0",
                ours, ref, tol=tol_logistic if est.converged else -1.0,
                key="multinomial.map_vs_sklearn", reference_name="sklearn")
    pairs["multinomial"] = [(f"C = {C_MULTI:g}", ref, ours)]
    _figures(ctx, pairs)


def _diagonal(ax, points):
    values = np.concatenate([np.concatenate([x, y]) for _, x, y in points])
    lo, hi = values.min(), values.max()
    pad = 0.06 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8, zorder=1)
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad))


def _figures(ctx, pairs):
    fig, axes = panels(2, height=3.6)
    markers = ("o", "s", "^")
    for ax, key, title in ((axes[0], "ridge", "Ridge(alpha) is the MAP under a Normal prior"),
                           (axes[1], "lasso", "Lasso(alpha) is the MAP under a Laplace prior,\n"
                                              "exact zeros included")):
        for (label, sk, ours), marker in zip(pairs[key], markers):
            if key == "lasso":
                zero = (sk == 0) & (ours == 0)
                label += f": {int(zero.sum())} exact zeros"
            ax.plot(sk, ours, marker, ms=6, mfc="none", mew=1.5, label=label, zorder=3)
        _diagonal(ax, pairs[key])
        ax.set(xlabel=f"scikit-learn {key.title()} coefficient", ylabel="mlemap MAP")
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=9)
    total = sum(int(np.sum((sk == 0) & (ours == 0))) for _, sk, ours in pairs["lasso"])
    axes[1].plot([0], [0], "o", ms=16, mfc="none", mec="C3", mew=2, zorder=4)
    axes[1].annotate(f"(0, 0): {total} coefficients,\nexactly 0 in both", (0, 0),
                     xytext=(0.55, 0.12), textcoords="axes fraction", color="C3", fontsize=10,
                     arrowprops=dict(arrowstyle="->", color="C3"))
    ctx.figure(fig, "map_vs_sklearn",
               "Diabetes: each coefficient of scikit-learn's Ridge (top) and Lasso (bottom) at "
               "three strengths against mlemap's MAP under the matching Normal and Laplace "
               "priors; on the diagonal means equal. The red ring holds the lasso's exact zeros, "
               "exactly 0 in the MAP as well.",
               alt="Two scatter plots of mlemap coefficients against scikit-learn's, all points "
                   "on the diagonal; in the lasso panel a red ring marks the coefficients that "
                   "are exactly zero in both.")

    fig, axes = panels(2, height=3.3)
    for ax, key, title in ((axes[0], "binary", "LogisticRegression(C) is the MAP\nunder a "
                                                "Normal(0, √C) prior"),
                           (axes[1], "multinomial", "Multinomial LogisticRegression(C),\n"
                                                    "the same prior")):
        for label, sk, ours in pairs[key]:
            ax.plot(sk, ours, "o", ms=5, mfc="none", mew=1.5, label=label, zorder=3)
        _diagonal(ax, pairs[key])
        ax.set(xlabel="scikit-learn coefficient", ylabel="mlemap MAP")
        ax.set_title(title)
        ax.legend(loc="upper left")
    ctx.figure(fig, "logistic",
               "Breast cancer with all 30 features (top; the classes are separable, so only the "
               "prior makes the estimate finite) and wine with all 13 (bottom, three classes): "
               "scikit-learn's LogisticRegression against mlemap's MAP.",
               alt="Two scatter plots of mlemap logistic coefficients against scikit-learn's, "
                   "all points on the diagonal.")
