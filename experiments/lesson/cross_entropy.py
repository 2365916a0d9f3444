"""Experiment 3: cross-entropy is Bernoulli and categorical likelihood.

The Bernoulli negative log-likelihood with a logit link is the log loss summed over
observations, and the categorical one with a softmax link is the softmax cross-entropy:
slope n on the mean loss, constant 0, at any parameter value. So the MLE of a logistic
regression is the minimum of the log loss, and its standard errors (the inverse negative
Hessian, which ``mm.laplace(method="mle")`` computes) are statsmodels' ``Logit`` /
``MNLogit`` ones. Data: scikit-learn's breast cancer (5 standardized features) and wine
(4 standardized features, 3 classes); with more features both are (almost) separable and
have no MLE, which experiment 4 takes up.
"""

from __future__ import annotations

import numpy as np

from lesson._common import breast_cancer, rel_error, wine


def _affine_check(ctx, key, label, nll, reference):
    """NLL against n * sklearn's log_loss over random parameter values.

    The tolerance is 1e-9, not machine precision: scikit-learn takes the log of rounded
    probabilities (expit then log), mlemap works from the logits (log-sigmoid), and at
    |logit| ~ 15 the two differ in the ninth digit.
    """
    err = rel_error(nll, reference)
    ctx.metric(f"{key}.max_rel_error", err)
    tol = ctx.tol(1e-9, 1e-5)
    return ctx.check(
        label,
        evidence=(f"{len(nll)} random parameter values: max |NLL − n·log_loss| / "
                  f"max NLL = {err:.1e} (slope n, constant 0)"),
        tolerance=f"≤ {tol:.0e}",
        passed=err <= tol,
    )


def run(ctx):
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import statsmodels.api as sm
    from scipy.special import expit, softmax
    from sklearn.metrics import log_loss

    import mlemap as mm

    draws = ctx.size(300, 60)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))

    # -- Bernoulli: breast cancer --------------------------------------------------------
    X, y, names = breast_cancer()
    n, d = X.shape
    ctx.metric("bernoulli.dataset", f"sklearn load_breast_cancer: n = {n}, features {names}")
    model, data = mm.glm(X, y, family=mm.families.bernoulli())
    positions = ctx.rng.normal(0, 0.5, size=(draws, d + 1))
    nll = -np.asarray(jax.jit(jax.vmap(mm.log_density_fn(model, prior=False),
                                       in_axes=(0, None)))(jnp.asarray(positions), data))
    reference = np.array([n * log_loss(y, expit(X @ u[1:] + u[0]), labels=[0, 1])
                          for u in positions])
    _affine_check(ctx, "bernoulli.affine", "Bernoulli NLL (logit link) is n × the log loss "
                  "(binary cross-entropy) at every parameter value", nll, reference)
    axes[0].plot(reference, nll, ".", ms=4)
    axes[0].set(xlabel="n · sklearn log_loss", ylabel="Bernoulli NLL (mlemap)",
                title=f"Breast cancer, {draws} random β")

    est = mm.fit(model, data, method="mle")
    lap = mm.laplace(model, data, mode=est, method="mle")
    ours = np.concatenate([[float(est.params["intercept"])], np.asarray(est.params["beta"])])
    ours_se = np.concatenate([np.atleast_1d(np.asarray(lap.std_errors["intercept"])),
                              np.asarray(lap.std_errors["beta"])])
    logit = sm.Logit(y, sm.add_constant(X)).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    ctx.metric("bernoulli.mle", ours)
    ctx.metric("bernoulli.mle_se", ours_se)
    ctx.metric("bernoulli.statsmodels_params", logit.params)
    ctx.metric("bernoulli.statsmodels_bse", logit.bse)
    tol, tol_se = ctx.tol(1e-7, 1e-3), ctx.tol(1e-6, 1e-2)
    ctx.compare("The Bernoulli MLE (min log loss) equals statsmodels Logit's coefficients",
                ours, logit.params, tol=tol if est.converged else -1.0,
                key="bernoulli.mle_vs_statsmodels", reference_name="Logit")
    ctx.compare("Its standard errors (Laplace at the MLE) equal statsmodels Logit's",
                ours_se, logit.bse, tol=tol_se, key="bernoulli.se_vs_statsmodels",
                reference_name="Logit")

    # -- Categorical: wine ----------------------------------------------------------------
    X, y, names = wine()
    n, d = X.shape
    K = int(y.max()) + 1
    ctx.metric("categorical.dataset", f"sklearn load_wine: n = {n}, K = {K}, features {names}")
    model, data = mm.glm(X, y, family=mm.families.categorical())
    positions = ctx.rng.normal(0, 0.5, size=(draws, model.dim))
    nll = -np.asarray(jax.jit(jax.vmap(mm.log_density_fn(model, prior=False),
                                       in_axes=(0, None)))(jnp.asarray(positions), data))

    def probabilities(u):  # class 0 is the reference: logit 0
        intercept, beta = u[: K - 1], u[K - 1 :].reshape(d, K - 1)
        logits = np.column_stack([np.zeros(n), X @ beta + intercept])
        return softmax(logits, axis=1)

    reference = np.array([n * log_loss(y, probabilities(u), labels=list(range(K)))
                          for u in positions])
    _affine_check(ctx, "categorical.affine", "Categorical NLL (softmax link) is n × the softmax "
                  "cross-entropy at every parameter value", nll, reference)
    axes[1].plot(reference, nll, ".", ms=4, color="C1")
    axes[1].set(xlabel="n · sklearn log_loss (multiclass)", ylabel="categorical NLL (mlemap)",
                title=f"Wine, {draws} random β")

    est = mm.fit(model, data, method="mle")
    lap = mm.laplace(model, data, mode=est, method="mle")
    ours = np.vstack([np.asarray(est.params["intercept"])[None], np.asarray(est.params["beta"])])
    ours_se = np.vstack([np.asarray(lap.std_errors["intercept"])[None],
                         np.asarray(lap.std_errors["beta"])])
    mn = sm.MNLogit(y, sm.add_constant(X)).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    ctx.metric("categorical.mle", ours)
    ctx.metric("categorical.mle_se", ours_se)
    ctx.metric("categorical.statsmodels_params", np.asarray(mn.params))
    ctx.metric("categorical.statsmodels_bse", np.asarray(mn.bse))
    ctx.compare("The categorical MLE (min softmax cross-entropy, class 0 the reference) equals "
                "statsmodels MNLogit's coefficients", ours, np.asarray(mn.params),
                tol=tol if est.converged else -1.0, key="categorical.mle_vs_statsmodels",
                reference_name="MNLogit")
    ctx.compare("Its standard errors (Laplace at the MLE) equal statsmodels MNLogit's",
                ours_se, np.asarray(mn.bse), tol=tol_se, key="categorical.se_vs_statsmodels",
                reference_name="MNLogit")

    ref = np.concatenate([np.asarray(logit.params), np.asarray(mn.params).ravel()])
    mine = np.concatenate([np.asarray(ctx.metrics["bernoulli.mle"]), ours.ravel()])
    ref_se = np.concatenate([np.asarray(logit.bse), np.asarray(mn.bse).ravel()])
    axes[2].errorbar(ref, mine, xerr=1.96 * ref_se, fmt="o", ms=4, alpha=0.7)
    lim = [min(ref.min(), mine.min()) - 0.5, max(ref.max(), mine.max()) + 0.5]
    axes[2].plot(lim, lim, "k-", lw=0.5)
    axes[2].set(xlabel="statsmodels Logit / MNLogit (± 1.96 SE)", ylabel="mlemap MLE",
                title="MLE = minimum cross-entropy")
    for ax in axes[:2]:
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
    ctx.figure(fig, "cross_entropy",
               "Left, middle: at every parameter value the negative log-likelihood equals n "
               "times scikit-learn's log loss (points on the diagonal). Right: the MLEs "
               "against statsmodels' Logit and MNLogit, with their 95% intervals.")
