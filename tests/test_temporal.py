"""Windowing rules of `temporal` (stride, timeout, z-score, AU join) without any model."""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.models._windows import TrackWindows, load_stats, zscore
from facegraph.nodes.models.temporal import Temporal

from facegraph import ModelError, NodeFailure
from facegraph.testing import run_node_frames


def vec(value: float, d: int = 3) -> np.ndarray:
    return np.full((1, d), value, np.float32)


def test_window_holds_last_t_vectors_oldest_first():
    w = TrackWindows(length=3)
    outs = [w.push(i, vec(i), np.array([7])) for i in range(5)]
    assert [len(ids) for _, ids in outs] == [0, 0, 1, 1, 1]
    seq, ids = outs[4]
    assert ids.tolist() == [7] and ids.dtype == np.int32
    assert seq.shape == (1, 3, 3) and seq.dtype == np.float32
    np.testing.assert_array_equal(seq[0, :, 0], [2, 3, 4])


@pytest.mark.parametrize(("length", "stride", "frames", "due_at"), [
    (1, 1, 4, [0, 1, 2, 3]),
    (3, 1, 6, [2, 3, 4, 5]),
    (3, 2, 8, [2, 4, 6]),
    (4, 3, 12, [3, 6, 9]),
])
def test_stride(length, stride, frames, due_at):
    w = TrackWindows(length=length, stride=stride)
    due = [i for i in range(frames) if len(w.push(i, vec(i), np.array([1]))[1])]
    assert due == due_at


def test_timeout_drops_a_track_and_it_restarts():
    w = TrackWindows(length=2, timeout=3)
    w.push(0, vec(0), np.array([1]))
    w.push(1, vec(1), np.array([1]))
    # away for 2 frames (within timeout): continues across the gap
    seq, ids = w.push(3, vec(3), np.array([1]))
    assert ids.tolist() == [1] and seq[0, :, 0].tolist() == [1, 3]
    # away longer than the timeout: forgotten, the window must fill again
    assert w.push(4, np.zeros((0, 3), np.float32), np.zeros(0, np.int32))[1].size == 0
    assert w.expire(7) == [1] and not w.tracks
    assert w.push(8, vec(8), np.array([1]))[1].size == 0
    seq, ids = w.push(9, vec(9), np.array([1]))
    assert seq[0, :, 0].tolist() == [8, 9]


def test_several_tracks_independent_and_in_input_order():
    w = TrackWindows(length=2)
    w.push(0, np.array([[1.0], [2.0]], np.float32), np.array([5, 9]))
    seq, ids = w.push(1, np.array([[20.0], [10.0]], np.float32), np.array([9, 5]))
    assert ids.tolist() == [9, 5]
    np.testing.assert_array_equal(seq[:, :, 0], [[2, 20], [1, 10]])
    # a new track does not emit before its own window is full
    _, ids = w.push(2, np.array([[3.0], [4.0]], np.float32), np.array([5, 11]))
    assert ids.tolist() == [5]


def test_zscore_and_stats_file(tmp_path):
    mean, std = np.array([1, 2, 3], np.float32), np.array([2, 0, 4], np.float32)
    np.savez(tmp_path / "feature_stats.npz", mean=mean, std=std)
    m, s = load_stats(tmp_path / "feature_stats.npz")
    np.testing.assert_array_equal(m, mean)
    x = np.array([[3, 2, 11]], np.float32)
    z = zscore(x, m, s)
    assert z[0, 0] == 1 and z[0, 1] == 0 and z[0, 2] == 2  # zero std stays finite
    w = TrackWindows(length=1, mean=m, std=s)
    seq, _ = w.push(0, x, np.array([0]))
    np.testing.assert_array_equal(seq[0, 0], z[0])
    with pytest.raises(ValueError, match="D=2 but feature stats have D=3"):
        w.push(1, np.zeros((1, 2), np.float32), np.array([0]))


def test_stats_file_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_stats(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(ModelError, match="'std'"):
        load_stats(tmp_path / "bad.npz")


def emb(rows: list[list[float]], ids: list[int] | None = None) -> dict:
    out = {"vec": np.asarray(rows, np.float32).reshape(len(rows), -1 if rows else 2)}
    if ids is not None:
        out["track_id"] = np.asarray(ids, np.int32)
    return {"vectors": out}


def test_node_emits_only_when_due():
    frames = [emb([[i, i]], [3]) for i in range(4)] + [emb([], [])]
    outs = run_node_frames(Temporal(length=2, stride=2), frames)
    assert [("window" in o) for o in outs] == [False, True, False, True, False]
    assert outs[1]["window"]["seq"].shape == (1, 2, 2)
    assert outs[3]["window"]["track_id"].tolist() == [3]
    np.testing.assert_array_equal(outs[3]["window"]["seq"][0, :, 0], [2, 3])


def test_node_without_track_ids_keys_by_row():
    outs = run_node_frames(Temporal(length=1), [emb([[1, 1], [2, 2]])])
    assert outs[0]["window"]["track_id"].tolist() == [0, 1]


def test_node_timeout_in_frames_uses_frame_ids():
    node = Temporal(length=2, timeout=1)
    gap = {"vectors": None}
    outs = run_node_frames(node, [emb([[0, 0]], [1]), gap, gap, emb([[3, 3]], [1]), emb([[4, 4]], [1])])
    assert [("window" in o) for o in outs] == [False, False, False, False, True]


def test_node_appends_aus_by_track(tmp_path):
    frame = emb([[1, 1], [2, 2]], [4, 8])
    frame["aus"] = {"intensity": np.array([[80.0], [40.0]], np.float32), "names": ["AU01"],
                    "track_id": np.array([8, 4], np.int32)}
    outs = run_node_frames(Temporal(length=1), [frame])
    np.testing.assert_array_equal(outs[0]["window"]["seq"][:, 0], [[1, 1, 40], [2, 2, 80]])


def test_node_stats_and_requirements(tmp_path):
    np.savez(tmp_path / "s.npz", mean=np.ones(2, np.float32), std=np.full(2, 2, np.float32))
    outs = run_node_frames(Temporal(length=1, stats=str(tmp_path / "s.npz")), [emb([[3, 5]], [0])])
    np.testing.assert_allclose(outs[0]["window"]["seq"][0, 0], [1, 2])
    assert Temporal.requirements({"stats": str(tmp_path / "s.npz")}) == []
    assert "feature stats" in Temporal.requirements({"stats": str(tmp_path / "missing.npz")})[0]
    with pytest.raises(NodeFailure, match="D=3 but feature stats have D=2"):
        run_node_frames(Temporal(length=1, stats=str(tmp_path / "s.npz")), [emb([[3, 5, 1]], [0])])


def test_stats_from_a_models_metadata(tmp_path):
    import json

    (tmp_path / "m.onnx").write_bytes(b"not read")
    (tmp_path / "metadata.json").write_text(json.dumps({"feature_stats": {"mean": [1, 1], "std": [2, 2]}}))
    outs = run_node_frames(Temporal(length=1, stats=str(tmp_path / "m.onnx")), [emb([[3, 5]], [0])])
    np.testing.assert_allclose(outs[0]["window"]["seq"][0, 0], [1, 2])
    np.savez(tmp_path / "fs.npz", mean=np.zeros(2, np.float32), std=np.full(2, 4, np.float32))
    (tmp_path / "metadata.json").write_text(json.dumps({"feature_stats": {"path": "fs.npz"}}))
    outs = run_node_frames(Temporal(length=1, stats=str(tmp_path / "m.onnx")), [emb([[4, 8]], [0])])
    np.testing.assert_allclose(outs[0]["window"]["seq"][0, 0], [1, 2])
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(NodeFailure, match="records no feature_stats"):
        run_node_frames(Temporal(length=1, stats=str(tmp_path / "m.onnx")), [emb([[4, 8]], [0])])
    assert Temporal.requirements({"stats": str(tmp_path / "m.onnx")}) == []
    assert "not found" in Temporal.requirements({"stats": str(tmp_path / "gone.onnx")})[0]
