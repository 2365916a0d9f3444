"""Benchmark: mlemap against numpy, scikit-learn, scipy, NumPyro, BlackJAX and PyMC, side by side.

Every (case, engine) runs in its own process (``--worker``), so that no engine inherits another
one's threads, caches or compiled programs; each process warms up, then times ``--repeats``
calls; a case runs its engines one after the other, in a rotated order over ``rounds``, so that
they see the same machine load, and the table reports the median over every timed call and
ratios measured in this one run. The machine may be shared: only the ratios mean something.

Sections (``--only``; default all):

``grad``
    The gradient floor. One gradient of a logistic-regression log-likelihood, n = 1,000,000,
    d = 50, float32 and float64: mlemap's log-density (``jax.grad`` of ``log_density_fn``,
    jitted), the same formula written in raw JAX, and numpy's two matrix-vector products
    ``X.T @ (sigmoid(X @ w) - y)``; against one read of ``X`` (its bytes over the memory read
    bandwidth measured in the same process). Goal: mlemap within 1.2x of numpy.
``fit``
    MAP of an L2 logistic regression (C = 1, intercept unpenalized), n = 1e5 and 1e6, d = 50,
    on an easy design (independent N(0, 1) features) and a correlated one (equicorrelated,
    rho = 0.9: condition number ~450), against scikit-learn's ``lbfgs`` and ``newton-cholesky``
    and scipy's L-BFGS-B on the same mean loss + penalty, all to ``tol = 1e-6`` on the largest
    gradient entry. Cold (first call in a fresh process: for mlemap, trace + compile) and warm
    separately; the coefficients are checked against newton-cholesky's; the passes over ``X``
    each method makes are counted (forward ``X @ w`` and backward ``X.T @ r`` products).
``batch``
    ``B`` small fits (n = 200, d = 10; ridge and logistic) as one vmapped ``mm.fit(...,
    batch="data")`` against a loop of scikit-learn fits and a loop of ``mm.fit``, and the batch
    size from which the vmapped program's compilation pays off.
``nuts``
    NUTS on a logistic regression (n = 2,000, d = 50, beta ~ N(0, 1), 4 chains x (1000 warm-up
    + 1000 draws), target acceptance 0.8, diagonal mass matrix, maximum tree depth 10): min bulk
    ESS over the coefficients per second (warm call) and per gradient evaluation (leapfrog
    steps of the recorded draws) for ``mm.sample`` (float64 and float32), NumPyro's model-based
    NUTS (sequential and vectorized chains), BlackJAX (window adaptation + NUTS, chains one after
    the other, one jitted program) and PyMC's default ``pm.sample``.
``cold``
    The first call in a fresh process of ``mm.fit`` (n = 10,000, d = 50) and ``mm.sample``
    (the NUTS problem, 200 + 200 iterations): without the persistent compilation cache, with an
    empty one (filled by the call), and with the filled one.

Usage::

    python experiments/benchmark.py                       # everything: 15-25 min on 2 cores
    python experiments/benchmark.py --quick               # small sizes: ~3 min
    python experiments/benchmark.py --only grad,fit --repeats 7 --out results/b.json
    python experiments/benchmark.py --worker fit mlemap --params '{"n": 1000, ...}'

Writes ``--out`` (JSON: every measurement, the tables, the machine) and, with ``--markdown``,
the tables as markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
RESULT_PREFIX = "RESULT "
SKLEARN_FTOL = 64 * 2.220446049250313e-16  # scikit-learn's lbfgs: scipy's ftol = 64 eps


# ============================================================================================
# Shared: data, timing
# ============================================================================================


def logistic_data(n, d, design="easy", seed=0, dtype="float64", intercept=0.5, scale=1.0):
    """X (n, d), y (n,) from a logistic regression; the same numbers for every dtype.

    ``design="easy"``: independent N(0, 1) features. ``"correlated"``: equicorrelated,
    ``x = sqrt(1 - rho) z + sqrt(rho) f`` with one shared factor ``f`` per row, rho = 0.9
    (covariance condition number 1 + d rho / (1 - rho) ~ 450 for d = 50).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if design == "correlated":
        rho = 0.9
        X *= np.sqrt(1 - rho)
        X += np.sqrt(rho) * rng.standard_normal((n, 1))
    elif design != "easy":
        raise ValueError(f"unknown design {design!r}")
    w = scale * rng.standard_normal(d) / np.sqrt(d)
    eta = X @ w + intercept
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    return X.astype(dtype, copy=False), y.astype(dtype), w


def timed(fn, repeats, warmup=1):
    """Median-ready list of ``repeats`` wall-clock times of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def first_call(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def configure_jax(params):
    """float64 or float32, and the persistent compilation cache, before any JAX computation."""
    import jax

    jax.config.update("jax_enable_x64", params.get("dtype", "float64") == "float64")
    cache = params.get("cache_dir")
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return jax


def block(x):
    import jax

    return jax.block_until_ready(x)


# ============================================================================================
# Workers: one engine, one case, one process. Each returns a dict (printed as one JSON line).
# ============================================================================================

# --------------------------------------------------------------------------------------------
# 1. The gradient floor
# --------------------------------------------------------------------------------------------


def read_bandwidth(X, repeats=5):
    """Bytes per second of reading ``X``: the best of a one-thread sum, a sum on every core
    (threads over row blocks; numpy releases the GIL) and a copy (read + write counted)."""
    import concurrent.futures

    import numpy as np

    rates = {}
    rates["sum_1_thread"] = X.nbytes / min(timed(lambda: X.sum(), repeats))
    k = os.cpu_count() or 1
    blocks = np.array_split(X, k)
    with concurrent.futures.ThreadPoolExecutor(k) as pool:
        rates[f"sum_{k}_threads"] = X.nbytes / min(timed(
            lambda: list(pool.map(lambda b: b.sum(), blocks)), repeats))
    dst = np.empty_like(X)
    rates["copy_read_plus_write"] = 2 * X.nbytes / min(timed(lambda: np.copyto(dst, X), repeats))
    del dst
    return max(rates.values()), rates


def worker_grad(engine, params, repeats):
    import numpy as np

    n, d, dtype = params["n"], params["d"], params["dtype"]
    X, y, w_true = logistic_data(n, d, seed=params["seed"], dtype=dtype, intercept=0.0)
    w = (0.5 * w_true).astype(dtype)
    out = {"x_bytes": int(X.nbytes)}
    if engine == "numpy":
        def grad():
            return X.T @ (1.0 / (1.0 + np.exp(-(X @ w))) - y)

        times = timed(grad, repeats, warmup=2)
        g = grad()
        bandwidth, rates = read_bandwidth(X)
        out.update(bandwidth_bytes_per_s=bandwidth, bandwidth_by_method=rates,
                   one_read_s=X.nbytes / bandwidth)
    else:
        jax = configure_jax(params)
        import jax.numpy as jnp

        data = {"X": jnp.asarray(X), "y": jnp.asarray(y)}
        wj = jnp.asarray(w)
        if engine == "mlemap":
            import mlemap as mm

            family = mm.families.bernoulli()  # what mm.glm uses
            model = mm.Model(
                {"beta": mm.Param((d,))},
                lambda p, data: family.log_prob(data["X"] @ p["beta"], data["y"]),
            )
            # The gradient of the log-likelihood is X.T (y - sigmoid(X w)): minus numpy's.
            grad_fn = jax.jit(jax.grad(mm.log_density_fn(model, prior=False)))

            def grad():
                return block(grad_fn(wj, data))

            sign = -1.0
        elif engine in ("jax", "jax-XT"):
            # "jax": the residual times X, as autodiff writes it. "jax-XT": numpy's formula
            # literally; XLA then materializes X.T (a transposed copy of X) on every call.
            if engine == "jax":
                raw = jax.jit(lambda w, X, y: (jax.nn.sigmoid(X @ w) - y) @ X)
            else:
                raw = jax.jit(lambda w, X, y: X.T @ (jax.nn.sigmoid(X @ w) - y))

            def grad():
                return block(raw(wj, data["X"], data["y"]))

            sign = 1.0
        else:
            raise ValueError(engine)
        cold, _ = first_call(grad)
        times = timed(grad, repeats, warmup=2)
        g = sign * np.asarray(grad())
        out["cold_s"] = cold
    ref = X.astype(np.float64).T @ (1 / (1 + np.exp(-(X.astype(np.float64) @ w))) - y)
    out.update(times=times, grad_rel_error=float(np.max(np.abs(g - ref)) / np.max(np.abs(ref))))
    return out


# --------------------------------------------------------------------------------------------
# 2. MAP fit
# --------------------------------------------------------------------------------------------


def _count_sklearn_passes(fit_once):
    """Run ``fit_once`` with scikit-learn's LinearModelLoss methods counted."""
    from sklearn.linear_model import _linear_loss

    cls = _linear_loss.LinearModelLoss
    counts = {"forward": 0, "backward": 0, "hessian": 0}
    names = {"weight_intercept_raw": ("forward",), "loss_gradient": ("backward",),
             "gradient": ("backward",), "gradient_hessian": ("backward", "hessian")}
    originals = {name: getattr(cls, name) for name in names}

    def wrap(name, fn):
        def counted(*args, **kwargs):
            for key in names[name]:
                counts[key] += 1
            return fn(*args, **kwargs)
        return counted

    for name, fn in originals.items():
        setattr(cls, name, wrap(name, fn))
    try:
        fit_once()
    finally:
        for name, fn in originals.items():
            setattr(cls, name, fn)
    return counts


def worker_fit(engine, params, repeats):
    import warnings

    import numpy as np

    n, d, C, tol = params["n"], params["d"], params["C"], params["tol"]
    dtype = "float32" if engine == "mlemap-f32" else "float64"
    X, y, _ = logistic_data(n, d, params["design"], seed=params["seed"])
    out = {}
    if engine in ("mlemap", "mlemap-f32"):
        jax = configure_jax(dict(params, dtype=dtype))
        import jax.numpy as jnp

        import mlemap as mm

        Xd, yd = X.astype(dtype), y.astype(dtype)
        model, data = mm.glm(Xd, yd, family=mm.families.bernoulli(),
                             prior=mm.priors.from_logistic(C))
        rtol = SKLEARN_FTOL if dtype == "float64" else None

        def run():
            est = mm.fit(model, data, tol=tol, rtol=rtol)
            jax.block_until_ready(est.params)
            return est

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a float32 fit that stops short is reported below
            cold, est = first_call(run)  # trace + compile + run; also the warm-up
            times = timed(run, repeats, warmup=0)
        coef = np.asarray(est.params["beta"], dtype=float)
        intercept = float(est.params["intercept"])
        out.update(steps=int(est.num_steps), converged=bool(est.converged),
                   grad_norm=float(est.grad_norm))
        if params.get("count_passes", True):
            out["passes"] = _count_mlemap_passes(mm, jax, jnp, Xd, yd, C, tol, rtol)
    elif engine.startswith("sklearn"):
        from sklearn.linear_model import LogisticRegression

        solver = engine.split("-", 1)[1]

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return LogisticRegression(C=C, solver=solver, tol=tol, max_iter=10_000).fit(X, y)

        cold, sk = first_call(run)
        times = timed(run, repeats, warmup=0)
        coef, intercept = sk.coef_[0], float(sk.intercept_[0])
        out["steps"] = int(sk.n_iter_[0])
        out["passes"] = _count_sklearn_passes(run)
    elif engine == "scipy-lbfgsb":
        import scipy.optimize

        def objective(theta):
            w, b = theta[:-1], theta[-1]
            eta = X @ w + b
            loss = np.mean(np.logaddexp(0.0, eta) - y * eta) + 0.5 / (C * n) * (w @ w)
            r = (1.0 / (1.0 + np.exp(-eta)) - y) / n
            grad = np.empty_like(theta)
            grad[:-1] = X.T @ r + w / (C * n)
            grad[-1] = r.sum()
            return loss, grad

        def run():
            return scipy.optimize.minimize(
                objective, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                options={"maxiter": 15_000, "maxls": 50, "gtol": tol, "ftol": SKLEARN_FTOL})

        cold, res = first_call(run)
        times = timed(run, repeats, warmup=0)
        coef, intercept = res.x[:-1], float(res.x[-1])
        out.update(steps=int(res.nit), converged=bool(res.success),
                   passes={"forward": int(res.nfev), "backward": int(res.nfev), "hessian": 0})
    else:
        raise ValueError(engine)
    out.update(cold_s=cold, times=times, coef=[float(c) for c in coef], intercept=intercept)
    return out


def _count_mlemap_passes(mm, jax, jnp, X, y, C, tol, rtol):
    """Passes over X in one fit of the same problem (a separate, untimed fit).

    The linear predictor goes through an identity with a custom JVP: its plain call ticks
    ``value_only`` (a forward product ``X @ w`` alone), its JVP rule ticks ``differentiated``
    (an evaluation whose gradient is taken: ``X @ w`` then ``r @ X``). Hessians (forward over
    reverse, e.g. fit's uniqueness check) count as one differentiated evaluation, though they
    push ``dim`` tangents through ``X`` (as matrix-matrix products).
    """
    import warnings

    counts = {"value_only": 0, "differentiated": 0}

    def tick(key):
        def f(_):
            counts[key] += 1
        return f

    @jax.custom_jvp
    def counted(eta):
        jax.debug.callback(tick("value_only"), eta[0])
        return eta

    @counted.defjvp
    def counted_jvp(primals, tangents):
        jax.debug.callback(tick("differentiated"), primals[0][0])
        return primals[0], tangents[0]

    model, data = mm.glm(X, y, family=mm.families.bernoulli(), prior=mm.priors.from_logistic(C))
    family = mm.families.bernoulli()
    probe = mm.Model(
        model.params,
        lambda p, data: family.log_prob(counted(data["X"] @ p["beta"] + p["intercept"]),
                                        data["y"]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jax.block_until_ready(mm.fit(probe, data, tol=tol, rtol=rtol).params)
    jax.effects_barrier()
    return {"forward": counts["value_only"] + counts["differentiated"],
            "backward": counts["differentiated"], "hessian": 0}


# --------------------------------------------------------------------------------------------
# 3. Batched fits
# --------------------------------------------------------------------------------------------


def batch_problems(kind, B, n, d, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, n, d))
    w = rng.normal(size=(B, d))
    eta = np.einsum("bnd,bd->bn", X, w)
    if kind == "ridge":
        y = eta + rng.normal(size=(B, n))
    else:
        y = (rng.uniform(size=(B, n)) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y


def worker_batch(engine, params, repeats):
    import warnings

    import numpy as np

    kind, B, n, d, tol = params["kind"], params["B"], params["n"], params["d"], params["tol"]
    X, y = batch_problems(kind, B, n, d, params["seed"])
    out = {}
    if engine.startswith("mlemap"):
        jax = configure_jax(params)
        import jax.numpy as jnp

        import mlemap as mm

        if kind == "ridge":
            family, prior = mm.families.gaussian(sigma=1.0), mm.priors.from_ridge(1.0)
        else:
            family, prior = mm.families.bernoulli(), mm.priors.from_logistic(1.0)
        model, _ = mm.glm(X[0], y[0], family=family, prior=prior)
        if engine == "mlemap-vmap":
            data = {"X": jnp.asarray(X), "y": jnp.asarray(y)}

            def run():
                est = mm.fit(model, data, batch="data", tol=tol, rtol=SKLEARN_FTOL)
                jax.block_until_ready(est.params)  # not the 2B status and message leaves
                return est

            cold, est = first_call(run)
            times = timed(run, repeats)
            out.update(cold_s=cold, times=times, all_converged=bool(np.all(est.converged)),
                       coef_first=[float(c) for c in np.asarray(est.params["beta"])[0]])
        else:  # a Python loop of single fits: one compile, then B calls
            datasets = [{"X": jnp.asarray(X[b]), "y": jnp.asarray(y[b])} for b in range(B)]

            def one(b):
                est = mm.fit(model, datasets[b], tol=tol, rtol=SKLEARN_FTOL)
                jax.block_until_ready(est.params)  # not the 2B status and message leaves
                return est

            cold, _ = first_call(lambda: one(0))
            times = timed(lambda: [one(b) for b in range(B)], repeats, warmup=0)
            out.update(cold_s=cold, times=times)
    elif engine == "sklearn-loop":
        from sklearn.linear_model import LogisticRegression, Ridge

        def one(b):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if kind == "ridge":
                    return Ridge(alpha=1.0).fit(X[b], y[b]).coef_
                return LogisticRegression(C=1.0, tol=tol, max_iter=10_000).fit(X[b], y[b]).coef_[0]

        times = timed(lambda: [one(b) for b in range(B)], repeats)
        out.update(times=times, coef_first=[float(c) for c in one(0)])
    else:
        raise ValueError(engine)
    return out


# --------------------------------------------------------------------------------------------
# 4. NUTS
# --------------------------------------------------------------------------------------------


def nuts_data(params):
    X, y, _ = logistic_data(params["n"], params["d"], seed=params["seed"], intercept=0.0,
                            scale=params.get("scale", 1.0))
    return X, y


def min_bulk_ess(draws):
    """Bulk ESS of draws (chain, draw, d), minimum over the coefficients."""
    import arviz_stats
    import numpy as np

    return float(np.min(arviz_stats.ess(np.asarray(draws, dtype=float), method="bulk")))


def worker_nuts(engine, params, repeats):
    import numpy as np

    import importlib.util

    settings = params["settings"]
    for name in ("blackjax", "pymc"):
        if engine == name and importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"{name} is not installed: pip install -e '.[bench]'")
    X, y = nuts_data(params)
    runs = []
    if engine == "pymc":
        call = _pymc_runner(X, y, settings)
    else:
        dtype = "float32" if engine.endswith("f32") else "float64"
        jax = configure_jax(dict(params, dtype=dtype))
        X, y = X.astype(dtype), y.astype(dtype)
        if engine.startswith("mlemap"):
            call = _mlemap_runner(X, y, settings, params.get("chain_method"))
        elif engine.startswith("numpyro"):
            call = _numpyro_runner(X, y, settings, engine.split("-", 1)[1])
        elif engine == "blackjax":
            call = _blackjax_runner(X, y, settings)
        else:
            raise ValueError(engine)
        del jax
    compiled = [0.0]
    if engine != "pymc":  # XLA compile seconds inside each call (NumPyro's MCMC recompiles)
        import jax.monitoring

        def on_duration(event, duration, **_):
            if event == "/jax/core/compile/backend_compile_duration":
                compiled[0] += duration

        jax.monitoring.register_event_duration_secs_listener(on_duration)
    # Call 0 is the cold one (compiles); the others are timed warm calls with new seeds.
    for seed in range(1 + repeats):
        compiled[0] = 0.0
        start = time.perf_counter()
        draws, steps, divergences, extra = call(seed)
        seconds = time.perf_counter() - start
        runs.append({"seconds": seconds, "xla_compile_s": compiled[0],
                     "min_ess_bulk": min_bulk_ess(draws),
                     "gradients": int(np.sum(steps)), "divergences": int(divergences),
                     "mean": [float(v) for v in np.asarray(draws).mean(axis=(0, 1))], **extra})
    warm = runs[1:]
    pick = lambda key: statistics.median(r[key] for r in warm)  # noqa: E731
    return {
        "cold_s": runs[0]["seconds"],
        "times": [r["seconds"] for r in warm],
        "min_ess_bulk": pick("min_ess_bulk"),
        "gradients": pick("gradients"),
        "divergences": [r["divergences"] for r in runs],
        "ess_per_s": statistics.median(r["min_ess_bulk"] / r["seconds"] for r in warm),
        "warm_xla_compile_s": statistics.median(r["xla_compile_s"] for r in warm),
        "ess_per_s_without_compile": statistics.median(
            r["min_ess_bulk"] / (r["seconds"] - r["xla_compile_s"]) for r in warm),
        "ess_per_gradient": statistics.median(r["min_ess_bulk"] / r["gradients"] for r in warm),
        "posterior_mean": warm[-1]["mean"],
        "runs": runs,
    }


def _mlemap_runner(X, y, settings, chain_method):
    import warnings

    import numpyro.distributions as dist

    import mlemap as mm

    model = mm.Model(
        {"beta": mm.Param((X.shape[1],), prior=dist.Normal(0.0, 1.0))},
        lambda p, data: dist.Bernoulli(logits=data["X"] @ p["beta"]).log_prob(data["y"]),
    )
    data = {"X": X, "y": y}

    def call(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # diagnostics are in the result
            dt = mm.sample(model, data, seed=seed, init="uniform", chain_method=chain_method,
                           progress_bar=False, num_warmup=settings["num_warmup"],
                           num_samples=settings["num_samples"],
                           num_chains=settings["num_chains"],
                           target_accept=settings["target_accept"],
                           max_tree_depth=settings["max_tree_depth"])
        stats = dt.sample_stats
        return (dt.posterior["beta"].values, stats["n_steps"].values,
                int(stats["diverging"].values.sum()),
                {"sampling_s": float(dt.attrs["sampling_seconds"]),
                 "compile_s": float(dt.attrs["compile_seconds"]),
                 "chain_method": dt.attrs["chain_method"]})

    return call


def _numpyro_runner(X, y, settings, chain_method):
    import warnings

    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, init_to_uniform

    def model(X, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

    kernel = NUTS(model, target_accept_prob=settings["target_accept"], dense_mass=False,
                  max_tree_depth=settings["max_tree_depth"], init_strategy=init_to_uniform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # jit_model_args: the data is an argument of the compiled program, so that a second
        # run on data of the same shapes does not compile again (as mm.sample does).
        mcmc = MCMC(kernel, num_warmup=settings["num_warmup"],
                    num_samples=settings["num_samples"], num_chains=settings["num_chains"],
                    chain_method=chain_method, progress_bar=False, jit_model_args=True)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def call(seed):
        mcmc.run(jax.random.key(seed), Xj, yj, extra_fields=("num_steps", "diverging"))
        beta = jax.block_until_ready(mcmc.get_samples(group_by_chain=True)["beta"])
        extra = mcmc.get_extra_fields(group_by_chain=True)
        return (beta, extra["num_steps"], int(extra["diverging"].sum()),
                {"chain_method": chain_method})

    return call


def _blackjax_runner(X, y, settings):
    import blackjax
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist

    d = X.shape[1]

    def logdensity(beta, X, y):
        return (jnp.sum(dist.Bernoulli(logits=X @ beta).log_prob(y))
                + jnp.sum(dist.Normal(0.0, 1.0).log_prob(beta)))

    @jax.jit
    def one_chain(key, position, X, y):
        """Window adaptation (Stan's) then NUTS draws, one chain, the data an argument."""
        logdensity_fn = lambda beta: logdensity(beta, X, y)  # noqa: E731
        warm_key, draw_key = jax.random.split(key)
        adapt = blackjax.window_adaptation(
            blackjax.nuts, logdensity_fn, is_mass_matrix_diagonal=True,
            target_acceptance_rate=settings["target_accept"],
            max_num_doublings=settings["max_tree_depth"])
        (state, tuned), _ = adapt.run(warm_key, position, num_steps=settings["num_warmup"])
        # ``tuned``: step_size, inverse_mass_matrix and the max_num_doublings passed above.
        step = blackjax.nuts(logdensity_fn, **tuned).step

        def body(state, key):
            state, info = step(key, state)
            return state, (state.position, info.num_integration_steps, info.is_divergent)

        keys = jax.random.split(draw_key, settings["num_samples"])
        _, (draws, steps, divergent) = jax.lax.scan(body, state, keys)
        return draws, steps, divergent

    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def call(seed):
        init_key, chain_key = jax.random.split(jax.random.key(seed))
        starts = jax.random.uniform(init_key, (settings["num_chains"], d), Xj.dtype, -2.0, 2.0)
        outs = [jax.block_until_ready(one_chain(k, s, Xj, yj))
                for k, s in zip(jax.random.split(chain_key, settings["num_chains"]), starts)]
        draws, steps, divergent = (jnp.stack(parts) for parts in zip(*outs))
        return draws, steps, int(divergent.sum()), {"chain_method": "sequential"}

    return call


def _pymc_runner(X, y, settings):
    import logging
    import warnings

    import numpy as np
    import pymc as pm

    logging.getLogger("pymc").setLevel(logging.ERROR)
    with pm.Model():
        beta = pm.Normal("beta", 0.0, 1.0, shape=X.shape[1])
        pm.Bernoulli("y", logit_p=pm.math.dot(X, beta), observed=y)
        model = pm.modelcontext(None)

    def call(seed):
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(draws=settings["num_samples"], tune=settings["num_warmup"],
                              chains=settings["num_chains"],
                              target_accept=settings["target_accept"], random_seed=seed,
                              progressbar=False, compute_convergence_checks=False)
        stats = idata["sample_stats"]
        return (np.asarray(idata["posterior"]["beta"]), np.asarray(stats["n_steps"]),
                int(np.asarray(stats["diverging"]).sum()),
                {"cores": min(4, os.cpu_count() or 1),
                 "sampling_s": float(idata["posterior"].attrs.get("sampling_time", np.nan))})

    return call


# --------------------------------------------------------------------------------------------
# 5. Cold start
# --------------------------------------------------------------------------------------------


def worker_cold(engine, params, repeats):
    import warnings

    start = time.perf_counter()
    jax = configure_jax(params)
    import jax.monitoring

    import mlemap as mm

    import_s = time.perf_counter() - start
    events = {"hits": 0, "misses": 0, "compiles": 0, "compile_s": 0.0}

    def on_event(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            events["hits"] += 1
        elif event == "/jax/compilation_cache/cache_misses":
            events["misses"] += 1

    def on_duration(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            events["compiles"] += 1
            events["compile_s"] += duration

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    if engine == "fit":
        X, y, _ = logistic_data(params["n"], params["d"], seed=params["seed"])
        model, data = mm.glm(X, y, family=mm.families.bernoulli(),
                             prior=mm.priors.from_logistic(1.0))

        def run():
            return jax.block_until_ready(mm.fit(model, data, tol=1e-6).params)
    elif engine == "sample":
        X, y = nuts_data(params)
        call = _mlemap_runner(X, y, params["settings"], None)

        def run():
            return call(0)
    else:
        raise ValueError(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, _ = first_call(run)
        first_events = dict(events)
        times = timed(run, max(1, repeats), warmup=0)
    return {"import_s": import_s, "cold_s": first, "times": times,
            "first_call_events": first_events}


WORKERS = {"grad": worker_grad, "fit": worker_fit, "batch": worker_batch, "nuts": worker_nuts,
           "cold": worker_cold}


# ============================================================================================
# Driver
# ============================================================================================


def run_worker(section, engine, params, repeats, env_extra=None, timeout=1800):
    """Run one worker process; return its dict (or ``{"error": ...}``) plus ``wall_s``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JAX_COMPILATION_CACHE") and k != "JAX_ENABLE_X64"}
    env.update(env_extra or {})
    cmd = [sys.executable, str(HERE), "--worker", section, engine, "--params",
           json.dumps(params), "--repeats", str(repeats)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "wall_s": timeout}
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2500:]
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": wall}
    out = json.loads(lines[-1][len(RESULT_PREFIX):])
    out["wall_s"] = wall
    return out


def run_case(section, engines, params, repeats, rounds, log):
    """Each engine ``rounds`` times, in a rotated order; the times of all rounds pooled."""
    pooled = {e: [] for e in engines}
    for r in range(rounds):
        order = engines[r % len(engines):] + engines[: r % len(engines)]
        for engine in order:
            out = run_worker(section, engine, params, repeats)
            pooled[engine].append(out)
            status = out.get("error", "").splitlines()[-1:] if "error" in out else ""
            med = (f"median {statistics.median(out['times']):.4g} s"
                   if out.get("times") else "")
            log(f"  [{section}] {engine:<24} round {r + 1}/{rounds}: {med} "
                f"(process {out['wall_s']:.1f} s) {status}")
    merged = {}
    for engine, outs in pooled.items():
        good = [o for o in outs if "error" not in o]
        if not good:
            merged[engine] = outs[-1]
            continue
        m = dict(good[0])
        m["times"] = [t for o in good for t in o.get("times", [])]
        m["median_s"] = statistics.median(m["times"]) if m["times"] else None
        if "cold_s" in m:
            m["cold_s"] = statistics.median(o["cold_s"] for o in good)
        m["rounds"] = len(good)
        merged[engine] = m
    return merged


def fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


GRAD_ENGINES = ["numpy", "mlemap", "jax", "jax-XT"]


def section_grad(cfg, log):
    results, rows = {}, []
    for dtype in cfg.grad_dtypes:
        params = {"n": cfg.grad_n, "d": 50, "dtype": dtype, "seed": cfg.seed}
        log(f"grad: n={params['n']} d=50 {dtype}")
        res = run_case("grad", GRAD_ENGINES[:-1], params, cfg.grad_repeats, cfg.grad_rounds, log)
        # numpy's formula written literally in JAX: one round is enough to show the transpose.
        res.update(run_case("grad", GRAD_ENGINES[-1:], params, cfg.grad_repeats, 1, log))
        results[dtype] = {"params": params, "engines": res}
        numpy_s = res["numpy"].get("median_s")
        one_read = res["numpy"].get("one_read_s")
        for engine in GRAD_ENGINES:
            r = res[engine]
            s = r.get("median_s")
            rows.append([dtype, engine, None if s is None else s * 1e3,
                         None if s is None or numpy_s is None else s / numpy_s,
                         None if s is None or one_read is None else s / one_read,
                         r.get("grad_rel_error", r.get("error", "")[:40])])
        results[dtype]["one_read_s"] = one_read
        results[dtype]["bandwidth_GB_per_s"] = (res["numpy"].get("bandwidth_bytes_per_s", 0)
                                                / 1e9)
        rows.append([dtype, "one read of X", None if one_read is None else one_read * 1e3,
                     None if one_read is None or numpy_s is None else one_read / numpy_s, 1.0,
                     f"{results[dtype]['bandwidth_GB_per_s']:.1f} GB/s"])
    md = table(["dtype", "engine", "ms", "/ numpy", "/ one read of X", "rel. error / note"],
               rows)
    return results, md


FIT_ENGINES = ["mlemap", "sklearn-lbfgs", "sklearn-newton-cholesky", "scipy-lbfgsb"]


def section_fit(cfg, log):
    results, rows = {}, []
    for n in cfg.fit_ns:
        for design in cfg.fit_designs:
            params = {"n": n, "d": 50, "design": design, "C": 1.0, "tol": 1e-6,
                      "seed": cfg.seed, "count_passes": not cfg.quick}
            engines = FIT_ENGINES + (["mlemap-f32"] if cfg.fit_f32 and n == min(cfg.fit_ns)
                                     else [])
            log(f"fit: n={n} d=50 {design}")
            repeats = cfg.repeats if n <= 100_000 else min(cfg.repeats, 2)  # 1e6: ~20 s a fit
            res = run_case("fit", engines, params, repeats, cfg.rounds, log)
            ref = res["sklearn-newton-cholesky"]
            key = f"n={n} {design}"
            results[key] = {"params": params, "engines": res}
            base = res["sklearn-lbfgs"].get("median_s")
            for engine in engines:
                r = res[engine]
                if "error" in r:
                    rows.append([key, engine, r["error"][:60]] + [None] * 6)
                    continue
                diff = None
                if "coef" in ref and "coef" in r:
                    a, b = r["coef"], ref["coef"]
                    diff = max(abs(x - z) for x, z in zip(a, b)) / max(abs(z) for z in b)
                p = r.get("passes", {})
                passes = p.get("forward", 0) + p.get("backward", 0)
                r["passes_over_X"] = passes
                rows.append([key, engine, r["median_s"], r["cold_s"],
                             None if base is None else r["median_s"] / base, r.get("steps"),
                             f"{passes}" + (f" + {p['hessian']} Hessian" if p.get("hessian")
                                            else ""),
                             diff])
    md = table(["case", "engine", "warm s", "cold s", "warm / sklearn lbfgs", "iterations",
                "passes over X", "coef diff vs newton-cholesky"], rows)
    return results, md


def section_batch(cfg, log):
    results, rows, summary = {}, [], []
    for kind in cfg.batch_kinds:
        base = {"kind": kind, "n": 200, "d": 10, "tol": 1e-6, "seed": cfg.seed}
        loop_B = min(cfg.batch_sizes[-1], 100 if kind == "logistic" else 1000,
                     20 if cfg.quick else 1000)
        log(f"batch: {kind} loops of {loop_B} fits")
        loops = run_case("batch", ["sklearn-loop", "mlemap-loop"], dict(base, B=loop_B),
                         cfg.repeats, cfg.rounds, log)
        per_fit = {e: (loops[e]["median_s"] / loop_B if loops[e].get("median_s") else None)
                   for e in loops}
        results[kind] = {"loops": loops, "loop_B": loop_B, "per_fit_s": per_fit, "vmap": {}}
        for B in cfg.batch_sizes:
            log(f"batch: {kind} B={B} vmapped")
            res = run_case("batch", ["mlemap-vmap"], dict(base, B=B), cfg.repeats, cfg.rounds,
                           log)
            v = res["mlemap-vmap"]
            results[kind]["vmap"][B] = v
            if "error" in v:
                rows.append([kind, B, v["error"][:60]] + [None] * 5)
                continue
            sk = per_fit["sklearn-loop"] * B
            ml = per_fit["mlemap-loop"] * B
            rows.append([kind, B, v["median_s"], v["cold_s"], sk, ml, sk / v["median_s"],
                         sk / v["cold_s"]])
        # Break-even: compile + B * t_vmap = B * t_sklearn  (t per fit, warm).
        vm = results[kind]["vmap"][cfg.batch_sizes[-1]]
        if "error" not in vm:
            t_vmap = vm["median_s"] / cfg.batch_sizes[-1]
            compile_s = vm["cold_s"] - vm["median_s"]
            t_sk = per_fit["sklearn-loop"]
            be = compile_s / (t_sk - t_vmap) if t_sk > t_vmap else None
            first = next((B for B in cfg.batch_sizes
                          if "error" not in results[kind]["vmap"][B]
                          and results[kind]["vmap"][B]["cold_s"] < t_sk * B), None)
            results[kind]["break_even_B_estimate"] = be
            results[kind]["first_measured_B_where_cold_vmap_beats_sklearn_loop"] = first
            results[kind]["compile_s_at_largest_B"] = compile_s
            summary.append(f"- {kind}: compile ~{compile_s:.1f} s; a warm vmapped fit costs "
                           f"{t_vmap * 1e3:.2f} ms per problem against {t_sk * 1e3:.2f} ms for "
                           f"scikit-learn and {per_fit['mlemap-loop'] * 1e3:.2f} ms for a loop "
                           f"of mm.fit: the compile pays off from B ~ "
                           f"{'never' if be is None else f'{be:.0f}'} (first measured size "
                           f"where cold vmap beats the sklearn loop: {first}).")
    md = table(["kind", "B", "vmap warm s", "vmap cold s", "sklearn loop s", "mm.fit loop s",
                "sklearn / vmap warm", "sklearn / vmap cold"], rows)
    return results, md + "\n\n" + "\n".join(summary)


NUTS_ENGINES = ["mlemap", "mlemap-f32", "numpyro-sequential", "numpyro-vectorized", "blackjax",
                "pymc"]
QUICK_NUTS_ENGINES = ["mlemap", "numpyro-vectorized", "blackjax", "pymc"]


def section_nuts(cfg, log):
    params = {"n": cfg.nuts_n, "d": cfg.nuts_d, "seed": cfg.seed, "settings": cfg.nuts_settings}
    log(f"nuts: n={params['n']} d={params['d']} {cfg.nuts_settings}")
    res = run_case("nuts", cfg.nuts_engines, params, cfg.nuts_repeats, 1, log)
    ref = res["mlemap"]
    rows = []
    for engine in cfg.nuts_engines:
        r = res[engine]
        if "error" in r:
            rows.append([engine, r["error"].strip().splitlines()[-1][:80]] + [None] * 11)
            continue
        mean_diff = None
        if "posterior_mean" in ref:
            mean_diff = max(abs(a - b) for a, b in zip(r["posterior_mean"], ref["posterior_mean"]))
        sampling = [run.get("sampling_s") for run in r["runs"][1:]]
        sampling = statistics.median(sampling) if all(sampling) else None
        rows.append([engine, r["median_s"], sampling, r["warm_xla_compile_s"], r["cold_s"],
                     r["min_ess_bulk"], r["ess_per_s"],
                     None if "error" in ref else r["ess_per_s"] / ref["ess_per_s"],
                     r["ess_per_s_without_compile"],
                     r["ess_per_gradient"], r["gradients"],
                     "/".join(str(v) for v in r["divergences"]), mean_diff])
    md = table(["engine", "warm s", "of which NUTS s", "of which XLA compile s", "cold s",
                "min bulk ESS", "ESS/s", "ESS/s vs mlemap", "ESS/s without the compile",
                "ESS/gradient", "gradients (draws)", "divergences cold/warm",
                "max |mean - mlemap's|"], rows)
    return {"params": params, "engines": res}, md


def section_cold(cfg, log):
    results, rows = {}, []
    cache_root = Path(tempfile.mkdtemp(prefix="mlemap-bench-cache-"))
    try:
        cold_cases = (
            ("fit", {"n": 10_000, "d": 50, "seed": cfg.seed}),
            ("sample", {"n": cfg.nuts_n, "d": cfg.nuts_d, "seed": cfg.seed,
                        "settings": dict(cfg.nuts_settings, num_warmup=100, num_samples=100)}),
        )
        for engine, params in cold_cases[: 1 if cfg.quick else 2]:
            cache = str(cache_root / engine)
            # No cache and the filled cache twice each (the machine may be shared), in turns.
            modes = (("no cache", params), ("empty cache", dict(params, cache_dir=cache)),
                     ("filled cache", dict(params, cache_dir=cache)))
            if not cfg.quick:  # once more each: the machine may be shared
                modes += (("no cache", params), ("filled cache", dict(params, cache_dir=cache)))
            runs = {}
            for mode, p in modes:
                log(f"cold: {engine} {mode}")
                runs.setdefault(mode, []).append(run_worker("cold", engine, p, 1))
            results[engine] = runs
            for mode, outs in runs.items():
                good = [o for o in outs if "error" not in o]
                if not good:
                    rows.append([engine, mode, outs[-1]["error"][:60]] + [None] * 4)
                    continue
                ev = good[-1]["first_call_events"]
                rows.append([engine, mode, statistics.median(o["import_s"] for o in good),
                             statistics.median(o["cold_s"] for o in good),
                             statistics.median(t for o in good for t in o["times"]),
                             ev["compiles"], f"{ev['hits']} hits / {ev['misses']} misses",
                             len(good)])
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    md = table(["call", "cache", "import s", "first call s", "second call s",
                "XLA programs (first call)", "persistent cache", "processes"], rows)
    return results, md


SECTIONS = {"grad": section_grad, "fit": section_fit, "batch": section_batch,
            "nuts": section_nuts, "cold": section_cold}


def library_fingerprint():
    """sha256 of mlemap's sources: the run says which code it measured, and whether it changed
    while the benchmark ran."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((HERE.parents[1] / "src" / "mlemap").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def machine():
    import numpy as np

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_GiB"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    import importlib.metadata

    for name in ("jax", "jaxlib", "numpyro", "optax", "numpy", "scipy", "scikit-learn",
                 "blackjax", "pymc", "pytensor", "arviz-stats"):
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    info["numpy_blas"] = np.show_config(mode="dicts").get("Build Dependencies", {}).get(
        "blas", {}).get("name")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/benchmark.json")
    parser.add_argument("--markdown", default=None, help="also write the tables here")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {','.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per process")
    parser.add_argument("--rounds", type=int, default=1,
                        help="processes per engine and case, in rotated order (the gradient "
                        "section runs at least 2)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", nargs=2, metavar=("SECTION", "ENGINE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        section, engine = args.worker
        out = WORKERS[section](engine, json.loads(args.params), args.repeats)
        print(RESULT_PREFIX + json.dumps(out), flush=True)
        return 0

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose among {list(SECTIONS)}")
    quick = args.quick
    cfg = argparse.Namespace(
        quick=quick, seed=args.seed, repeats=min(args.repeats, 3) if quick else args.repeats,
        rounds=args.rounds,
        grad_n=100_000 if quick else 1_000_000, grad_dtypes=["float64"] if quick else
        ["float64", "float32"], grad_repeats=5 if quick else max(args.repeats, 10),
        grad_rounds=1 if quick else max(args.rounds, 2),
        fit_ns=[20_000] if quick else [100_000, 1_000_000],
        fit_designs=["easy"] if quick else ["easy", "correlated"], fit_f32=not quick,
        batch_kinds=["logistic"] if quick else ["ridge", "logistic"],
        batch_sizes=[100] if quick else [10, 100, 1000],
        nuts_engines=QUICK_NUTS_ENGINES if quick else NUTS_ENGINES,
        nuts_n=500 if quick else 2000, nuts_d=10 if quick else 50,
        nuts_settings={"num_warmup": 200 if quick else 1000,
                       "num_samples": 200 if quick else 1000, "num_chains": 4,
                       "target_accept": 0.8, "max_tree_depth": 10},
        nuts_repeats=1,
    )

    started = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    results = {"date": datetime.date.today().isoformat(), "quick": args.quick,
               "command": " ".join([Path(sys.executable).name, "experiments/benchmark.py"]
                                   + (argv if argv is not None else sys.argv[1:])),
               "machine": machine(), "load_average_start": os.getloadavg(),
               "mlemap_sources_sha256_start": library_fingerprint(),
               "config": vars(cfg), "sections": {}, "tables": {}}
    for name in only:
        log(f"== {name} ==")
        section_start = time.perf_counter()
        data, md = SECTIONS[name](cfg, log)
        results["sections"][name] = data
        results["tables"][name] = md
        results.setdefault("section_seconds", {})[name] = time.perf_counter() - section_start
        print(f"\n{md}\n", flush=True)
    results["load_average_end"] = os.getloadavg()
    results["mlemap_sources_sha256_end"] = library_fingerprint()
    if results["mlemap_sources_sha256_end"] != results["mlemap_sources_sha256_start"]:
        log("WARNING: mlemap's sources changed while the benchmark ran; rerun for clean numbers")
    results["total_seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    if args.markdown:
        Path(args.markdown).write_text("\n\n".join(
            f"### {name}\n\n{md}" for name, md in results["tables"].items()) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
