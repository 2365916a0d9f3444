"""Experiment 8: the lesson's quick-check numbers, recomputed with the library's own losses.

1. A classifier that always says 0.5 has a log loss of ln 2 ≈ 0.693 nats, whatever the labels.
2. The penalty for a confident mistake: predicting 0.99 for the wrong class against 0.6 for
   the wrong class. The lesson says "roughly 100x"; the ratio is -ln(0.01) / -ln(0.4) ≈ 5.
3. The gradient with respect to the logit of a confidently wrong prediction: cross-entropy's
   is p - y (about -1: it keeps learning), the squared error's on the probability is
   2 (p - y) p (1 - p) (about 0: it saturates).
"""

from __future__ import annotations

import math

import numpy as np


LESSON_RATIO = 100.0  # "roughly 100x"
P_WRONG_CONFIDENT = 0.99  # probability given to the wrong class
P_WRONG_HESITANT = 0.6


def run(ctx):
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
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
        f"Predicting {P_WRONG_CONFIDENT} for the wrong class costs about {ratio:.1f}x "
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

    # Figure: the two gradients against the probability given to the true class.
    grid = np.logspace(-5, np.log10(0.999), 300)
    zg = jnp.asarray(np.log(grid) - np.log1p(-grid))
    ce_g = np.abs(np.asarray(jax.vmap(jax.grad(ce))(zg)))
    mse_g = np.abs(np.asarray(jax.vmap(jax.grad(mse))(zg)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(grid, -np.log(grid), label="cross-entropy  −ln p")
    axes[0].plot(grid, (1 - grid) ** 2, label="squared error  (1 − p)²")
    axes[0].set(xscale="log", xlabel="probability given to the true class p",
                ylabel="loss", title="Loss of one prediction (y = 1)")
    axes[0].axvline(1 - P_WRONG_CONFIDENT, color="gray", ls=":")
    axes[0].axvline(1 - P_WRONG_HESITANT, color="gray", ls=":")
    axes[0].legend()
    axes[1].plot(grid, ce_g, label="cross-entropy")
    axes[1].plot(grid, mse_g, label="squared error")
    axes[1].set(xscale="log", yscale="log", xlabel="probability given to the true class p",
                ylabel="|dL / d logit|", title="Gradient with respect to the logit")
    axes[1].legend()
    ctx.figure(fig, "gradients",
               "Left: loss of a single prediction; dotted lines at p = 0.01 and 0.4. Right: "
               "the gradient with respect to the logit. Cross-entropy's stays near 1 for a "
               "confident mistake; the squared error's vanishes.")
