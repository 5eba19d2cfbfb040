"""jacnet.structure: masks from ties, bands and the diagonal, and counts from the shapes alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jacnet.structure import Band, Structure


@settings(max_examples=60, deadline=None)
@given(out_size=st.integers(1, 7), in_size=st.integers(1, 7), step=st.integers(-3, 3),
       offset=st.integers(-3, 3), width=st.integers(1, 5))
def test_band_count_is_the_brute_force_count(out_size: int, in_size: int, step: int, offset: int,
                                             width: int) -> None:
    band = Band(0, 0, step, offset, width)
    brute = sum(0 <= s - t * step + offset < width for t in range(out_size) for s in range(in_size))
    assert band.count(out_size, in_size) == brute
    mask = Structure(bands=(band,)).mask((out_size,), (in_size,))
    assert int(mask.sum()) == brute


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 3), C=st.integers(1, 3), L=st.integers(1, 6), K=st.integers(1, 3))
def test_counts_equal_the_masks(N: int, C: int, L: int, K: int) -> None:
    out, inp = (N, C, L), (N, C, L + K)
    for structure in (Structure(), Structure(ties=((0, 0),)), Structure(ties=((0, 0), (1, 1))),
                      Structure(ties=((0, 0),), bands=(Band(2, 2, 1, 0, K),)),
                      Structure(ties=((2, 0),))):
        assert structure.count(out, inp) == int(structure.mask(out, inp).sum())
    square = (N, C, L)
    diagonal = Structure(diagonal=True)
    np.testing.assert_array_equal(diagonal.mask(square, square).reshape(N * C * L, -1),
                                  np.eye(N * C * L, dtype=bool))
    assert diagonal.count(square, square) == N * C * L


def test_a_tie_is_a_delta() -> None:
    mask = Structure(ties=((0, 0),)).mask((2, 3), (2, 4))  # δ_ik of an affine layer in X
    assert mask.shape == (2, 3, 2, 4)
    assert mask[1, 2, 1, 3] and not mask[0, 2, 1, 3]


def test_each_axis_in_one_relation_only() -> None:
    with pytest.raises(ValueError, match="one tie or band"):
        Structure(ties=((0, 0), (0, 1)))
    with pytest.raises(ValueError, match="diagonal alone"):
        Structure(ties=((0, 0),), diagonal=True)
