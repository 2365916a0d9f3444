"""Reproducibility: the same seed gives bit-identical fits, Laplace draws and NUTS draws, in
one process and across two processes; different seeds give different draws.

"Bit-identical" is ``np.array_equal`` on float64 arrays. Across processes, the same script
runs twice in fresh interpreters (each compiles its own programs) and saves its arrays with
``np.save``; the files are compared bit for bit, and the fit and Laplace draws with this
process's to round-off (see the test for why not bit for bit).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# The computation, run in this process and, as a script, in two fresh ones.
SOURCE = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import numpyro.distributions as dist
    import mlemap as mm
    from mlemap import families


    def problem():
        rng = np.random.default_rng(7)
        X = rng.normal(size=(40, 3))
        y = (rng.uniform(size=40) < 1 / (1 + np.exp(-(X @ np.array([1.0, -0.5, 0.3]))))) * 1.0
        return mm.glm(X, y, family=families.bernoulli(), prior=dist.Normal(0.0, 2.0))


    def compute(model, data, seed):
        est = mm.fit(model, data)
        approx = mm.laplace(model, data, num_draws=200, seed=seed)
        dt = mm.sample(model, data, num_warmup=300, num_samples=600, num_chains=2, seed=seed,
                       progress_bar=False)
        out = {f"fit_{k}": np.asarray(v) for k, v in est.params.items()}
        out |= {f"laplace_{k}": np.asarray(approx.draws.posterior[k]) for k in model.params}
        out |= {f"nuts_{k}": np.asarray(dt.posterior[k]) for k in model.params}
        out["nuts_lp"] = np.asarray(dt.sample_stats["lp"])
        out["nuts_log_likelihood"] = np.asarray(dt.log_likelihood["log_likelihood"])
        return out
    """
)

MAIN = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("error")
    model, data = problem()
    np.savez(sys.argv[1], **compute(model, data, seed=3))
    """
)

namespace: dict = {}
exec(compile(SOURCE, "<reproducibility>", "exec"), namespace)


def assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype == np.float64, key
        assert np.array_equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="module")
def problem():
    return namespace["problem"]()


@pytest.fixture(scope="module")
def first(problem):
    return namespace["compute"](*problem, seed=3)


@pytest.mark.slow
def test_same_seed_same_bits_in_one_process(problem, first):
    # The second call reuses the compiled programs; fresh compilations are compared in the
    # next test (each process compiles its own).
    assert_bit_identical(first, namespace["compute"](*problem, seed=3))


@pytest.mark.slow
def test_same_seed_same_bits_across_processes(tmp_path, first):
    script = tmp_path / "run.py"
    script.write_text(SOURCE + MAIN)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"out{i}.npz")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-3000:]
    saved = [dict(np.load(tmp_path / f"out{i}.npz")) for i in range(2)]
    assert_bit_identical(saved[0], saved[1])
    # Against this long-lived test process: bit-identical when the module runs alone, but
    # after the ~240 tests before it in the full suite the fit has differed by 1 ulp
    # (1.1e-16; cause not found: the same compiled program, inputs and flags, so most likely
    # XLA CPU's buffer addresses and alignment). NUTS amplifies one ulp into other draws, so
    # only the deterministic results are compared with this process, to round-off.
    for key in first:
        if key.startswith(("fit_", "laplace_")):
            np.testing.assert_allclose(saved[0][key], first[key], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_different_seeds_give_different_draws(problem, first):
    other = namespace["compute"](*problem, seed=4)
    for key in first:
        if key.startswith("fit_"):  # an optimum has no seed
            assert np.array_equal(first[key], other[key]), key
        else:
            # Every draw differs, not only some.
            assert not np.any(first[key] == other[key]), key
