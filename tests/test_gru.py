"""`gru` against the torch TemporalGRU it was exported from (tiny models made here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facegraph.nodes.models.gru import GRU  # noqa: E402
from facegraph.nodes.nets.gru import GRUConfig, TemporalGRU, export_onnx  # noqa: E402

from facegraph import NodeFailure  # noqa: E402
from facegraph.testing import run_node, run_node_frames  # noqa: E402

T, D = 6, 16
LABELS = ["neutral", "happy", "sad", "surprise"]


@pytest.fixture(scope="module", params=[False, True], ids=["uni", "bidirectional"])
def tiny(request, tmp_path_factory):
    torch.manual_seed(0)
    model = TemporalGRU(GRUConfig(input_dim=D, hidden=8, layers=2, classes=4, bidirectional=request.param)).eval()
    path = tmp_path_factory.mktemp("gru") / "gru.onnx"
    export_onnx(model, path, T, labels=LABELS, mean=np.zeros(D), std=np.ones(D))
    return model, path


def reference(model, seq: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(seq)), -1).numpy()


def test_export_writes_metadata(tiny):
    _, path = tiny
    meta = json.loads((path.parent / "metadata.json").read_text())
    assert meta["labels"] == LABELS and meta["T"] == T and meta["input_dim"] == D and meta["hidden"] == 8
    assert meta["feature_stats"]["path"] == "feature_stats.npz" and (path.parent / "feature_stats.npz").is_file()


@pytest.mark.parametrize("n", [0, 1, 5])
def test_matches_torch(tiny, n):
    model, path = tiny
    seq = np.random.default_rng(n).normal(size=(n, T, D)).astype(np.float32)
    ids = np.arange(10, 10 + n, dtype=np.int32)
    out = run_node(GRU(model=str(path)), {"window": {"seq": seq, "track_id": ids}})["probs"]
    assert out["p"].shape == (n, 4) and out["p"].dtype == np.float32
    assert out["labels"] == LABELS and out["track_id"].tolist() == ids.tolist()
    if n:
        np.testing.assert_allclose(out["p"], reference(model, seq), atol=1e-4)
        np.testing.assert_allclose(out["p"].sum(1), 1, atol=1e-5)


def test_window_shape_mismatch_names_both(tiny):
    _, path = tiny
    seq = np.zeros((1, T + 1, D), np.float32)
    with pytest.raises(NodeFailure, match=rf"T={T + 1}, D={D} but model .* expects T={T}, D={D}"):
        run_node_frames(GRU(model=str(path)), [{"window": {"seq": seq, "track_id": np.zeros(1, np.int32)}}])


def test_missing_model_is_a_requirement(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))  # an empty model cache
    assert GRU.requirements({"model": "expression_gru"}) == [
        "needs model facegraph/expression_gru (facegraph models fetch facegraph/expression_gru)"
    ]
    (problem,) = GRU.requirements({"model": str(tmp_path / "nope.onnx")})
    assert str(tmp_path / "nope.onnx") in problem and "not found" in problem
    assert GRU.requirements({"model": str(tmp_path)}) == []  # exists: open() judges it


def test_logits_output_gets_softmax(tmp_path):
    torch.manual_seed(1)
    model = TemporalGRU(input_dim=4, hidden=4, classes=3).eval()
    from facegraph.nodes.nets._export import export

    export(model, (torch.zeros(1, 3, 4),), tmp_path / "m.onnx", ["x"], ["logits"], {"T": 3, "output": "logits"})
    seq = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    window = {"seq": seq, "track_id": np.arange(2, dtype=np.int32)}
    out = run_node(GRU(model=str(tmp_path / "m.onnx")), {"window": window})
    np.testing.assert_allclose(out["probs"]["p"], reference(model, seq), atol=1e-4)
    assert out["probs"]["labels"] == ["class0", "class1", "class2"]
