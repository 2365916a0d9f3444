"""Refits of new models of one structure: a user's loop over five ridge alphas, five CV folds,
and five prior scales under NUTS, each iteration building a new ``mm.glm``.

Each loop runs in a fresh process (so the first iteration pays the compilation, as a user's
script does); the seconds of every iteration are printed as JSON. With ``--compare``, the
loops run side by side, process after process alternating, for each source tree given (e.g.
the code before and after structural program sharing), and the medians are printed as a
markdown table.

    python experiments/refits.py                         # this tree, one process
    python experiments/refits.py --compare OLD/src NEW/src --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

LOOPS = ("ridge alphas, glm + fit", "CV folds, glm + fit", "prior scales, glm + sample")


def _ridge_alphas(mm, priors):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    seconds = []
    for alpha in (0.01, 0.1, 1.0, 10.0, 100.0):
        start = time.perf_counter()
        model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=1.0),
                             prior=priors.from_ridge(alpha))
        mm.fit(model, data).params["beta"].block_until_ready()
        seconds.append(time.perf_counter() - start)
    return seconds


def _cv_folds(mm, priors):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 10))
    y = (rng.uniform(size=1000) < 1 / (1 + np.exp(-X @ rng.normal(size=10)))).astype(float)
    folds = np.array_split(rng.permutation(1000), 5)  # equal folds: equal shapes
    seconds = []
    for k in range(5):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        start = time.perf_counter()
        model, data = mm.glm(X[train], y[train], family=mm.families.bernoulli(),
                             prior=priors.from_logistic(1.0))
        mm.fit(model, data).params["beta"].block_until_ready()
        seconds.append(time.perf_counter() - start)
    return seconds


def _prior_scales_nuts(mm, priors):
    import numpy as np
    import numpyro.distributions as dist

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5) + rng.normal(size=200)
    seconds = []
    for tau in (0.1, 0.3, 1.0, 3.0, 10.0):
        start = time.perf_counter()
        model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=1.0),
                             prior=dist.Normal(0.0, tau))
        mm.sample(model, data, num_warmup=500, num_samples=500, num_chains=2,
                  chain_method="vectorized", progress_bar=False)
        seconds.append(time.perf_counter() - start)
    return seconds


def run_here() -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import mlemap as mm
    from mlemap import priors

    return dict(zip(LOOPS, (_ridge_alphas(mm, priors), _cv_folds(mm, priors),
                            _prior_scales_nuts(mm, priors))))


def compare(sources: list[str], repeats: int) -> None:
    runs = {src: [] for src in sources}
    for _ in range(repeats):
        for src in sources:  # alternating: both trees see the same load
            env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
            out = subprocess.run([sys.executable, __file__], env=env, check=True,
                                 capture_output=True, text=True).stdout
            runs[src].append(json.loads(out.splitlines()[-1]))
    print(json.dumps({"load": os.getloadavg(), "runs": runs}))
    head = " | ".join(f"{s}: first / next (median) / loop" for s in sources)
    print(f"\n| loop | {head} |\n| --- |" + " --- |" * len(sources))
    for loop in LOOPS:
        cells = []
        for src in sources:
            first = statistics.median(r[loop][0] for r in runs[src])
            rest = statistics.median(t for r in runs[src] for t in r[loop][1:])
            total = statistics.median(sum(r[loop]) for r in runs[src])
            cells.append(f"{first:.2f} s / {rest * 1e3:.0f} ms / {total:.2f} s")
        print(f"| {loop} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs="+", metavar="SRC")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.repeats)
    else:
        print(json.dumps(run_here()))
