"""The bad-input matrix: every entry point crossed with every bad input that applies to it.

Each case must raise before anything is traced, with a message that names the problem (the
``match``). Cases that already live next to their module are referenced, not copied:

- ``glm``: ``tests/test_glm.py::BAD`` (shapes, label domains, NaN, prior support, family,
  non-numeric X) is crossed here as it is;
- ``fit``: ``tests/test_fit.py::test_bad_init`` and ``test_bad_data_and_arguments`` (init
  names, shapes and support; NaN data; method; jacobian with mle; unknown prior names; batch);
- ``sample``: ``tests/test_sample.py`` "Bad input" (num_chains, target_accept, num_samples,
  chain_method, init, max_tree_depth; init names, shapes, support; a log-density that is not
  finite at any start, naming the term);
- ``compare``: ``tests/test_compare.py::test_names_that_do_not_match_*``,
  ``test_other_bad_input``, ``test_batched_point_estimate_is_refused``;
- ``experiments/run.py``: ``tests/test_experiments.py`` (unknown experiment, ``--out`` under
  a file, a foreign ``--out`` folder, bad flags: exit 2 and nothing written). Added here: an
  ``--out`` whose parent is not writable (root ignores permissions, so ``os.access`` is
  patched), and ``experiments/sbc.py``'s command line.

What is new here is the crossing: the same bad data and the same bad model given to ``fit``,
``laplace`` and ``sample`` (and ``compare``), each refused with the same clear message.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mlemap as mm
from mlemap import families

from test_glm import BAD as GLM_BAD  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]


def _summed(p, d):
    return jnp.sum(dist.Normal(p["mu"], 1.0).log_prob(d["y"]))


def _column(p, d):
    return dist.Normal(p["mu"], 1.0).log_prob(d["y"])[:, None]


SUMMED = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 1.0))}, _summed)
COLUMN = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 1.0))}, _column)
Y5 = {"y": np.zeros(5)}


def _glm():
    X = np.random.default_rng(0).normal(size=(20, 2))
    return mm.glm(X, X[:, 0] + 0.1, family=families.gaussian(), prior=dist.Normal(0.0, 1.0))


MODEL, DATA = _glm()
NAN_DATA = {"X": np.where(np.arange(40).reshape(20, 2) == 3, np.nan, DATA["X"]),
            "y": np.asarray(DATA["y"])}
TEXT_DATA = {"X": np.full((20, 2), "a"), "y": np.asarray(DATA["y"])}

# Every entry point that takes (model, data, **options), called with nothing compiled.
ENTRY = {
    "fit": lambda model, data, **kw: mm.fit(model, data, **kw),
    "laplace": lambda model, data, **kw: mm.laplace(model, data, **kw),
    "sample": lambda model, data, **kw: mm.sample(model, data, progress_bar=False, **kw),
}

POINTWISE = r"pointwise log-likelihood, one value per observation, shape \(n_obs,\)"
# (name, model, data, options, error, match): given to each of fit, laplace and sample.
CROSSED = [
    ("summed log-likelihood", SUMMED, Y5, {}, ValueError, POINTWISE + "; it returned \\(\\)"),
    ("(n, 1) log-likelihood", COLUMN, Y5, {}, ValueError, r"it returned \(5, 1\)"),
    ("not a Model", "model", DATA, {}, TypeError, r"mlemap.Model; got str"),
    ("text data", MODEL, TEXT_DATA, {}, TypeError, r"numeric"),
    ("unknown init name", MODEL, DATA, {"init": {"zz": 1.0}}, ValueError, r"unknown \['zz'\]"),
]


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize("case", CROSSED, ids=[c[0] for c in CROSSED])
def test_crossed_bad_input(entry, case):
    _, model, data, options, error, match = case
    with pytest.raises(error, match=match):
        ENTRY[entry](model, data, **options)


def test_summed_log_likelihood_in_a_batched_fit():
    """batch="data": the pointwise check runs on one dataset's slice."""
    with pytest.raises(ValueError, match=POINTWISE):
        mm.fit(SUMMED, {"y": np.zeros((3, 5))}, batch="data")


# NaN data: every entry point refuses the data itself (one data check).
@pytest.mark.parametrize("entry", list(ENTRY))
def test_nan_data(entry):
    with pytest.raises(ValueError, match=r"data\['X'\] has 1 NaN or infinite value"):
        ENTRY[entry](MODEL, NAN_DATA)


@pytest.mark.parametrize(
    ("entry", "options", "error", "match"),
    [
        ("fit", {"max_steps": -1}, ValueError, "max_steps must be an integer >= 0"),
        ("fit", {"max_steps": 1.5}, ValueError, "max_steps must be an integer >= 0"),
        ("fit", {"tol": -1.0}, ValueError, "tol must be a finite number >= 0"),
        ("fit", {"rtol": float("nan")}, ValueError, "rtol must be a finite number >= 0"),
        ("fit", {"optimizer": "adam"}, TypeError, "optax.GradientTransformation"),
        ("laplace", {"method": "ml"}, ValueError, "method must be 'map' or 'mle'"),
        ("laplace", {"num_draws": 0}, ValueError, "num_draws must be an integer >= 2"),
        ("laplace", {"seed": "a"}, TypeError, "seed must be an integer"),
        ("laplace", {"priors": {"zz": dist.Normal(0.0, 1.0)}}, ValueError,
         r"unknown parameter name\(s\) \['zz'\]"),
        ("laplace", {"mode": {"mu": 0.0}}, TypeError, "mode must be a PointEstimate"),
        ("sample", {"seed": "a"}, TypeError, "seed must be an integer"),
        ("sample", {"num_warmup": -1}, ValueError, "num_warmup must be an integer >= 0"),
    ],
)
def test_bad_options(entry, options, error, match):
    with pytest.raises(error, match=match):
        ENTRY[entry](MODEL, DATA, **options)


@pytest.mark.parametrize("kwargs,error,message", GLM_BAD)
def test_glm_cases_refuse_before_fit(kwargs, error, message):
    """tests/test_glm.py's table, crossed with fit: glm refuses, so fit is never reached."""
    kwargs = {"family": families.gaussian(), **kwargs}
    with pytest.raises(error, match=message):
        mm.fit(*mm.glm(kwargs.pop("X"), kwargs.pop("y"), **kwargs))


def test_compare_refuses_an_estimate_of_another_model():
    """A point whose names differ from the posterior's (here a dict, no sampling needed)."""
    posterior = __import__("arviz_base").from_dict(
        {"posterior": {"mu": np.zeros((1, 10))}})
    with pytest.raises(ValueError, match=r"no variable for the parameters \['beta'\]"):
        mm.compare(posterior, {"MAP": {"beta": 0.0}})
    with pytest.raises(ValueError, match="non-empty dict"):
        mm.compare(posterior, {})
    with pytest.raises(TypeError, match="xarray.DataTree"):
        mm.compare({"mu": np.zeros(3)}, {"MAP": {"mu": 0.0}})


# -- command lines -------------------------------------------------------------------------------


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_run_out_in_an_unwritable_folder_is_refused(tmp_path, monkeypatch):
    """``check_out`` (which run.py calls before running anything) refuses a parent folder
    that cannot be written; patched, because the tests may run as root."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        report = _load("mlemap_experiments_report", ROOT / "experiments" / "_report.py")
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    monkeypatch.setattr(report.os, "access", lambda path, mode: False)
    message = report.check_out(tmp_path / "locked" / "report")
    assert message == f"--out {tmp_path / 'locked' / 'report'}: {tmp_path} is not writable."
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--models", "linear_regression,probit"], "unknown model(s) ['probit']"),
        (["--bins", "7"], "--bins (7) must divide L + 1 = 100"),
        (["--num-samples", "995"], "must be a multiple of --thin"),
        (["--replications", "1"], "--replications must be >= 2"),
        (["--method", "vmap"], "unrecognized arguments: --method vmap"),
    ],
)
def test_sbc_command_line_usage_errors(tmp_path, args, match):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "sbc.py"), *args,
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert match in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the folder


# Data given straight to fit, laplace or sample meet the family's checks, as glm's did.
BERNOULLI_MODEL, BERNOULLI_DATA = mm.glm(np.eye(4)[:, :2], np.array([0, 1, 1, 0]),
                                         family=families.bernoulli())
CATEGORICAL_MODEL, CATEGORICAL_DATA = mm.glm(np.eye(6)[:, :2], np.array([0, 1, 2, 2, 1, 0]),
                                             family=families.categorical())


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize(("model", "data", "match"), [
    (BERNOULLI_MODEL, {**BERNOULLI_DATA, "y": np.array([0.0, 1.0, 3.0, 0.0])},
     r"bernoulli labels must be 0 or 1; found the values \{0.0, 1.0, 3.0\}"),
    (CATEGORICAL_MODEL, {**CATEGORICAL_DATA, "y": np.array([0, 1, 2, 3, 1, 0])},
     r"labels must lie in 0..2"),
    (CATEGORICAL_MODEL, {**CATEGORICAL_DATA, "y": np.array([1, 1, 2, 2, 1, 2])},
     r"class 0 has no observation"),
], ids=["bernoulli 3", "categorical label 3 of 3 classes", "categorical class 0 empty"])
def test_data_outside_the_familys_support(entry, model, data, match):
    with pytest.raises(ValueError, match=match):
        ENTRY[entry](model, data)


def test_batched_data_outside_the_support_names_the_dataset():
    y = np.stack([CATEGORICAL_DATA["y"], np.array([1, 1, 2, 2, 1, 2])])
    X = np.stack([CATEGORICAL_DATA["X"]] * 2)
    with pytest.raises(ValueError, match="class 0 has no observation in dataset 1"):
        mm.fit(CATEGORICAL_MODEL, {"X": X, "y": y}, batch="data")


def test_categorical_labels_one_to_k_say_how_to_encode():
    """Labels 1..3 would read as 4 classes with class 0 empty: refused, with the fix."""
    with pytest.raises(ValueError, match=r"class 0 has no observation.*numpy.unique\(y, "
                                         r"return_inverse=True\)\[1\]"):
        mm.glm(np.eye(6)[:, :2], np.array([1, 2, 3, 3, 2, 1]), family=families.categorical())
    # A number of classes given explicitly keeps an empty class (the user declared it).
    model, _ = mm.glm(np.eye(6)[:, :2], np.array([1, 2, 3, 3, 2, 1]),
                      family=families.categorical(num_classes=4))
    assert model.params["intercept"].shape == (3,)


def test_zero_observations():
    """Nothing to fit: the MLE of a constant likelihood is refused; a MAP without data is the
    prior's mode (tests/test_fit.py's Exponential(1) case)."""
    model = mm.Model({"mu": mm.Param(prior=dist.Normal(0.0, 1.0))},
                     lambda p, d: dist.Normal(p["mu"], 1.0).log_prob(d["y"]))
    with pytest.raises(ValueError, match="0 observations for this data"):
        mm.fit(model, {"y": np.zeros(0)}, method="mle")
    assert mm.fit(model, {"y": np.zeros(0)}).converged


def test_python_lists_are_arrays():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    model, data = mm.glm(X, y, family=families.gaussian())
    est = mm.fit(model, {"X": X.tolist(), "y": list(y)})
    np.testing.assert_array_equal(est.params["beta"], mm.fit(model, data).params["beta"])
