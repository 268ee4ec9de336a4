"""FaceMesh maths without models: the 468 → 68 table, ROI and crop warps, keypoints from the mesh."""

from __future__ import annotations

import math

import numpy as np
import pytest
from facegraph.nodes.face import _facemesh as fm


def test_ibug_table_is_68_unique_mesh_indices():
    table = fm.IBUG68_FROM_MESH
    assert len(table) == 68
    assert len(set(table)) == 68
    assert all(0 <= i < 468 for i in table)
    assert table[8] == 152  # chin
    assert (table[36], table[45]) == fm.MESH_EYE_CORNERS
    assert (table[48], table[54]) == fm.MESH_MOUTH


def test_to_ibug68_picks_the_table():
    pts = np.arange(2 * 468 * 3, dtype=np.float32).reshape(2, 468, 3)
    out = fm.to_ibug68(pts)
    assert out.shape == (2, 68, 2)
    np.testing.assert_array_equal(out[1, 8], pts[1, 152, :2])


@pytest.mark.parametrize("angle", [0.0, 0.3, -1.2])
def test_crop_matrix_round_trip_and_centre(angle):
    roi = fm.Roi(320.0, 240.0, 200.0, angle)
    m = fm.crop_matrix(roi, 192)
    centre = m[:, :2] @ [320.0, 240.0] + m[:, 2]
    np.testing.assert_allclose(centre, [96, 96], atol=1e-9)
    crop_pts = np.array([[0.0, 0.0, 10.0], [192.0, 96.0, -5.0]])
    back = fm.to_frame(crop_pts, m)
    again = back[:, :2] @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(again, crop_pts[:, :2], atol=1e-9)
    np.testing.assert_allclose(back[:, 2], crop_pts[:, 2] * 200 / 192)
    # the crop's x axis runs along the eye line
    right = fm.to_frame(np.array([[96.0 + 10, 96.0]]), m)[0] - [320.0, 240.0]
    assert math.atan2(right[1], right[0]) == pytest.approx(angle)


def test_roi_from_kps_is_roll_aware_and_box_independent():
    kps = np.array([[100, 100], [140, 100], [120, 120], [105, 140], [135, 140]], np.float32)
    a = fm.roi_from_kps(kps, np.array([80, 70, 160, 160]))
    b = fm.roi_from_kps(kps, np.array([60, 40, 180, 190]))  # another detector's bigger box
    assert a == b
    assert a.angle == pytest.approx(0.0)
    assert a.size == pytest.approx(2.3 * 40 * 1.5)
    rot = fm.roi_from_kps(kps[[0, 1, 2, 3, 4]] @ np.array([[0, 1], [-1, 0]], np.float32), np.array([0, 0, 1, 1]))
    assert rot.angle == pytest.approx(math.pi / 2)
    # collapsed keypoints (a detector without them) fall back to the box
    flat = np.repeat([[120.0, 115.0]], 5, axis=0)
    assert fm.roi_from_kps(flat, np.array([80, 70, 160, 160])) == fm.roi_from_box(np.array([80, 70, 160, 160]))


def test_roi_from_points_measures_the_rotated_extent():
    pts = np.zeros((468, 2))
    pts[:, 0] = np.linspace(-50, 50, 468)
    pts[:, 1] = np.tile([-30.0, 30.0], 234)
    pts[33], pts[263] = [-40, 0], [40, 0]
    c, s = math.cos(0.5), math.sin(0.5)
    rotated = pts @ np.array([[c, s], [-s, c]]) + [300, 200]
    roi = fm.roi_from_points(rotated, 33, 263, scale=1.5)
    assert roi.angle == pytest.approx(0.5)
    assert (roi.cx, roi.cy) == pytest.approx((300, 200))
    assert roi.size == pytest.approx(150)


def test_mesh_and_ibug_keypoints_order():
    mesh = np.zeros((468, 3), np.float32)
    mesh[list(fm.MESH_LEFT_EYE), 0] = 10
    mesh[list(fm.MESH_RIGHT_EYE), 0] = 50
    mesh[fm.MESH_NOSE_TIP] = [30, 40, 0]
    kps = fm.mesh_kps(mesh)
    assert kps[0, 0] == 10 and kps[1, 0] == 50 and kps[2].tolist() == [30, 40]
    ibug = np.zeros((68, 2), np.float32)
    ibug[36:42] = [5, 5]
    ibug[48], ibug[54] = [1, 2], [3, 4]
    k = fm.ibug_kps(ibug)
    assert k[0].tolist() == [5, 5] and k[3].tolist() == [1, 2] and k[4].tolist() == [3, 4]
