"""Tests of mm.shard with fit and sample on 4 host devices (JAX's own sharding).

JAX fixes the number of host devices when it starts, so the checks run in one subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and ``JAX_ENABLE_X64=1``; the test
process itself keeps its single device.

What is checked, on a logistic regression with n = 400 rows (100 per device), d = 5:

- ``mm.shard`` lays ``X`` and ``y`` out as ``NamedSharding(mesh, PartitionSpec("obs"))`` over
  the 4 devices (each holds 100 rows), and the compiled log-density of sharded data sums with
  an all-reduce;
- ``mm.fit`` of the sharded data equals the one-device fit to 1e-10 (the log-likelihood is the
  same sum, added in another order: round-off only, and L-BFGS converges to the same point);
- ``mm.sample`` of the sharded data (``chain_method="vectorized"``, the default for sharded
  data) gives the one-device draws, and so do 4 chains run in parallel over the 4 devices
  (``chain_method="parallel"``, one chain per device through ``shard_map``; ``test_sample.py``
  checks that it is the default there and that its posterior is right, this test that it is
  the same computation). The only difference is round-off: the order in which per-device
  partial sums are added (or how XLA fuses a batch of 1 against a batch of 4), ~1e-16
  relative in each gradient. NUTS's warm-up amplifies it: the step size is a feedback loop of
  the acceptance statistics, and a U-turn or an acceptance decided by the last bit sends a
  trajectory elsewhere. Measured here: the draws differ by ~1e-11 after 50 warm-up
  iterations and by ~0.5 (different trajectories) after 200. Once adaptation is over (fixed
  step size and mass matrix) the difference does not grow: ~1e-11 across 300 draws. So the
  test uses a short warm-up (40) and compares the first draws tightly (1e-8), requires 95% of
  the draws to agree to 1e-6 (a rare last-bit U-turn decision may part one chain's ways), and
  the posterior means to 0.1 posterior standard deviation.
- ``n`` not divisible by the device count is refused with a message that says what to do.

Multi-host, in two more subprocesses: two processes (``jax.distributed.initialize`` on
localhost, gloo CPU collectives), two CPU devices each, every process passing the same data to
``mm.shard``, which lays it over the four devices (each process holds its 200 rows). Both
processes' ``fit`` and ``laplace`` standard errors equal the one-device results to 1e-8, and
``sample`` (2 chains, 40 warm-up, 50 draws) gives both processes the same draws, those of the
one-device run up to round-off, with the pointwise log-likelihood gathered from both
processes. Bad input (NaN, different data on the processes, ``chain_method="parallel"``)
raises the same error on every process. The one-device reference is computed in the same two
processes (fit and laplace in one, sample in the other), on their first device.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # one subprocess: ~40 s (compiles fit and three NUTS programs)
# and the multi-host pair of processes: ~65 s of CPU together (75-95 s wall on 2 busy cores)

# The logistic regression both scripts fit: n = 400 rows (100 per device), d = 5.
PROBLEM = textwrap.dedent(
    """
    rng = np.random.default_rng(20261128)
    n, d = 400, 5
    X = rng.normal(size=(n, d))
    beta = rng.normal(scale=0.5, size=d)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ beta + 0.3)))).astype(float)
    model, data = mm.glm(X, y, family=mm.families.bernoulli(),
                         prior=mm.priors.from_logistic(1.0))
    """
)

SCRIPT = textwrap.dedent(
    r"""
    import json, warnings
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec
    import mlemap as mm
    from mlemap import log_density_fn

    from mlemap import SamplingWarning

    warnings.simplefilter("error")
    # 200 draws of 2 chains are too few for the R-hat/ESS checks; the draws are compared.
    warnings.filterwarnings("ignore", category=SamplingWarning)
    assert jax.config.jax_enable_x64
    devices = jax.devices()
    assert len(devices) == 4, devices

    """
) + PROBLEM + textwrap.dedent(
    r"""
    sharded = mm.shard(data)
    out = {}

    # The arrays really are laid out by rows over the 4 devices.
    out["shardings"] = {}
    for key, value in sharded.items():
        s = value.sharding
        out["shardings"][key] = {
            "type": type(s).__name__,
            "spec": str(s.spec),
            "spec_is_obs": s.spec == PartitionSpec("obs"),
            "mesh_axes": list(s.mesh.axis_names),
            "num_devices": len(s.device_set),
            "shard_shape": list(s.shard_shape(value.shape)),
            "fully_replicated": bool(s.is_fully_replicated),
            "equal_to_input": bool(np.array_equal(np.asarray(value), np.asarray(data[key]))),
        }

    # The log-likelihood sum of sharded data becomes an all-reduce in the compiled program.
    log_density = log_density_fn(model)
    u = jnp.zeros(model.dim)
    hlo = jax.jit(log_density).lower(u, sharded).compile().as_text()
    out["all_reduce_in_hlo"] = "all-reduce" in hlo
    out["log_density_diff"] = abs(float(jax.jit(log_density)(u, sharded))
                                  - float(jax.jit(log_density)(u, data)))

    # fit: the same point.
    one = mm.fit(model, data)
    many = mm.fit(model, sharded)
    out["fit_converged"] = [bool(one.converged), bool(many.converged)]
    out["fit_max_param_diff"] = max(
        float(np.max(np.abs(np.asarray(one.params[k]) - np.asarray(many.params[k]))))
        for k in one.params)
    out["fit_log_density_diff"] = abs(one.log_density - many.log_density)
    out["fit_steps"] = [int(one.num_steps), int(many.num_steps)]
    out["data_still_sharded_after_fit"] = sharded["X"].sharding.spec == PartitionSpec("obs")

    # sample: the same draws. Vectorized chains on one device and on sharded data (its default),
    # and chains in parallel over the devices (shard_map, one chain per device).
    settings = dict(num_warmup=40, num_samples=300, num_chains=4, seed=3, init="uniform",
                    progress_bar=False)
    runs = {
        "one_device": mm.sample(model, data, chain_method="vectorized", **settings),
        "sharded": mm.sample(model, sharded, **settings),
        "parallel": mm.sample(model, data, chain_method="parallel", **settings),
    }
    out["chain_method"] = {k: v.attrs["chain_method"] for k, v in runs.items()}
    out["diverging"] = {k: int(v.sample_stats["diverging"].sum()) for k, v in runs.items()}
    ref = np.asarray(runs["one_device"].posterior["beta"])  # (chain, draw, d)
    sd = ref.reshape(-1, d).std(axis=0)
    for key in ("sharded", "parallel"):
        other = np.asarray(runs[key].posterior["beta"])
        diff = np.abs(ref - other)
        out[key] = {
            "first10_max_diff": float(diff[:, :10].max()),
            "max_diff": float(diff.max()),
            "fraction_within_1e-6": float(np.mean(np.all(diff < 1e-6, axis=-1))),
            "mean_diff_in_sd": float(np.max(np.abs(
                ref.reshape(-1, d).mean(axis=0) - other.reshape(-1, d).mean(axis=0)) / sd)),
        }

    # n not divisible by the number of devices.
    try:
        mm.shard({"X": X[:398], "y": y[:398]})
        out["uneven_error"] = None
    except ValueError as err:
        out["uneven_error"] = str(err)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result():
    import json

    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_ENABLE_X64"] = "1"
    env.pop("JAX_PLATFORMS", None)
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_data_is_sharded_by_rows_over_four_devices(result):
    for key, rows in (("X", [100, 5]), ("y", [100])):
        s = result["shardings"][key]
        assert s["type"] == "NamedSharding", s
        assert s["spec_is_obs"], s
        assert s["mesh_axes"] == ["obs"], s
        assert s["num_devices"] == 4, s
        assert s["shard_shape"] == rows, s
        assert not s["fully_replicated"], s
        assert s["equal_to_input"], s


def test_log_likelihood_sum_is_an_all_reduce(result):
    assert result["all_reduce_in_hlo"]
    assert result["log_density_diff"] < 1e-10


def test_sharded_fit_equals_one_device_fit(result):
    assert result["fit_converged"] == [True, True]
    assert result["fit_max_param_diff"] < 1e-10, result["fit_max_param_diff"]
    assert result["fit_log_density_diff"] < 1e-9
    assert result["data_still_sharded_after_fit"]


def test_sharded_sample_equals_one_device_sample(result):
    assert result["chain_method"]["sharded"] == "vectorized"
    assert result["diverging"] == {"one_device": 0, "sharded": 0, "parallel": 0}
    same = result["sharded"]
    assert same["first10_max_diff"] < 1e-8, same
    assert same["fraction_within_1e-6"] > 0.95, same
    assert same["mean_diff_in_sd"] < 0.1, same


def test_parallel_chains_over_devices_equal_vectorized_chains(result):
    assert result["chain_method"]["parallel"] == "parallel"
    same = result["parallel"]
    assert same["first10_max_diff"] < 1e-8, same
    assert same["fraction_within_1e-6"] > 0.95, same
    assert same["mean_diff_in_sd"] < 0.1, same


def test_uneven_split_is_refused_with_a_fix(result):
    message = result["uneven_error"]
    assert message is not None
    assert "398 observations cannot be split evenly over 4 devices" in message
    assert "devices=jax.devices()[:2]" in message


# --------------------------------------------------------------------------------------------
# Multi-host: two processes, two CPU devices each, one mesh over the four
# --------------------------------------------------------------------------------------------

MULTIHOST_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import jax

    process_id, port, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    # CPU collectives across processes: gloo, JAX's default (jax_cpu_collectives_implementation).
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=process_id)
    import numpy as np
    import mlemap as mm
    from mlemap import SamplingWarning

    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", category=SamplingWarning)  # 2 x 50 draws: too few
    assert jax.config.jax_enable_x64
    assert jax.process_count() == 2 and len(jax.devices()) == 4 and jax.local_device_count() == 2

    """
) + PROBLEM + textwrap.dedent(
    r"""
    settings = dict(num_warmup=40, num_samples=50, num_chains=2, seed=3, progress_bar=False)

    def summary(est=None, lap=None, dt=None):
        out = {}
        if est is not None:
            out["fit"] = np.concatenate([np.ravel(v) for v in est.params.values()]).tolist()
            out["converged"] = bool(est.converged)
        if lap is not None:
            out["se"] = np.concatenate([np.ravel(v) for v in lap.std_errors.values()]).tolist()
        if dt is not None:
            out["draws"] = np.asarray(dt.posterior["beta"]).tolist()  # (chain, draw, d)
            out["chain_method"] = dt.attrs["chain_method"]
            out["log_lik_shape"] = list(dt.log_likelihood["log_likelihood"].shape)
            out["log_lik_sum"] = float(dt.log_likelihood["log_likelihood"].sum())
            out["observed_equal"] = bool(np.array_equal(dt.observed_data["X"], X))
        return out

    out = {}
    # The one-device reference (numpy data, this process's first device), split between the
    # two processes so that they compute it at the same time.
    if process_id == 0:
        out["reference"] = summary(est=mm.fit(model, data), lap=mm.laplace(model, data))
    else:
        out["reference"] = summary(dt=mm.sample(model, data, chain_method="vectorized",
                                                **settings))

    sharded = mm.shard(data)
    x = sharded["X"]
    out["layout"] = {
        "fully_addressable": bool(x.is_fully_addressable),
        "num_devices": len(x.sharding.device_set),
        "processes": sorted({dev.process_index for dev in x.sharding.device_set}),
        "local_shapes": [list(s.data.shape) for s in x.addressable_shards],
        "local_rows_equal": all(np.array_equal(np.asarray(s.data), X[s.index])
                                for s in x.addressable_shards),
    }
    est = mm.fit(model, sharded)
    # Data too large for one host: each process builds the global arrays from its own rows.
    rows = slice(200 * process_id, 200 * (process_id + 1))
    local = {k: jax.make_array_from_process_local_data(v.sharding, np.asarray(data[k])[rows])
             for k, v in sharded.items()}
    out["local_data_fit"] = np.concatenate(
        [np.ravel(v) for v in mm.fit(model, local).params.values()]).tolist()
    lap = mm.laplace(model, sharded)
    dt = mm.sample(model, sharded, **settings)
    out["multihost"] = summary(est=est, lap=lap, dt=dt)
    table = mm.compare(dt, {"MAP": est, "Laplace": lap}, model=model, data=sharded)
    out["compare_mean"] = table["mean"].tolist()

    # Errors are raised on every process, from numbers every process reads.
    errors = {}
    bad = X.copy()
    bad[3, 1] = np.nan
    for key, call in [
        ("nan", lambda: mm.fit(model, mm.shard({"X": bad, "y": y}))),
        ("other_data", lambda: mm.shard({"X": X + process_id, "y": y})),
        ("parallel", lambda: mm.sample(model, sharded, chain_method="parallel", **settings)),
    ]:
        try:
            call()
            errors[key] = None
        except ValueError as err:
            errors[key] = str(err)
    out["errors"] = errors
    with open(path, "w") as f:
        json.dump(out, f)
    """
)


@pytest.fixture(scope="module")
def multihost(tmp_path_factory):
    import json
    import socket

    folder = tmp_path_factory.mktemp("multihost")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_ENABLE_X64"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    procs = [subprocess.Popen([sys.executable, "-c", MULTIHOST_SCRIPT, str(i), str(port),
                               str(folder / f"p{i}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:  # one that failed leaves the other waiting in a collective
            if p.poll() is None:
                p.kill()
                p.communicate()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i}:\n" + "\n".join(logs)[-6000:]
    return [json.loads((folder / f"p{i}.json").read_text()) for i in range(2)]


def test_multihost_data_span_both_processes(multihost):
    for out in multihost:
        layout = out["layout"]
        assert not layout["fully_addressable"]
        assert layout["num_devices"] == 4 and layout["processes"] == [0, 1]
        assert layout["local_shapes"] == [[100, 5], [100, 5]]
        assert layout["local_rows_equal"]


def test_multihost_fit_and_laplace_equal_one_device(multihost):
    ref = multihost[0]["reference"]
    assert ref["converged"]
    for out in multihost:
        got = out["multihost"]
        assert got["converged"]
        assert max(abs(a - b) for a, b in zip(got["fit"], ref["fit"])) < 1e-8
        assert max(abs(a - b) for a, b in zip(got["se"], ref["se"])) < 1e-8
    # Every process gets the full result, the same one.
    assert multihost[0]["multihost"]["fit"] == multihost[1]["multihost"]["fit"]
    assert multihost[0]["multihost"]["se"] == multihost[1]["multihost"]["se"]
    assert multihost[0]["compare_mean"] == multihost[1]["compare_mean"]
    for out in multihost:  # global arrays built from each process's own rows: the same fit
        assert out["local_data_fit"] == out["multihost"]["fit"]


def test_multihost_sample_equals_one_device(multihost):
    import numpy as np

    ref = multihost[1]["reference"]
    one, two = (np.array(out["multihost"]["draws"]) for out in multihost)
    assert one.shape == (2, 50, 5)
    np.testing.assert_array_equal(one, two)  # every process gets the same draws
    for out in multihost:
        got = out["multihost"]
        assert got["chain_method"] == "vectorized"
        assert got["log_lik_shape"] == [2, 50, 400]  # gathered from both processes
        assert got["observed_equal"]
        assert abs(got["log_lik_sum"] - ref["log_lik_sum"]) < 1e-6 * abs(ref["log_lik_sum"])
    draws = np.array(ref["draws"])
    diff = np.abs(one - draws)
    # As in the one-process test above: round-off in the all-reduce order, which the warm-up's
    # feedback loop can amplify (measured: 2e-12 at most over all draws).
    assert diff[:, :10].max() < 1e-8, diff[:, :10].max()
    assert np.mean(np.all(diff < 1e-6, axis=-1)) > 0.95, diff.max()
    sd = draws.reshape(-1, 5).std(axis=0)
    mean_diff = np.abs(one.reshape(-1, 5).mean(axis=0) - draws.reshape(-1, 5).mean(axis=0))
    assert np.all(mean_diff < 0.1 * sd), mean_diff / sd


def test_multihost_errors_are_raised_on_every_process(multihost):
    for out in multihost:
        errors = out["errors"]
        assert "data['X'] has 1 NaN" in errors["nan"]
        assert "processes [1] passed other data than process 0" in errors["other_data"]
        assert "chain_method='parallel'" in errors["parallel"]
