"""Compiled programs: one store per model *structure*, shared by the models of that structure
and freed with the last of them.

Every compiled program of mlemap (``fit``'s solve, start check and probes; ``laplace``'s
Hessian, Jacobian and draws; ``sample``'s NUTS, start and post-processing programs;
``predict``'s draws) and every memo of a check (the data layouts whose log-likelihood was
checked to be pointwise) lives in one place: the dictionary of the model's
:class:`Structure`, under a key that says what it is (the kind of program and the static
settings it was built for).

**What a program depends on** is the structure of its model, :func:`structure_key`: the
functions (``log_likelihood``, ``derived``, ``init`` and the conditional priors, by
identity), and each parameter's name, shape and support. Not the data and not the values
of the priors: both are *arguments* of every program (the host passes every non-conditional
prior, the model's own with the overrides applied: :func:`mlemap._density.argument_priors`).
Not the names, runaway hints or data check either: the host reads those. So two models of the
same structure (two ``mm.glm`` of the same family and shapes, whose priors differ in scale;
two ``mm.Model`` built from the same functions and equal Params) run the same programs, and
a loop that builds a new model per dataset or per prior compiles once.

**Ownership rule.** Each model holds its structure (``model._structure``, set on first use);
a module-level ``WeakValueDictionary`` maps a structure key to the structure while some model
holds it. A structure builds its programs from its own *skeleton*: a model with the
structure's functions and parameters, whose proper priors are dropped (they are arguments),
so that no program refers to a user's model. When the last model of a structure is dropped,
nothing refers to the structure any more: it is freed with its programs, and the dictionary
forgets it. (A module-level cache keyed by the model, whose programs refer to the model,
would instead keep every model of a loop alive.)

A program is either a ``jax.jit`` function (:func:`program`), which compiles once per shapes
and dtypes of its arguments, or, where the compile time is reported to the user
(``sample``), an ahead-of-time executable keyed also by the arguments' signature
(:func:`compiled`). Both take a ``build(model)`` that builds the program for the skeleton.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import numpy as np

__all__ = ["program", "compiled", "Compiled", "signature", "sharding_key", "Structure",
           "structure_of", "structure_key"]

T = TypeVar("T")


class Structure:
    """The programs shared by the models of one structure, and the skeleton they are built
    for (the structure's functions and parameters, without the proper priors)."""

    def __init__(self, key: tuple):
        self.key = key
        self.programs: dict = {}
        self._skeleton = None

    def skeleton(self, model):
        """The model the programs are built for: made once, from the functions and
        parameters of ``model`` (a model of this structure), with its conditional priors
        (structure) and without its proper priors (arguments)."""
        if self._skeleton is None:
            from mlemap._model import Model, Param, _is_conditional

            params = {name: Param(p.shape, p.constraint,
                                  p.prior if _is_conditional(p.prior) else None)
                      for name, p in model.params.items()}
            self._skeleton = Model(params, model.log_likelihood, derived=model.derived,
                                   init=model.init)
        return self._skeleton


_STRUCTURES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def structure_of(model) -> Structure:
    """The model's structure: found by its key among the live ones, or made, and kept on
    the model. ``Model`` calls it when it is built: a loop that builds the next model before
    it drops the last (``model, data = mm.glm(...)``) finds the structure alive."""
    structure = model.__dict__.get("_structure")
    if structure is not None:
        return structure
    key = structure_key(model)
    with _LOCK:
        structure = _STRUCTURES.get(key)
        if structure is None:
            structure = Structure(key)
            _STRUCTURES[key] = structure
    object.__setattr__(model, "_structure", structure)
    return structure


def structure_key(model) -> tuple:
    """What every compiled program of a model depends on: its functions (by identity) and,
    per parameter, the name, shape, support (by value) and conditional prior (by identity)."""
    from mlemap._model import _is_conditional

    params = tuple((name, p.shape, _constraint_key(p.constraint),
                    p.prior if _is_conditional(p.prior) else None)
                   for name, p in model.params.items())
    return (params, model.log_likelihood, model.derived, model.init)


def _constraint_key(constraint) -> tuple:
    """A NumPyro constraint by value: its class and its attributes (bounds as bytes, nested
    constraints by their own key)."""
    from numpyro.distributions.constraints import Constraint

    items = []
    for name, value in sorted(vars(constraint).items()):
        if isinstance(value, Constraint):
            items.append((name, _constraint_key(value)))
        else:
            array = np.asarray(value)
            items.append((name, array.shape, array.dtype.str, array.tobytes()))
    return (type(constraint), tuple(items))


def program(model, key: tuple, build: Callable[[Any], T]) -> T:
    """``build(skeleton)``, made once per structure and ``key`` and kept with the structure."""
    structure = structure_of(model)
    store = structure.programs
    if key not in store:
        store[key] = build(structure.skeleton(model))
    return store[key]


class Compiled(NamedTuple):
    """An ahead-of-time executable and the seconds its compilation took (0 when reused)."""

    run: Callable
    compile_seconds: float


def compiled(model, key: tuple, build: Callable[[Any], Callable], *args) -> Compiled:
    """``jax.jit(build(skeleton))`` compiled for the shapes of ``args``, once per structure
    and key."""
    structure = structure_of(model)
    full_key = (key, signature(args))
    run = structure.programs.get(full_key)
    if run is not None:
        return Compiled(run, 0.0)
    start = time.perf_counter()
    run = jax.jit(build(structure.skeleton(model))).lower(*args).compile()
    structure.programs[full_key] = run
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
