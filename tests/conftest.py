"""Shared test set-up: hypothesis profiles and a seeded random generator.

Profiles: ``ci`` (the default) is small and deterministic so the suite is fast and every run
tests the same examples; ``dev`` searches much harder. Pick one with the environment variable
``HYPOTHESIS_PROFILE``, e.g. ``HYPOTHESIS_PROFILE=dev pytest tests``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# The benchmark suite (`bench/`) lives beside `src/`, not in the package: its tests import it.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: The one seed every non-hypothesis test draws its random data from.
SEED = 20_240_917


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed, so each test sees the same numbers every run."""
    return np.random.default_rng(SEED)
