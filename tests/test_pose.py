"""Head pose: solvePnP round trips on the mean face, OpenFace's Euler convention, the pose node."""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.face import _headpose as hp
from facegraph.nodes.face.pose import Pose

from facegraph import PortValueError
from facegraph.testing import run_node, run_node_frames

K640 = hp.camera_matrix(*hp.default_intrinsics(640, 480))


def _face(deg: tuple[float, float, float], t: tuple[float, float, float] = (20.0, -10.0, 600.0)) -> np.ndarray:
    return hp.project(hp.MODEL_68_MM, np.radians(deg), np.array(t), K640).astype(np.float32)


@pytest.mark.parametrize(
    "deg", [(0, 0, 0), (10, -25, 5), (-20, 30, -10), (25, 5, 15), (-5, -40, 0), (0, 0, 30)]
)
def test_solvepnp_recovers_known_rotation_within_one_degree(deg):
    euler, t, _ = hp.solve_pose(_face(deg), K640)
    assert np.abs(np.degrees(euler) - np.array(deg)).max() < 1.0
    assert np.abs(t - np.array([20.0, -10.0, 600.0])).max() < 5.0


def test_euler_convention_is_openface_xyz():
    a, b, c = np.radians([12.0, -31.0, 7.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    r = hp.euler_to_matrix([a, b, c])
    np.testing.assert_allclose(r, rx @ ry @ rz, atol=1e-12)
    np.testing.assert_allclose(hp.matrix_to_euler(r), [a, b, c], atol=1e-12)


def test_signs_positive_yaw_moves_nose_left_positive_pitch_moves_it_down():
    frontal = _face((0, 0, 0))
    yawed = _face((0, 20, 0))
    pitched = _face((20, 0, 0))
    nose, centre = 30, slice(0, 68)
    assert yawed[nose, 0] - yawed[centre, 0].mean() < frontal[nose, 0] - frontal[centre, 0].mean() - 5
    assert pitched[nose, 1] - pitched[centre, 1].mean() > frontal[nose, 1] - frontal[centre, 1].mean() + 5


def test_default_intrinsics_are_openfaces():
    assert hp.default_intrinsics(640, 480) == (500.0, 500.0, 320.0, 240.0)
    fx, fy, cx, cy = hp.default_intrinsics(1280, 720)
    assert fx == fy == pytest.approx((1000.0 + 750.0) / 2) and (cx, cy) == (640.0, 360.0)


def test_node_all_faces_one_call_with_track_ids_and_frame_size():
    pts = np.stack([_face((0, 20, 0)), _face((10, -15, 5), (-150.0, 30.0, 800.0))])
    frame = {"image": np.zeros((480, 640, 3), np.uint8)}
    out = run_node(Pose(), {"landmarks": {"points": pts, "track_id": np.array([4, 9], np.int32)}, "frame": frame})
    pose = out["pose"]
    assert pose["rotation"].shape == (2, 3) and pose["rotation"].dtype == np.float32
    np.testing.assert_allclose(np.degrees(pose["rotation"]), [[0, 20, 0], [10, -15, 5]], atol=1.0)
    np.testing.assert_allclose(pose["translation"][1], [-150.0, 30.0, 800.0], atol=8.0)
    assert pose["track_id"].tolist() == [4, 9]


def test_node_uses_previous_pose_per_track_and_handles_zero_faces(monkeypatch):
    """Each track's solvePnP starts from that track's last pose; a new track or an untracked face starts cold."""
    import facegraph.nodes.face.pose as pose_module

    starts: list[hp.PoseState | None] = []
    solved: list[hp.PoseState] = []

    def spy(points, k, previous=None, *rest):
        starts.append(previous)
        result = hp.solve_pose(points, k, previous, *rest)
        solved.append(result[2])
        return result

    monkeypatch.setattr(pose_module, "solve_pose", spy)
    one, two = np.array([1], np.int32), np.array([2], np.int32)
    frames = [{"landmarks": {"points": _face((0, y, 0))[None], "track_id": one}} for y in (0, 5, 10)]
    frames.append({"landmarks": {"points": _face((0, 10, 0))[None], "track_id": two}})
    frames.append({"landmarks": {"points": _face((0, 10, 0))[None]}})
    frames.append({"landmarks": {"points": np.zeros((0, 68, 2), np.float32)}})
    outs = run_node_frames(Pose(), frames)
    yaws = [np.degrees(o["pose"]["rotation"][0, 1]) for o in outs[:3]]
    np.testing.assert_allclose(yaws, [0, 5, 10], atol=1.0)
    assert starts[0] is None and starts[1] is solved[0] and starts[2] is solved[1]  # track 1: warm
    assert starts[3] is None and starts[4] is None  # track 2 is new; a face without a track id has no history
    assert outs[5]["pose"]["rotation"].shape == (0, 3)


def test_focal_length_param_overrides_default():
    k = hp.camera_matrix(900.0, 900.0, 320.0, 240.0)
    pts = hp.project(hp.MODEL_68_MM, np.radians([5, 10, 0]), np.array([0.0, 0.0, 700.0]), k).astype(np.float32)
    out = run_node(Pose(fx=900.0), {"landmarks": {"points": pts[None]}})
    assert out["pose"]["translation"][0, 2] == pytest.approx(700.0, abs=5.0)
    np.testing.assert_allclose(np.degrees(out["pose"]["rotation"][0]), [5, 10, 0], atol=1.0)


def test_wrong_point_count_is_a_clear_error():
    with pytest.raises(Exception, match="68-point") as info:
        run_node(Pose(), {"landmarks": {"points": np.zeros((1, 468, 2), np.float32)}})
    assert isinstance(info.value, PortValueError) or isinstance(info.value.__cause__, PortValueError)
