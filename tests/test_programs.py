"""The program store: models of one structure share it, and it is freed with the last of them.

What makes two models the same structure is checked against the definition (same
functions, names, shapes and supports; prior values free), and the lifetime with the garbage
collector: a dropped model's structure leaves the module's dictionary, with its programs.
"""

import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import mlemap as mm
from mlemap import _programs


def _log_likelihood(params, data):
    return dist.Normal(params["mu"], params["sigma"]).log_prob(data["y"])


def _model(prior_scale=1.0, constraint=constraints.positive, shape=()):
    return mm.Model(
        {"mu": mm.Param(shape, prior=dist.Normal(0.0, prior_scale)),
         "sigma": mm.Param(constraint=constraint, prior=dist.HalfNormal(1.0))},
        _log_likelihood,
    )


def test_same_functions_and_params_are_one_structure_whatever_the_prior_scale():
    a, b = _model(1.0), _model(5.0)
    assert _programs.structure_key(a) == _programs.structure_key(b)
    assert _programs.structure_of(a) is _programs.structure_of(b)
    assert a._programs is b._programs


def test_another_support_shape_or_function_is_another_structure():
    base = _model()
    others = [
        _model(constraint=constraints.interval(0.0, 10.0)),
        _model(shape=(2,)),
        mm.Model({"mu": mm.Param(), "sigma": mm.Param(constraint=constraints.positive)},
                 lambda p, d: _log_likelihood(p, d)),
    ]
    for other in others:
        assert _programs.structure_of(other) is not _programs.structure_of(base)
    # Interval bounds count by value: the same bounds, built anew, are the same structure.
    a = _model(constraint=constraints.interval(0.0, 10.0))
    b = _model(constraint=constraints.interval(0.0, 10.0))
    c = _model(constraint=constraints.interval(0.0, 20.0))
    assert _programs.structure_of(a) is _programs.structure_of(b)
    assert _programs.structure_of(a) is not _programs.structure_of(c)


def test_the_skeleton_keeps_no_proper_prior_of_the_users_model():
    """Programs are built for the skeleton, which has the structure's functions and no
    proper prior (those are arguments): no program can refer to a user's model or use a
    prior value that was not passed to it."""
    model = _model(3.0)
    skeleton = _programs.structure_of(model).skeleton(model)
    assert skeleton is not model
    assert skeleton.log_likelihood is model.log_likelihood
    assert all(p.prior is None for p in skeleton.params.values())


def test_a_dropped_models_structure_and_programs_are_freed():
    """After fit, the structure holds compiled programs and a skeleton that refers back to
    the structure (a cycle); once the user drops the model, the garbage collector frees them
    and the module's dictionary forgets the key."""
    model = _model(constraint=constraints.interval(0.0, 123.0))  # a structure of its own
    data = {"y": np.random.default_rng(0).normal(size=30)}
    estimate = mm.fit(model, data)
    assert estimate.converged
    key = _programs.structure_key(model)
    assert key in _programs._STRUCTURES
    structure = weakref.ref(_programs.structure_of(model))
    assert structure().programs  # fit left its programs there
    del model, estimate
    gc.collect()
    assert structure() is None
    assert key not in _programs._STRUCTURES


def test_glms_of_one_family_and_shapes_share_their_functions():
    """mm.glm hands the same log-likelihood, init and data check to every glm of the same
    structure (otherwise the structure key would differ), and other ones to another family."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 3))
    a, _ = mm.glm(X, rng.normal(size=20), family=mm.families.gaussian(),
                  prior=dist.Normal(0, 1))
    b, _ = mm.glm(X + 1, rng.normal(size=20), family=mm.families.gaussian(),
                  prior=dist.Normal(0, 7))
    c, _ = mm.glm(X, rng.poisson(size=20), family=mm.families.poisson())
    assert a.log_likelihood is b.log_likelihood and a.init is b.init
    assert a._programs is b._programs
    assert c.log_likelihood is not a.log_likelihood
    assert c._programs is not a._programs


_CACHED_PROCESS = textwrap.dedent("""
    import json, sys, warnings
    import numpyro
    import jax
    import jax.monitoring
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import numpy as np
    import numpyro.distributions as dist
    from numpyro.distributions import constraints
    import mlemap as mm

    counts = {"hits": 0, "misses": 0}
    def count(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            counts["hits"] += 1
        elif event == "/jax/compilation_cache/cache_misses":
            counts["misses"] += 1
    jax.monitoring.register_event_listener(count)
    model = mm.Model(
        {"mu": mm.Param(prior=dist.Normal(0.0, 2.0)),
         "sigma": mm.Param(constraint=constraints.positive, prior=dist.HalfCauchy(1.0)),
         "nu": mm.Param(constraint=constraints.positive, prior=dist.Gamma(2.0, 0.1))},
        lambda p, d: dist.StudentT(p["nu"], p["mu"], p["sigma"]).log_prob(d["y"]))
    data = {"y": np.random.default_rng(0).standard_t(5.0, size=40)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm.fit(model, data)
        mm.sample(model, data, num_warmup=50, num_samples=50, num_chains=1,
                  progress_bar=False)
    print(json.dumps(counts))
""")


@pytest.mark.slow
def test_the_persistent_compilation_cache_serves_a_new_process(tmp_path):
    """JAX's persistent cache is keyed by a program's text; priors are program arguments, and
    NumPyro flattens a distribution's fields in the order of a set, which follows each
    process's string hashing. Two processes with other hash seeds: the second compiles
    nothing (every program a cache hit)."""
    script = tmp_path / "cached.py"
    script.write_text(_CACHED_PROCESS)
    cache = tmp_path / "cache"

    def run(hash_seed):
        env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
        out = subprocess.run([sys.executable, str(script), str(cache)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(1), run(2)
    assert first["misses"] > 0
    assert second["misses"] == 0 and second["hits"] >= first["misses"], (first, second)
