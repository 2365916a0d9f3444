#!/usr/bin/env python
"""Two revisions of mlemap side by side in one process, their calls interleaved.

The machine this project runs on is shared and noisy: two processes timed one after the
other can differ by 20% with no change in the code. Here the working tree's mlemap and an
earlier revision's (exported with ``git archive`` and renamed ``mlemap_<rev>``) run the same
fits in one process, alternating call by call, so that both see the same machine; the
report is the median of the paired ratios (new / old) and the ratio of the fastest calls.

Cases, the benchmark's (experiments/benchmark.py sections ``fit`` and ``batch``):

- ``fit``: the warm L2-logistic MAP, n = 1e5, d = 50, tol 1e-6;
- ``logistic``, ``ridge``: 1000 batched fits, n = 200, d = 10, tol 1e-6.

Usage::

    python experiments/versus.py 2394377                # every case against that revision
    python experiments/versus.py HEAD~3 --cases ridge --calls 40
"""

from __future__ import annotations

import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("fit", "logistic", "ridge")


def export(revision: str, folder: Path) -> str:
    """``src/mlemap`` at ``revision`` as the package ``mlemap_<rev>`` under ``folder``."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", revision],
                         capture_output=True, text=True, check=True).stdout.strip()
    name = f"mlemap_{sha}"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "src/mlemap"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "src" / "mlemap").rename(folder / name)
    for path in (folder / name).rglob("*.py"):
        text = path.read_text()
        text = text.replace("from mlemap import", f"from {name} import")
        text = text.replace("from mlemap.", f"from {name}.").replace("import mlemap.",
                                                                     f"import {name}.")
        path.write_text(text)
    return name


def problem(case: str, mm):
    """``(model, data, fit options)`` of a case, built with the package ``mm``."""
    import numpy as np
    import numpyro.distributions as dist

    rng = np.random.default_rng(0)
    if case == "fit":
        X = rng.normal(size=(100_000, 50))
        y = (rng.uniform(size=100_000) < 1 / (1 + np.exp(-(X @ (0.3 * rng.normal(size=50))
                                                            + 0.2)))).astype(float)
        model, data = mm.glm(X, y, family=mm.families.bernoulli(),
                             prior=mm.priors.from_logistic(1.0))
        return model, data, {"tol": 1e-6}
    X = rng.normal(size=(1000, 200, 10))
    eta = np.einsum("bnd,bd->bn", X, 0.5 * rng.normal(size=(1000, 10)))
    if case == "logistic":
        y = (rng.uniform(size=eta.shape) < 1 / (1 + np.exp(-eta))).astype(float)
        model = mm.glm(X[0], y[0], family=mm.families.bernoulli(),
                       prior=mm.priors.from_logistic(1.0))[0]
    else:
        y = eta + rng.normal(size=eta.shape)
        model = mm.glm(X[0], y[0], family=mm.families.gaussian(sigma=1.0),
                       prior=dist.Normal(0.0, 1.0))[0]
    return model, {"X": X, "y": y}, {"tol": 1e-6, "batch": "data"}


def versus(case: str, packages: dict, calls: int) -> dict:
    import jax
    import numpy as np

    setups = {}
    for label, mm in packages.items():
        model, data, options = problem(case, mm)
        jax.block_until_ready(mm.fit(model, data, **options).params)  # compile, warm up
        setups[label] = (mm, model, data, options)
    times = {label: [] for label in packages}
    labels = list(packages)
    for call in range(calls):
        for label in labels if call % 2 == 0 else labels[::-1]:
            mm, model, data, options = setups[label]
            start = time.perf_counter()
            jax.block_until_ready(mm.fit(model, data, **options).params)
            times[label].append(time.perf_counter() - start)
    old, new = (np.asarray(times[label]) for label in labels)
    return {"old_ms": 1e3 * float(np.median(old)), "new_ms": 1e3 * float(np.median(new)),
            "paired": float(np.median(new / old)), "fastest": float(new.min() / old.min())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the earlier revision (a git commit)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"from {', '.join(CASES)}")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per revision")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if any(c not in CASES for c in cases):
        parser.error(f"--cases must come from {', '.join(CASES)}; got {args.cases!r}.")
    import jax

    jax.config.update("jax_enable_x64", True)
    with tempfile.TemporaryDirectory() as folder:
        sys.path.insert(0, folder)
        old = importlib.import_module(export(args.revision, Path(folder)))
        import mlemap

        for case in cases:
            r = versus(case, {"old": old, "new": mlemap}, args.calls)
            print(f"{case}: {args.revision} {r['old_ms']:.1f} ms, working tree {r['new_ms']:.1f} "
                  f"ms; new/old {r['paired']:.3f} (median of paired calls), "
                  f"{r['fastest']:.3f} (fastest calls)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
