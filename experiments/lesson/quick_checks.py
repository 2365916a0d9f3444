"""Experiment 9: the lesson's quick-check numbers, recomputed with the library's own losses.

1. A classifier that always says 0.5 has a log loss of ln 2 ≈ 0.693 nats, whatever the labels.
2. The penalty for a confident mistake: predicting 0.99 for the wrong class against 0.6 for
   the wrong class. The lesson says "roughly 100x"; the ratio is -ln(0.01) / -ln(0.4) ≈ 5.
3. The gradient with respect to the logit of a confidently wrong prediction: cross-entropy's
   is p - y (about -1: it keeps learning), the squared error's on the probability is
   2 (p - y) p (1 - p) (about 0: it saturates).
4. The two ends of the log-loss scale: a perfect classifier scores 0, and the "random"
   classifier of "ln 2 ≈ 0.693" is the one that always says 0.5; one that draws its
   probability uniformly at random scores E[-ln U] = 1 nat.
"""

from __future__ import annotations

import math

import numpy as np


EXPLANATION = """
The lesson closes with numbers to check by hand. A classifier that always answers 0.5 pays
ln 2 ≈ 0.693 nats per example, whatever the labels; a perfect one pays 0; one that draws its
answer uniformly at random pays 1 nat on average, more than the coin. Log loss punishes
confident mistakes: predicting 0.99 for the wrong class costs −ln 0.01 nats, and unlike
squared error on the probability, its gradient does not vanish there, so a model that is
confidently wrong keeps learning.

One of the lesson's numbers is wrong: a confident mistake (0.99 on the wrong class) costs a
few times a hesitant one (0.6 on the wrong class), not "roughly 100x". The claims below
measure the ratio and say where the 100x may have come from.
"""

LESSON_RATIO = 100.0  # "roughly 100x"
P_WRONG_CONFIDENT = 0.99  # probability given to the wrong class
P_WRONG_HESITANT = 0.6


def run(ctx):
    import jax
    import jax.numpy as jnp
    import optax
    from sklearn.metrics import log_loss

    import mlemap as mm

    bernoulli = mm.families.bernoulli()
    tight = ctx.tol(1e-12, 1e-6)

    # 1. A coin-flip classifier.
    n = ctx.size(100_000, 10_000)
    y = ctx.rng.integers(0, 2, size=n).astype(float)
    ours = float(jnp.mean(bernoulli.loss(jnp.zeros(n), jnp.asarray(y))))
    sk = log_loss(y, np.full(n, 0.5), labels=[0, 1])
    ctx.metric("coin_flip.log_loss", ours)
    ctx.metric("coin_flip.sklearn_log_loss", sk)
    ctx.metric("coin_flip.ln2", math.log(2))
    ctx.check(
        "A classifier that always predicts 0.5 has log loss ln 2 ≈ 0.693, whatever the labels",
        evidence=(f"mean bernoulli loss at logit 0 on {n} random labels = {ours:.12f}; "
                  f"sklearn log_loss = {sk:.12f}; ln 2 = {math.log(2):.12f}"),
        tolerance=f"|loss − ln 2| ≤ {tight:.0e}; |ln 2 − 0.693| ≤ 5e-4 (the lesson's rounding)",
        passed=abs(ours - math.log(2)) <= tight and abs(sk - math.log(2)) <= tight
        and abs(math.log(2) - 0.693) <= 5e-4,
    )

    # 2. The price of a confident mistake: probabilities given to the true class.
    def loss_at(p_true):
        eta = jnp.log(p_true) - jnp.log1p(-p_true)
        return float(bernoulli.loss(jnp.asarray([eta]), jnp.asarray([1.0]))[0])

    confident = loss_at(1 - P_WRONG_CONFIDENT)
    hesitant = loss_at(1 - P_WRONG_HESITANT)
    correct = loss_at(P_WRONG_CONFIDENT)  # 0.99 for the right class
    ratio = confident / hesitant
    closed = math.log(1 - P_WRONG_CONFIDENT) / math.log(1 - P_WRONG_HESITANT)
    ctx.metric("confident_mistake.loss_099_wrong", confident)
    ctx.metric("confident_mistake.loss_06_wrong", hesitant)
    ctx.metric("confident_mistake.loss_099_right", correct)
    ctx.metric("confident_mistake.ratio", ratio)
    ctx.metric("confident_mistake.ratio_closed_form", closed)
    ctx.metric("confident_mistake.lesson_ratio", LESSON_RATIO)
    ctx.metric("confident_mistake.ratio_vs_confident_right", confident / correct)
    ctx.metric("confident_mistake.probability_ratio", (1 - P_WRONG_HESITANT) / (1 - P_WRONG_CONFIDENT))
    differs = abs(math.log(ratio / LESSON_RATIO)) > math.log(2)
    ctx.check(
        f"Predicting {P_WRONG_CONFIDENT} for the wrong class costs {ratio:.2f}x "
        f"the log loss of predicting {P_WRONG_HESITANT} for it (corrected; the lesson says "
        "'roughly 100x')",
        evidence=(f"−ln(0.01) = {confident:.4f} nats, −ln(0.4) = {hesitant:.4f} nats, ratio "
                  f"{ratio:.3f} (closed form {closed:.3f})"),
        tolerance=f"relative difference from the closed form ≤ {tight:.0e}",
        passed=abs(ratio - closed) <= tight * closed,
        correction=(
            f"The lesson's 'roughly 100x' is wrong: the ratio is {ratio:.2f}x "
            f"({confident:.2f} against {hesitant:.2f} nats). The ~100x figures nearby are "
            f"other ratios: the true class's probability drops {0.4 / 0.01:.0f}x (0.4 to "
            f"0.01), and the confident mistake costs {confident / correct:.0f}x a confident "
            f"correct answer (0.99 for the right class, {correct:.4f} nats)."
        ) if differs else None,
        corrected=f"{LESSON_RATIO:.0f}x is {ratio:.2f}x",
    )

    # 3. Gradients with respect to the logit, true label 1, probability p on the true class.
    def ce(z):
        return bernoulli.loss(z[None], jnp.ones(1))[0]

    def mse(z):
        return optax.losses.squared_error(jax.nn.sigmoid(z), 1.0)

    p = 1 - P_WRONG_CONFIDENT
    z = math.log(p) - math.log1p(-p)
    g_ce = float(jax.grad(ce)(jnp.asarray(z)))
    g_mse = float(jax.grad(mse)(jnp.asarray(z)))
    ctx.metric("gradient.p_true", p)
    ctx.metric("gradient.logit", z)
    ctx.metric("gradient.cross_entropy", g_ce)
    ctx.metric("gradient.squared_error", g_mse)
    ctx.metric("gradient.ratio", g_ce / g_mse)
    ctx.check(
        "Cross-entropy keeps learning: its gradient with respect to the logit is p − y, "
        "close to −1 for a confidently wrong prediction",
        evidence=f"p = {p:.2g}, y = 1: dL/dz = {g_ce:.6f} (p − y = {p - 1:.6f})",
        tolerance=f"|dL/dz − (p − y)| ≤ {tight:.0e} and |dL/dz| ≥ 0.9",
        passed=abs(g_ce - (p - 1)) <= tight and abs(g_ce) >= 0.9,
    )
    closed_mse = 2 * (p - 1) * p * (1 - p)
    ps = np.logspace(-6, -1, 6)
    zs = np.log(ps) - np.log1p(-ps)
    g_far = np.abs(np.asarray(jax.vmap(jax.grad(mse))(jnp.asarray(zs))))
    ctx.metric("gradient.squared_error_closed_form", closed_mse)
    ctx.metric("gradient.squared_error_at_p", {f"{q:g}": g for q, g in zip(ps, g_far)})
    ctx.check(
        "Squared error on the probability saturates: its gradient 2(p − y)p(1 − p) vanishes "
        "as the prediction becomes more confidently wrong",
        evidence=(f"p = {p:.2g}: dL/dz = {g_mse:.6f} ({abs(g_ce / g_mse):.0f}x smaller than "
                  f"cross-entropy's); at p = 1e-6 it is {g_far[0]:.1e}"),
        tolerance=(f"|dL/dz − 2(p−y)p(1−p)| ≤ {tight:.0e}; |dL/dz| decreasing as p → 0 "
                   "and < 0.05 at p = 0.01"),
        passed=abs(g_mse - closed_mse) <= tight and bool(np.all(np.diff(g_far) > 0))
        and abs(g_mse) < 0.05,
    )

    baselines = _ends_of_the_scale(ctx, bernoulli, tight)
    _figures(ctx, ce, mse, confident, hesitant, ratio, baselines)


def _ends_of_the_scale(ctx, bernoulli, tight):
    """A perfect classifier's log loss, and what "random" means in "ln 2 ≈ 0.693"."""
    import jax.numpy as jnp
    from scipy.integrate import quad
    from scipy.stats import bernoulli as scipy_bernoulli

    from lesson._common import breast_cancer

    y = breast_cancer()[1]
    # Probability 1 on every true label; + 0.0 turns the sum's -0.0 into 0.0.
    exact = float(-np.sum(scipy_bernoulli.logpmf(y, y))) + 0.0
    logits = np.array([10.0, 20.0, 40.0])
    ours = [float(jnp.mean(bernoulli.loss(jnp.asarray(z * (2 * y - 1)), jnp.asarray(y))))
            for z in logits]
    ctx.metric("perfect.scipy_log_loss", exact)
    ctx.metric("perfect.loss_at_logits", dict(zip(map(str, logits), ours)))
    ctx.check(
        "A perfect classifier, which gives probability 1 to every true label, has log loss 0",
        evidence=(f"breast cancer's {len(y)} labels: scipy −Σ log p(y | p = y) = {exact:g}; "
                  f"mlemap's mean loss at logits ±{logits[0]:g}, ±{logits[1]:g}, ±{logits[2]:g} "
                  f"on the right side: {ours[0]:.2e}, {ours[1]:.2e}, {ours[2]:.2e} (log(1 + "
                  f"e^−z) → 0)"),
        tolerance=f"scipy exactly 0; mlemap decreasing in z and ≤ {tight:.0e} at z = 40",
        passed=exact == 0.0 and ours[0] > ours[1] > ours[2] and ours[2] <= tight,
    )
    n = ctx.size(400_000, 100_000)
    labels = ctx.rng.integers(0, 2, size=n).astype(float)
    p = ctx.rng.random(n)
    loss = np.asarray(bernoulli.loss(jnp.asarray(np.log(p) - np.log1p(-p)), jnp.asarray(labels)))
    mean, se = float(loss.mean()), float(loss.std(ddof=1) / math.sqrt(n))
    integral, error = quad(lambda u: -math.log(u), 0.0, 1.0)
    z = (mean - 1.0) / se
    ctx.metric("random.uniform_p.mean_log_loss", mean)
    ctx.metric("random.uniform_p.standard_error", se)
    ctx.metric("random.integral_minus_log_u", integral)
    ctx.check(
        "The “random” classifier of “ln 2 ≈ 0.693” is one that always predicts 0.5; one that "
        "predicts a uniformly random probability has expected log loss E[−ln U] = 1 nat",
        evidence=(f"{n} random labels and probabilities p ~ U(0, 1): mean mlemap log loss "
                  f"{mean:.4f} ± {se:.4f} (z = {z:+.1f} against 1); scipy quad ∫₀¹ −ln u du = "
                  f"{integral:.12f}; always 0.5: ln 2 = {math.log(2):.4f}"),
        tolerance="|z| < 4; |∫ − 1| ≤ 1e-10",
        passed=abs(z) < 4 and abs(integral - 1.0) <= 1e-10,
    )
    return {"perfect": max(exact, 0.0), "coin": math.log(2), "uniform": mean,
            "uniform_se": se}


def _figures(ctx, ce, mse, confident, hesitant, ratio, baselines):
    import jax
    import jax.numpy as jnp

    from lesson._common import panels

    grid = np.logspace(-5, np.log10(0.999), 300)
    zg = jnp.asarray(np.log(grid) - np.log1p(-grid))
    ce_g = np.abs(np.asarray(jax.vmap(jax.grad(ce))(zg)))
    mse_g = np.abs(np.asarray(jax.vmap(jax.grad(mse))(zg)))
    fig, axes = panels(2, height=3.3, sharex=True)
    axes[0].plot(grid, -np.log(grid), label="cross-entropy  −ln p")
    axes[0].plot(grid, (1 - grid) ** 2, label="squared error  (1 − p)²")
    p_confident, p_hesitant = 1 - P_WRONG_CONFIDENT, 1 - P_WRONG_HESITANT
    axes[0].plot([p_confident, p_hesitant], [confident, hesitant], "o", color="C3", ms=7,
                 zorder=4)
    axes[0].annotate(f"0.99 on the wrong class: {confident:.2f}", (p_confident, confident),
                     xytext=(2.5e-3, 8.2), fontsize=10, arrowprops=dict(arrowstyle="->"))
    axes[0].annotate(f"0.6 on the wrong class: {hesitant:.2f}", (p_hesitant, hesitant),
                     xytext=(1.2e-4, 2.0), fontsize=10, arrowprops=dict(arrowstyle="->"))
    axes[0].text(0.98, 0.97, f"{confident:.2f} / {hesitant:.2f} = {ratio:.2f}×\n"
                 f"(the lesson: “roughly {LESSON_RATIO:.0f}×”)", transform=axes[0].transAxes,
                 ha="right", va="top", fontsize=11, fontweight="bold", color="C3")
    axes[0].set(xscale="log", ylabel="loss (nats)", ylim=(0, 13))
    axes[0].set_title(f"A confident mistake costs {ratio:.2f}× a hesitant one")
    axes[0].legend(loc="lower left", bbox_to_anchor=(0.0, 0.25), fontsize=9)
    axes[1].plot(grid, ce_g, label="cross-entropy: p − y")
    axes[1].plot(grid, mse_g, label="squared error: 2(p − y)p(1 − p)")
    axes[1].set(xscale="log", yscale="log", xlabel="probability given to the true class p",
                ylabel="|dL / d logit|")
    axes[1].set_title("Cross-entropy keeps learning when wrong;\nsquared error stalls",
                      fontsize=12)
    axes[1].legend(loc="lower right", fontsize=9)
    ctx.figure(fig, "gradients",
               f"Top: the loss of one prediction against the probability it gives the true "
               f"class; the red points are the lesson's two mistakes, {confident:.2f} and "
               f"{hesitant:.2f} nats, a ratio of {ratio:.2f}, not 100. Bottom: the gradient with "
               "respect to the logit: cross-entropy's stays near 1 for a confident mistake, "
               "the squared error's vanishes.",
               alt="Two stacked log-scale line charts: loss against p with the two mistakes "
                   f"marked and the ratio {ratio:.2f} written, and gradient magnitude against p "
                   "where the squared-error gradient falls towards zero.")

    fig, (ax,) = panels(1, height=2.8)
    rows = {"perfect": (baselines["perfect"], "C2"),
            "always 0.5": (baselines["coin"], "C0"),
            "random p ~ U(0, 1)": (baselines["uniform"], "C1"),
            "0.99 on the wrong\nclass, every time": (confident, "C3")}
    names = list(rows)
    ax.barh(range(len(rows)), [v for v, _ in rows.values()], color=[c for _, c in rows.values()],
            height=0.6)
    for i, (value, _) in enumerate(rows.values()):
        ax.text(value + 0.08, i, f"{value:.3f}" if value else "0", va="center", fontsize=11)
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set(xlabel="log loss per prediction (nats)", xlim=(0, confident * 1.22))
    ax.set_title("Log loss: 0 when perfect, ln 2 when\nalways 0.5, 1 nat for a random p")
    ax.grid(axis="y", visible=False)
    ctx.figure(fig, "baselines",
               "Log loss per prediction of four classifiers: perfect (0), always 0.5 (ln 2), a "
               f"uniformly random probability ({baselines['uniform']:.3f}, against E[−ln U] = "
               f"1), and a confident mistake ({confident:.2f}).",
               alt="A horizontal bar chart: zero for the perfect classifier, 0.693 for always "
                   "one half, about 1.0 for a uniformly random probability, 4.6 for a confident "
                   "mistake.")
