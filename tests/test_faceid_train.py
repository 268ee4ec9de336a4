"""``facegraph train face-id`` for a few batches on a tiny identity folder, its export, and ``embed`` with landmarks;
the landmark autoencoder's chunks, numpy forward pass and node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from facegraph.nodes.face import _heatmaps as hm  # noqa: E402

from facegraph.testing import run_node  # noqa: E402


def _identity_folder(root: Path, people: int = 4, each: int = 4) -> Path:
    """Tiny faces: a per-person colour and pattern, so the classes differ; 112×112 like ArcFace crops."""
    rng = np.random.default_rng(0)
    for p in range(people):
        folder = root / f"person{p}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, (1, 1, 3))
        for i in range(each):
            img = np.clip(base + rng.normal(0, 25, (112, 112, 3)), 0, 255).astype(np.uint8)
            cv2.circle(img, (40 + 8 * p, 52), 6, (255, 255, 255), -1)
            cv2.imwrite(str(folder / f"{i}.png"), img)
    return root


@pytest.fixture()
def fake_landmarks(monkeypatch):
    """The extractor, replaced by a fixed frontal face (one image 'failed'): no landmark model in this test."""
    from facegraph.nodes.face import _crop_landmarks as cl
    from test_faceid import _face68

    class Fixed:
        def __call__(self, crops, batch=0):
            pts = np.repeat(_face68(crops.shape[1]), len(crops), 0)
            ok = np.ones(len(crops), bool)
            ok[0] = False
            return pts, ok, ok.astype(np.float32)

    monkeypatch.setattr(cl, "open_extractor", lambda name, threads=1: Fixed())


def test_train_face_id_few_batches_exports_a_model_embed_can_run(tmp_path, fake_landmarks):
    from facegraph.cli import main

    data = _identity_folder(tmp_path / "ids")
    out = tmp_path / "run"
    code = main(["train", "face-id", "--data_root", str(data), "--backbone", "resnet18", "--width", "0.125",
                 "--img_size", "32", "--use_heatmaps", "--add_mask_channel", "--cache_landmarks", "--cache_heatmaps",
                 "--holdout-people", "2", "--probe-fraction", "0.25", "--epochs", "1", "--batch-size", "4",
                 "--threads", "1", "--no-progress", "--no-fp16", "--out", str(out)])
    assert code == 0
    meta = json.loads((out / "face_id.json").read_text())
    assert meta["in_channels"] == 10 and meta["heatmaps"]["mask"] is True
    assert meta["channels"][3:] == [f"heatmap_{g}" for g in hm.GROUP_NAMES] + ["mask"]
    assert meta["onnx_max_abs_diff"] < 1e-3
    assert len(meta["data"]["unseen_people"]) == 2 and "auc_unseen" in meta["scores"]["fp32"]
    assert list((out / "cache").glob("landmarks_mediapipe.npz")) and list((out / "cache").glob("heatmaps_*.npy"))

    from facegraph.nodes.models._dlib import open_embedder
    from facegraph.nodes.models._heatmap_embed import HeatmapEmbedder

    emb = open_embedder(str(out / "face_id.onnx"))
    assert isinstance(emb, HeatmapEmbedder) and emb.needs_landmarks
    crops = np.stack([cv2.imread(str(p)) for p in sorted((data / "person0").glob("*.png"))[:2]])
    from test_faceid import _face68

    pts = np.repeat(_face68(112), 2, 0)
    a = emb(crops, pts, np.ones(2, bool))
    assert a.shape == (2, emb.dim) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)

    # the embed node: landmarks in frame pixels, crops with their frame → crop matrices
    from facegraph.nodes.models.embed import Embed

    shift = np.array([[1, 0, -5.0], [0, 1, -7.0]], np.float32)  # the crop sits at (5, 7) in the frame
    frame_pts = pts + np.array([5.0, 7.0], np.float32)
    result = run_node(Embed(model=str(out / "face_id.onnx")),
                      {"crops": {"images": crops, "matrices": np.stack([shift, shift])},
                       "landmarks": {"points": frame_pts}})
    np.testing.assert_allclose(result["embeddings"]["vec"], a, atol=1e-5)
    # without landmarks the model's own extractor runs on the crops (here the fixed face, first one 'failed')
    b = emb(crops)
    assert not np.allclose(b[0], a[0]) and np.allclose(b[1], a[1], atol=1e-5)


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    from facegraph.cli import main

    data = _identity_folder(tmp_path / "ids", people=3, each=2)
    assert main(["train", "face-id", "--data_root", str(data), "--add_mask_channel", "--out", str(tmp_path / "r")])
    assert capsys.readouterr().err.strip() == "facegraph: --add_mask_channel needs --use_heatmaps"
    assert main(["train", "face-id", "--data_root", str(data), "--holdout-people", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("facegraph: --holdout-people 2:") and "\n" not in err
    assert main(["train", "landmark-ae", "--chunks", str(tmp_path / "none"), "--out", str(tmp_path / "r")])
    assert "no chunk_*.npz files" in capsys.readouterr().err


def test_landmark_ae_numpy_forward_matches_torch_and_node(tmp_path):
    from facegraph.nodes.face._landmark_ae import LandmarkAE, denormalise, normalise
    from facegraph.nodes.face.canonical import CanonicalLandmarks
    from facegraph.nodes.training.landmark_ae import (
        LandmarkAETask,
        LandmarkMLP,
        LandmarkRows,
        canonical_targets,
        export,
        read_chunks,
        split_identities,
        write_chunks,
    )
    from test_faceid import _face68

    rng = np.random.default_rng(1)
    base = _face68()
    pts = base + rng.normal(0, 1.0, (30, 68, 2)).astype(np.float32)
    shapes, centre, scale = normalise(pts)
    np.testing.assert_allclose(denormalise(shapes, centre, scale), pts, atol=1e-3)
    pose = rng.normal(0, 0.2, (30, 3)).astype(np.float32)
    names = np.array([f"id{i % 5}" for i in range(30)])
    rows = LandmarkRows(shapes, pose, names, np.array([str(i) for i in range(30)]))
    assert len(write_chunks(rows, tmp_path / "chunks", chunk_size=8)) == 4
    back = read_chunks(tmp_path / "chunks")
    np.testing.assert_allclose(back.shapes, shapes)
    target, canon = canonical_targets(back)
    assert canon.sum() == 5
    for who in np.unique(back.identity):
        index = np.flatnonzero(back.identity == who)
        best = index[np.argmin(np.abs(back.pose[index]).sum(1))]
        assert canon[best] and np.allclose(target[index], back.shapes[best])
    train, val = split_identities(back, 2, seed=0)
    assert not set(back.identity[train]) & set(back.identity[val])
    task = LandmarkAETask(back, train, val, hidden=16, layers=2, dropout=0.0)
    model = LandmarkMLP(16, 2, 0.0)
    assert task.scores(model.eval(), task.val_index)["reduction"] == pytest.approx(0.0, abs=1e-6)  # starts as identity
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    model.eval()
    path = export(model, tmp_path / "ae.npz", {"kind": "landmark-ae"})
    ae = LandmarkAE(path)
    with torch.no_grad():
        want = model(task.x[:4]).numpy().reshape(-1, 68, 2)
    np.testing.assert_allclose(ae.canonical(back.shapes[:4], back.pose[:4]), want, atol=1e-5)

    out = run_node(CanonicalLandmarks(model=str(path)),
                   {"landmarks": {"points": pts[:2], "track_id": np.array([3, 4], np.int32)},
                    "pose": {"rotation": pose[:2], "translation": np.zeros((2, 3), np.float32)}})
    got = out["canonical"]
    assert got["points"].shape == (2, 68, 2) and got["track_id"].tolist() == [3, 4]
    s2, c2, k2 = normalise(pts[:2])
    np.testing.assert_allclose(got["points"], denormalise(ae.canonical(s2, pose[:2]), c2, k2), atol=1e-4)


def test_shipped_face_id_model_says_what_it_needs():
    from facegraph.nodes.models._modelparams import SHIPPED_MODELS

    row = next((r for r in SHIPPED_MODELS if r[0] == "facegraph/face_id"), None)
    assert row is not None, "facegraph/face_id is not in the shipped catalogue"
    path = Path(__import__("facegraph.nodes.models", fromlist=["x"]).__file__).parent / row[1]
    assert path.stat().st_size == row[6] <= 16_000_000
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["in_channels"] == len(meta["channels"]) == 3 + hm.channels(meta["heatmaps"])
    for key in ("command", "train_seconds", "scores", "data"):
        assert key in meta
    import onnxruntime as ort

    shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    assert shape[1] == meta["in_channels"]
