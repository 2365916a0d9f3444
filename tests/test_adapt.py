"""mlemap._adapt: the warm-up's windows and the seeded step size.

The schedule's rule (module docstring): two step-size rounds of min(50, num_warmup // 6)
iterations end the warm-up (none when that is below 10); metric windows of 30, 60, 120, 240,
... iterations when seeded from the mode, nutpie's 10, 10, 10, 20, 40, 80, 160, ... when not,
fill the rest; the last window that fits is stretched to its end.
"""

import numpy as np
import pytest
from scipy.stats import norm

from mlemap import _adapt


@pytest.mark.parametrize(
    ("num_warmup", "seeded", "ends", "round_length"),
    [
        # 1000: rounds of 50, windows fill 900; seeded 30+60+120+240 = 450, 480 more is 930
        (1000, True, (30, 90, 210, 900), 50),
        # unseeded: 10, 20, 30, 50, 90, 170, 330, 650; 1290 > 900
        (1000, False, (10, 20, 30, 50, 90, 170, 330, 900), 50),
        # 300: rounds of 50 (300 // 6), windows fill 200: 30, 90; 210 > 200, so the
        # window ending at 90 is stretched to 200
        (300, True, (30, 200), 50),
        # 120: rounds of 20, windows fill 80
        (120, True, (80,), 20),
        (120, False, (10, 20, 30, 80), 20),
        # 50: rounds of 8 are too short (none); windows fill all 50
        (50, True, (50,), 0),
        (50, False, (10, 20, 30, 50), 0),
        (5, True, (5,), 0),
        (0, True, (), 0),
    ],
)
def test_windows_follow_the_schedule(num_warmup, seeded, ends, round_length):
    assert _adapt.windows(num_warmup, seeded) == (ends, round_length)


@pytest.mark.parametrize("num_warmup", [0, 1, 9, 10, 59, 60, 61, 200, 333, 1000, 4000])
@pytest.mark.parametrize("seeded", [True, False])
def test_windows_fill_the_warmup_exactly(num_warmup, seeded):
    ends, round_length = _adapt.windows(num_warmup, seeded)
    budget = num_warmup - _adapt.CALIBRATION_ROUNDS * round_length
    assert round_length == 0 or 10 <= round_length <= _adapt.ROUND_LENGTH
    assert _adapt.CALIBRATION_ROUNDS * round_length <= num_warmup / 3
    assert list(ends) == sorted(set(ends)) and all(e > 0 for e in ends)
    assert (ends[-1] if ends else 0) == budget
    sizes = np.diff((0, *ends))
    nominal = _adapt.SEEDED_WINDOWS if seeded else _adapt.UNSEEDED_WINDOWS
    for i, size in enumerate(sizes[:-1]):  # all but the last have their nominal length
        expected = nominal[i] if i < len(nominal) else nominal[-1] * 2 ** (i - len(nominal) + 1)
        assert size == expected


def test_windows_grow_with_the_warmup():
    """A longer warm-up never has fewer windows (more chances to settle early)."""
    counts = [len(_adapt.windows(n, True)[0]) for n in range(0, 5000, 37)]
    assert counts == sorted(counts)


def test_seed_step_size_closed_form():
    """0.6 on a 50-dimensional standard normal at target 0.8; h^-1/2, d^-1/4 and the
    high-dimension acceptance 2 Phi(-c eps^2) scale it."""
    assert _adapt.seed_step_size(1.0, 50, 0.8) == pytest.approx(0.6, rel=1e-12)
    assert _adapt.seed_step_size(4.0, 50, 0.8) == pytest.approx(0.3, rel=1e-12)
    assert _adapt.seed_step_size(1.0, 800, 0.8) == pytest.approx(0.3, rel=1e-12)
    ratio = norm.ppf(0.95 / 2) / norm.ppf(0.8 / 2)
    assert _adapt.seed_step_size(1.0, 50, 0.95) == pytest.approx(0.6 * np.sqrt(ratio), rel=1e-12)


def test_strict_target_is_halfway_to_one():
    assert _adapt.strict_target(0.8) == pytest.approx(0.9)
    assert _adapt.strict_target(0.99) == pytest.approx(0.995)
