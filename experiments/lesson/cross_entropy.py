"""Experiment 4: cross-entropy is Bernoulli and categorical likelihood.

The Bernoulli negative log-likelihood with a logit link is the log loss summed over
observations, and the categorical one with a softmax link is the softmax cross-entropy:
slope n on the mean loss, constant 0, at any parameter value. So the MLE of a logistic
regression is the minimum of the log loss, and its standard errors (the inverse negative
Hessian, which ``mm.laplace(method="mle")`` computes) are statsmodels' ``Logit`` /
``MNLogit`` ones. Data: scikit-learn's breast cancer (5 standardized features) and wine
(4 standardized features, 3 classes); with more features both are (almost) separable and
have no MLE, which experiment 5 takes up.

Cross-entropy is minimized at the true probabilities (Gibbs' inequality):
:math:`H(q, p) = -\\sum_k q_k \\log p_k = H(q) + \\mathrm{KL}(q \\| p) \\ge H(q)`, with
equality only at :math:`p = q`; checked with ``scipy.stats.entropy``.
"""

from __future__ import annotations

import numpy as np

from lesson._common import breast_cancer, panels, rel_error, wine

EXPLANATION = """
For a yes/no outcome the natural model is a coin whose probability depends on the
features; the negative log-likelihood of that Bernoulli model is exactly the log loss
(binary cross-entropy), summed over the observations. With more than two classes the
categorical model with a softmax gives the softmax cross-entropy. So fitting a logistic
regression by minimizing cross-entropy is maximum likelihood, with the standard errors that
come with it.

Cross-entropy earns its place because it is minimized by the true probabilities: a model
that predicts p where the truth is q pays the entropy of q plus the Kullback-Leibler
divergence KL(q‖p), which is zero only when p = q. Below: breast-cancer tumours (benign or
not) and three wine cultivars, against scikit-learn's log_loss and statsmodels.
"""


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
    import statsmodels.api as sm
    from scipy.special import expit, softmax
    from sklearn.metrics import log_loss

    import mlemap as mm

    draws = ctx.size(300, 60)
    identity = {}

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
    identity["Bernoulli NLL is n × the log loss"] = (reference, nll, "C0")

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
    identity["Categorical NLL is n × the softmax\ncross-entropy"] = (reference, nll, "C1")

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
    minimum = _minimized_at_the_truth(ctx, mm, y, K)
    _figures(ctx, identity, (ref, mine, ref_se), minimum)


def _minimized_at_the_truth(ctx, mm, wine_y, K):
    """Gibbs' inequality on real class frequencies: the log loss of a constant prediction p
    is H(q, p) = H(q) + KL(q || p), smallest at p = q; and the intercept-only categorical
    MLE (mm.fit) is the class frequencies."""
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from scipy.stats import entropy
    from sklearn.metrics import log_loss

    y = breast_cancer()[1]
    n = len(y)
    q = float(y.mean())
    grid = np.linspace(0.005, 0.995, 199)
    loss = np.array([log_loss(y, np.full(n, p), labels=[0, 1]) for p in grid])
    h_q = float(entropy([q, 1 - q]))
    kl = np.array([entropy([q, 1 - q], [p, 1 - p]) for p in grid])
    identity_err = float(np.max(np.abs(loss - (h_q + kl))))
    best = float(grid[np.argmin(loss)])
    at_q = float(log_loss(y, np.full(n, q), labels=[0, 1]))

    freq = np.bincount(wine_y, minlength=K) / len(wine_y)
    rand = ctx.rng.dirichlet(np.ones(K), size=ctx.size(2000, 500))
    excess = np.array([-(freq * np.log(p)).sum() for p in rand]) - float(entropy(freq))
    kl_rand = np.array([entropy(freq, p) for p in rand])
    model = mm.Model({"logits": mm.Param((K - 1,))},
                     lambda p, d: dist.Categorical(logits=jnp.concatenate(
                         [jnp.zeros(1), p["logits"]])).log_prob(d["y"]))
    est = mm.fit(model, {"y": jnp.asarray(wine_y)}, method="mle")
    fitted = np.exp(np.concatenate([[0.0], np.asarray(est.params["logits"])]))
    fitted /= fitted.sum()
    err_fit = rel_error(fitted, freq)
    for key, value in {"bernoulli.q": q, "bernoulli.entropy": h_q, "bernoulli.argmin_p": best,
                       "bernoulli.log_loss_at_q": at_q, "bernoulli.identity_max_abs_error":
                       identity_err, "categorical.frequencies": freq,
                       "categorical.min_excess_over_entropy": float(excess.min()),
                       "categorical.mle_probabilities": fitted,
                       "categorical.mle_rel_error": err_fit}.items():
        ctx.metric(f"minimum.{key}", value)
    tight = ctx.tol(1e-12, 1e-5)
    ctx.check(
        "Cross-entropy is minimized at the true probabilities: H(q, p) = H(q) + KL(q‖p) ≥ "
        "H(q), with equality only at p = q",
        evidence=(f"breast cancer, q = fraction benign = {q:.4f}: the log loss of predicting p "
                  f"for every tumour is smallest on a {len(grid)}-point grid at p = {best:.3f}, "
                  f"and at p = q it is {at_q:.6f} = H(q) = {h_q:.6f} (scipy entropy); "
                  f"|log loss − (H(q) + KL)| ≤ {identity_err:.1e} everywhere. Wine, q = class "
                  f"frequencies: {len(rand)} random p all pay more (min excess "
                  f"{excess.min():.2e} = min KL {kl_rand.min():.2e}); mm.fit's MLE of the class "
                  f"probabilities = q to {err_fit:.1e}"),
        tolerance=(f"grid argmin within one step of q; identity ≤ {tight:.0e}; every excess > 0 "
                   f"and equal to KL to {tight:.0e}; MLE = q to {ctx.tol(1e-8, 1e-4):.0e}"),
        passed=(abs(best - q) <= grid[1] - grid[0] and identity_err <= tight
                and abs(at_q - h_q) <= tight and bool(np.all(excess > 0))
                and float(np.max(np.abs(excess - kl_rand))) <= tight
                and bool(est.converged) and err_fit <= ctx.tol(1e-8, 1e-4)),
    )
    return {"grid": grid, "loss": loss, "q": q, "h_q": h_q}


def _figures(ctx, identity, estimates, minimum):
    fig, axes = panels(2, height=3.0)
    for ax, (title, (reference, nll, color)) in zip(axes, identity.items()):
        ax.plot(reference, nll, "o", ms=3.5, alpha=0.5, color=color,
                label="random coefficient vectors")
        lo, hi = min(reference.min(), nll.min()), max(reference.max(), nll.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="NLL = n · log loss")
        ax.set(xlabel="n · scikit-learn log_loss", ylabel="NLL (mlemap)")
        ax.set_title(title)
        ax.legend(loc="upper left")
    ctx.figure(fig, "cross_entropy",
               "At every parameter value the negative log-likelihood equals n times "
               "scikit-learn's log loss: the Bernoulli one on breast cancer (top), the "
               "categorical one on wine (bottom). Every point is on the diagonal.",
               alt="Two scatter plots of NLL against n times log loss; all points on the "
                   "diagonal line.")

    ref, mine, ref_se = estimates
    fig, (ax,) = panels(1, height=3.6)
    ax.errorbar(ref, mine, xerr=1.96 * ref_se, fmt="o", ms=4.5, alpha=0.8, capsize=2,
                label="a coefficient, ± 1.96 SE (statsmodels)")
    lim = [min(ref.min(), mine.min()) - 0.5, max(ref.max(), mine.max()) + 0.5]
    ax.plot(lim, lim, "k-", lw=0.8, label="mlemap = statsmodels")
    ax.set(xlabel="statsmodels Logit / MNLogit coefficient", ylabel="mlemap MLE")
    ax.set_title("The MLE (minimum cross-entropy) is\nstatsmodels' Logit and MNLogit")
    ax.legend(loc="lower right", fontsize=9)
    ctx.figure(fig, "mle",
               "The coefficients of both models, mlemap's MLE against statsmodels' Logit "
               "(breast cancer) and MNLogit (wine), with statsmodels' 95% intervals.",
               alt="Scatter of mlemap coefficients against statsmodels coefficients with "
                   "horizontal error bars; all points on the diagonal.")

    fig, (ax,) = panels(1, height=3.4)
    ax.plot(minimum["grid"], minimum["loss"], color="k",
            label="log loss of predicting p for every tumour")
    ax.axvline(minimum["q"], color="C2", ls="--",
               label=f"p = q = {minimum['q']:.3f}, the fraction benign")
    ax.axhline(minimum["h_q"], color="C2", lw=0.8)
    ax.plot([minimum["q"]], [minimum["h_q"]], "o", color="C2", ms=8)
    ax.annotate(f"minimum = entropy H(q) = {minimum['h_q']:.3f}", (minimum["q"], minimum["h_q"]),
                xytext=(0.08, 0.2), fontsize=10,
                arrowprops=dict(arrowstyle="->", color="C2"))
    ax.set(xlabel="predicted probability p (the same for every tumour)",
           ylabel="cross-entropy (nats)", ylim=(0, 2.6))
    ax.set_title("Cross-entropy is smallest at the\ntrue probability")
    ax.legend(loc="upper center")
    ctx.figure(fig, "minimum",
               "Breast cancer: the cross-entropy of a constant prediction p is H(q) + KL(q‖p), "
               "smallest where p equals the observed fraction of benign tumours q; there it "
               "is the entropy of q.",
               alt="A U-shaped curve of log loss against p, its minimum at the dashed line p = "
                   "q, touching the horizontal line at the entropy.")
