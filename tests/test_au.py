"""AUs: geometric features and their invariances, the neutral baseline, the au node, the onnx backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from facegraph.nodes.face import _au_geometry as g
from facegraph.nodes.face import _headpose as hp
from facegraph.nodes.face.au import AU

from facegraph.testing import run_node, run_node_frames

NEUTRAL = (hp.MODEL_68_MM[:, :2] * 2.0 + [320.0, 240.0]).astype(np.float32)


def _au(values: np.ndarray, name: str) -> float:
    return float(np.asarray(values).reshape(-1, len(g.ESTIMATED))[0, list(g.ESTIMATED).index(name)])


def _smile(pts: np.ndarray, amount: float = 1.0) -> np.ndarray:
    p = pts.copy()
    centre = p[48:68].mean(0)
    p[48:68, 0] = centre[0] + (p[48:68, 0] - centre[0]) * (1 + 0.3 * amount)  # wider mouth
    p[[48, 54, 49, 53, 59, 55, 60, 64], 1] -= 8.0 * amount  # corners up
    return p


def _close_eyes(pts: np.ndarray) -> np.ndarray:
    p = pts.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        mid = (p[upper, 1] + p[lower, 1]) / 2
        p[upper, 1] = p[lower, 1] = mid
    return p


def _open_mouth(pts: np.ndarray, drop: float = 25.0) -> np.ndarray:
    p = pts.copy()
    p[[55, 56, 57, 58, 59, 65, 66, 67], 1] += drop
    p[5:12, 1] += drop
    return p


def test_features_ignore_scale_roll_and_translation():
    base = g.features(NEUTRAL)
    a = np.radians(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = (NEUTRAL - 300) @ rot.T * 0.4 + [50, 80]
    np.testing.assert_allclose(g.features(moved), base, atol=1e-9)


def test_frontalising_removes_a_head_turn():
    k = hp.camera_matrix(*hp.default_intrinsics(640, 480))
    frontal = hp.project(hp.MODEL_68_MM, np.zeros(3), np.array([0, 0, 800.0]), k)
    turned_angles = np.radians([15.0, 30.0, 5.0])
    turned = hp.project(hp.MODEL_68_MM, turned_angles, np.array([0, 0, 800.0]), k)
    f0 = g.features(frontal)
    naive = g.features(turned)
    fixed = g.features(turned, turned_angles[None])
    assert np.abs(fixed - f0).max() < 0.6 * np.abs(naive - f0).max()
    assert np.abs(fixed - f0).max() < 0.07  # what is left is perspective, which the orthographic model ignores


def test_neutral_face_reads_zero_and_expressions_raise_their_aus():
    base = g.features(NEUTRAL)
    assert np.all(g.intensities(base, base) == 0)
    smile = g.intensities(g.features(_smile(NEUTRAL)), base)
    assert _au(smile, "AU12") > 3 and _au(smile, "AU15") < 1e-6 and _au(smile, "AU45") < 0.5
    blink = g.intensities(g.features(_close_eyes(NEUTRAL)), base)
    assert _au(blink, "AU45") == 5 and _au(blink, "AU05") == 0 and _au(blink, "AU12") < 1e-6
    mouth = g.intensities(g.features(_open_mouth(NEUTRAL)), base)
    assert _au(mouth, "AU25") > 2 and _au(mouth, "AU26") > 2 and _au(mouth, "AU12") < 0.5


def test_baseline_is_per_track_and_robust_to_brief_expressions():
    bl = g.NeutralBaseline(window=50)
    neutral = g.features(NEUTRAL)[0]
    smile = g.features(_smile(NEUTRAL))[0]
    for _ in range(20):
        bl.update([1], neutral[None])
    for _ in range(10):  # a 10-frame smile does not move track 1's neutral
        got = bl.update([1, 2], np.stack([smile, smile]))
    np.testing.assert_allclose(got[0], neutral, atol=1e-4)
    np.testing.assert_allclose(got[1], smile, atol=1e-9)  # track 2 has only ever smiled: that is its neutral
    assert sorted(bl.tracks()) == [1, 2]


def test_baseline_adapts_within_its_window_and_forgets_stale_tracks():
    bl = g.NeutralBaseline(window=20)
    a, b = g.features(NEUTRAL)[0], g.features(_open_mouth(NEUTRAL, 5.0))[0]
    for _ in range(20):
        bl.update([1], a[None])
    for _ in range(20):
        got = bl.update([1], b[None])
    np.testing.assert_allclose(got[0], b, atol=1e-9)  # a lasting change becomes the new neutral
    for _ in range(25):
        bl.update([2], a[None])
    assert bl.tracks() == [2]


def test_node_names_only_what_it_estimates_and_keeps_tracks():
    frames = []
    for i in range(40):
        pts = _smile(NEUTRAL) if 30 <= i < 35 else NEUTRAL
        frames.append({"landmarks": {"points": np.stack([pts, NEUTRAL]), "track_id": np.array([3, 8], np.int32)}})
    frames.append({"landmarks": {"points": np.zeros((0, 68, 2), np.float32)}})
    outs = run_node_frames(AU(), frames)
    aus = outs[32]["aus"]
    assert aus["names"] == list(g.ESTIMATED) and set(aus["names"]) <= set(g.OPENFACE_AUS)
    assert "AU07" not in aus["names"] and "AU20" not in aus["names"]
    assert aus["intensity"].shape == (2, len(g.ESTIMATED)) and aus["intensity"].dtype == np.float32
    assert _au(aus["intensity"][0], "AU12") > 2.5 and _au(aus["intensity"][1], "AU12") == 0
    assert aus["track_id"].tolist() == [3, 8]
    assert outs[-1]["aus"]["intensity"].shape == (0, len(g.ESTIMATED))


def test_node_uses_a_connected_pose(monkeypatch):
    """A neutral face turned 30° reads neutral with its true pose connected, and does not with a wrong one."""
    k = hp.camera_matrix(*hp.default_intrinsics(640, 480))
    t = np.array([[0, 0, 700.0]], np.float32)
    track = np.array([1], np.int32)

    def face(rotation):
        return hp.project(hp.MODEL_68_MM, np.asarray(rotation, float), t[0], k).astype(np.float32)[None]

    def frames(given_rotation):
        """20 frontal neutral frames (the track's neutral), then the face turned 30° with the given pose."""
        front = {"landmarks": {"points": face(np.zeros(3)), "track_id": track},
                 "pose": {"rotation": np.zeros((1, 3), np.float32), "translation": t, "track_id": track}}
        turned = {"landmarks": {"points": face(yaw), "track_id": track},
                  "pose": {"rotation": np.asarray(given_rotation, np.float32)[None], "translation": t,
                           "track_id": track}}
        return [front] * 20 + [turned]

    def own_estimate(*args, **kwargs):
        raise AssertionError("the node estimated a pose although one is connected")

    monkeypatch.setattr(AU, "_rotations", own_estimate)
    yaw = np.radians([0.0, 30.0, 0.0]).astype(np.float32)
    right = run_node_frames(AU(), frames(yaw))[-1]["aus"]["intensity"][0]
    wrong = run_node_frames(AU(), frames(np.zeros(3)))[-1]["aus"]["intensity"][0]
    assert right.max() < 0.3  # frontalised by the connected pose: (almost) the neutral it learnt
    assert wrong.max() > 1.5  # told it faces the camera, the turned face reads as an expression
    assert _au(wrong, "AU01") > 1.0 and _au(right, "AU01") < 0.1


# --- onnx backend -------------------------------------------------------------------------------


def _export(tmp_path, net, example, meta: dict) -> str:
    torch = pytest.importorskip("torch")
    import warnings

    path = tmp_path / "au_net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen for speed
        torch.onnx.export(net, example, str(path), input_names=["x"], output_names=["au"],
                          dynamic_axes={"x": {0: "n"}, "au": {0: "n"}}, opset_version=17, dynamo=False)
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    return str(path)


def _crop_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 17),
    ).eval()


@pytest.mark.parametrize("n", [0, 1, 3])
def test_onnx_backend_on_crops_agrees_with_torch(tmp_path, n):
    torch = pytest.importorskip("torch")
    net = _crop_net()
    meta = {"input": "crops", "input_size": 32, "mean": [127.5, 127.5, 127.5], "std": [64.0, 64.0, 64.0],
            "color": "rgb", "names": list(g.OPENFACE_AUS)}
    path = _export(tmp_path, net, torch.zeros(1, 3, 32, 32), meta)
    crops = np.random.default_rng(n).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    landmarks = {"points": np.tile(NEUTRAL, (n, 1, 1))}
    inputs = {"landmarks": landmarks, "crops": {"images": crops, "matrices": np.zeros((n, 2, 3), np.float32)}}
    out = run_node(AU(backend="onnx", model=path), inputs)["aus"]
    x = (crops[..., ::-1].astype(np.float32) - 127.5) / 64.0
    with torch.no_grad():
        ref = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy() if n else np.zeros((0, 17))
    assert out["names"] == list(g.OPENFACE_AUS) and out["intensity"].shape == (n, 17)
    np.testing.assert_allclose(out["intensity"], ref, atol=1e-4)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_onnx_backend_on_landmarks_agrees_with_torch(tmp_path, n):
    torch = pytest.importorskip("torch")
    from facegraph.nodes.face.au import landmark_input

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(136, 32), torch.nn.Tanh(), torch.nn.Linear(32, 17)).eval()
    path = _export(tmp_path, net, torch.zeros(1, 136), {"input": "landmarks", "names": list(g.OPENFACE_AUS)})
    pts = (NEUTRAL[None] + np.random.default_rng(n).normal(0, 2, (n, 68, 2))).astype(np.float32)
    out = run_node(AU(backend="onnx", model=path), {"landmarks": {"points": pts}})["aus"]
    with torch.no_grad():
        ref = net(torch.from_numpy(landmark_input(pts))).numpy() if n else np.zeros((0, 17))
    np.testing.assert_allclose(out["intensity"], ref, atol=1e-4)


def test_onnx_backend_needs_a_model():
    from facegraph import ModelError, ParamError

    with pytest.raises(ParamError, match="model"):
        AU(backend="onnx")
    assert AU.requirements({"backend": "onnx", "model": "/nope/au.onnx"})
    with pytest.raises(Exception, match=r"/nope/au\.onnx: AU model file not found") as info:
        run_node(AU(backend="onnx", model="/nope/au.onnx"), {"landmarks": {"points": NEUTRAL[None]}})
    assert isinstance(info.value.__cause__, ModelError)
