"""Test configuration: float64 everywhere, rank promotion raises, fixed seeds.

Warnings are errors (pyproject.toml's ``filterwarnings``); only named third-party warnings
are let through there.
"""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED = Path(__file__).resolve().parents[2] / "shared"
POSTERIORDB = SHARED / "reference" / "posteriordb"


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for each test."""
    return np.random.default_rng(20261128)


@pytest.fixture
def rng_key():
    return jax.random.key(20261128)


# jax.monitoring's compile events (public API): one per XLA compilation.
_COMPILES = []


def _count_compile(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES.append(event)


@pytest.fixture
def compiles():
    """The number of XLA compilations so far, as a function (for tests that count them)."""
    jax.monitoring.register_event_duration_secs_listener(_count_compile)
    yield lambda: len(_COMPILES)
    jax.monitoring.unregister_event_duration_listener(_count_compile)
