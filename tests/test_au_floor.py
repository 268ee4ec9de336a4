"""Each person's AU floor taken off after a video (OpenFace's offline offset), for the AU nets."""

from __future__ import annotations

import numpy as np
from facegraph.nodes.models.au_floor import FLOOR_QUANTILE, FloorBook, floor_of, subtract_floors


def test_each_persons_floor_is_their_own_quantile_and_unread_faces_stay_unread():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 4, (40, 3))
    values[5] = np.nan  # a face the backend could not read
    groups = np.array([7] * 25 + [9] * 15)
    got = subtract_floors(values, groups)
    for g in (7, 9):
        rows = groups == g
        read = rows & ~np.isnan(values).any(1)
        want = np.clip(values[rows] - np.quantile(values[read], FLOOR_QUANTILE, axis=0), 0, 5)
        np.testing.assert_allclose(got[rows], want)
    assert np.isnan(got[5]).all()
    assert np.allclose((got[groups == 9] == 0).mean(0), 4 / 15)  # the bottom quarter of 15 values reads 0
    np.testing.assert_allclose(floor_of(np.full((2, 3), np.nan)), 0.0)


def test_floor_book_keeps_frames_and_tracks_in_order():
    book = FloorBook()
    assert book.revised(2)["intensity"].shape == (0, 2)
    book.add(0, np.array([1, 2]), np.array([[1.0, 2.0], [3.0, 3.0]]))
    book.add(1, np.array([1]), np.array([[2.0, 4.0]]))
    out = book.revised(2)
    assert out["frame_id"].tolist() == [0, 0, 1] and out["track_id"].tolist() == [1, 2, 1]
    np.testing.assert_allclose(out["intensity"], subtract_floors([[1, 2], [3, 3], [2, 4]], [1, 2, 1]))
    assert out["success"].all()
