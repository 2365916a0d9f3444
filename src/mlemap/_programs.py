"""Compiled programs: one store per model, freed with it.

Every compiled program of mlemap (``fit``'s solve, start check and probes; ``laplace``'s
Hessian, Jacobian and draws; ``sample``'s NUTS, start and post-processing programs) and every
memo of a check (the data layouts whose log-likelihood was checked to be pointwise) lives in
one place: the dictionary ``model._programs``, under a key that says what it is (the kind of
program and the static settings it was built for).

The rule is one owner, the model, for a reason: a program refers to its model (it calls the
model's log-likelihood), so a module-level cache keyed by the model, even a
``WeakKeyDictionary``, would keep every model alive for ever. Kept on the model itself, the
two form a cycle that the garbage collector frees as soon as the user drops the model.

A program is either a ``jax.jit`` function (:func:`program`), which compiles once per shapes
and dtypes of its arguments (data and priors are arguments, never constants), or, where the
compile time is reported to the user (``sample``), an ahead-of-time executable keyed also by
the arguments' signature (:func:`compiled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import numpy as np

__all__ = ["program", "compiled", "Compiled", "signature", "sharding_key"]

T = TypeVar("T")


def program(model, key: tuple, build: Callable[[], T]) -> T:
    """``build()``, made once per model and ``key`` and kept on the model."""
    store = model._programs
    if key not in store:
        store[key] = build()
    return store[key]


class Compiled(NamedTuple):
    """An ahead-of-time executable and the seconds its compilation took (0 when reused)."""

    run: Callable
    compile_seconds: float


def compiled(model, key: tuple, build: Callable[[], Callable], *args) -> Compiled:
    """``jax.jit(build())`` compiled for the shapes of ``args``, once per model and key."""
    full_key = (key, signature(args))
    run = model._programs.get(full_key)
    if run is not None:
        return Compiled(run, 0.0)
    start = time.perf_counter()
    run = jax.jit(build()).lower(*args).compile()
    model._programs[full_key] = run
    return Compiled(run, time.perf_counter() - start)


def signature(args: Any) -> tuple:
    """Hashable description of a pytree of arrays: its structure and, per leaf, the shape,
    dtype, weak type and (multi-device) sharding that a compiled program is specialized to."""
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple(
        (tuple(np.shape(x)), str(x.dtype if hasattr(x, "dtype") else np.result_type(x)),
         bool(getattr(x, "weak_type", False)), sharding_key(x))
        for x in leaves
    )


def sharding_key(x):
    """The sharding of an array laid out over several devices, else None."""
    sharding = getattr(x, "sharding", None)
    if sharding is None or len(sharding.device_set) <= 1:
        return None
    return sharding
