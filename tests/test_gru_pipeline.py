"""The crops → embeddings → sequences → train gru → graph pipeline on tiny data made here (a few batches, no real
training): window boundaries, train-only z-scoring, the split options, GRU ONNX parity, and each bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("sklearn")
cv2 = pytest.importorskip("cv2")

from facegraph.nodes.training import facedata  # noqa: E402
from facegraph.nodes.training.errors import TrainingError  # noqa: E402

from facegraph.cli import main as cli_main  # noqa: E402

CLASSES = ("happy", "sad", "surprise")
E = 16


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def make_images(root: Path, subjects: int = 10, frames: int = 4) -> Path:
    """CK+-style names (S<subject>_<sequence>_<frame>.png), one sequence per subject and class, 48×48 gray."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for s in range(subjects):
            base = rng.integers(0, 60, (48, 48)) + 60 * c
            for f in range(frames):
                img = np.clip(base + rng.integers(0, 30, (48, 48)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / name / f"S{s:03d}_{c + 1:03d}_{f + 5:08d}.png"), img)
    return root


@pytest.fixture(scope="module")
def embedder_onnx(tmp_path_factory) -> Path:
    """A tiny recognition ONNX: [N, 3, 112, 112] → [N, E] (mean colour and a few pooled features)."""
    from facegraph.nodes.nets._export import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(), torch.nn.AvgPool2d(7),
                              torch.nn.Flatten(), torch.nn.Linear(32, E)).eval()
    path = tmp_path_factory.mktemp("emb") / "tiny_embed.onnx"
    export(net, (torch.zeros(1, 3, 112, 112),), path, ["image"], ["embedding"])
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, embedder_onnx):
    """crops → embeddings → sequences on the tiny image set, through the library functions."""
    tmp = tmp_path_factory.mktemp("pipe")
    images = make_images(tmp / "images")
    crops = tmp / "crops"
    facedata.crops_from_images(images, crops, size=112, group_by=r"^(S\d+)", val_split=0.3)
    report = facedata.embed_crops(crops, crops / "manifest.csv", str(embedder_onnx), tmp / "frames.parquet",
                                  stats_out=tmp / "stats.npz", labels_out=tmp / "labels.json", progress=False)
    seq = facedata.make_sequences(tmp / "frames.parquet", tmp / "stats.npz", tmp / "labels.json", T=3, stride=1,
                                  use_split_column=True, out_train=tmp / "train.npz", out_val=tmp / "val.npz")
    return tmp, report, seq


def test_crops_manifest_keeps_people_on_one_side(pipeline):
    tmp, _, _ = pipeline
    rows = facedata.read_manifest(tmp / "crops" / "manifest.csv")
    assert len(rows) == 3 * 10 * 4 and all(r["label"] in CLASSES for r in rows)
    side: dict[str, set[str]] = {}
    for r in rows:
        side.setdefault(r["group"], set()).add(r["split"])
        assert re.fullmatch(r"S\d{3}_\d{3}", r["session"]) and (tmp / "crops" / r["crop"]).is_file()
    assert all(len(s) == 1 for s in side.values()), "a subject on both sides"
    assert {"train", "val"} == {s for v in side.values() for s in v}
    assert json.loads((tmp / "crops" / "crops.json").read_text())["framing"] == "full"


def test_windows_never_cross_a_track_or_session():
    frames = {"session": np.array(["a"] * 5 + ["b"] * 5 + ["a"] * 3),
              "track": np.array([0] * 5 + [0] * 5 + [1] * 3),
              "frame": np.array([4, 0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2])}
    got = facedata.windows(frames, T=3, stride=1)
    keys = [{(frames["session"][i], frames["track"][i]) for i in w} for w in got]
    assert all(len(k) == 1 for k in keys)
    assert len(got) == 3 + 3 + 1  # a/0: 5 frames, b/0: 5, a/1: 3
    for w in got:
        assert np.all(np.diff(frames["frame"][w]) == 1), "frames in order, consecutive"
    assert len(facedata.windows(frames, T=3, stride=2)) == 2 + 2 + 1
    assert facedata.windows(frames, T=6, stride=1) == []


def test_stats_come_from_training_rows_only(pipeline):
    tmp, report, _ = pipeline
    frames, _ = facedata.read_frames(tmp / "frames.parquet")
    stats = facedata.load_stats(tmp / "stats.npz")
    train = frames["split"] == "train"
    assert 0 < train.sum() < len(train) and report.train_rows == train.sum()
    np.testing.assert_allclose(stats.mean, frames["embedding"][train].mean(0), atol=1e-6)
    np.testing.assert_allclose(stats.std, frames["embedding"][train].std(0), atol=1e-6)
    assert not np.allclose(stats.mean, frames["embedding"].mean(0), atol=1e-6)
    assert set(stats.sessions) == set(frames["session"][train])
    np.testing.assert_allclose(np.linalg.norm(frames["embedding"], axis=1), 1, atol=1e-5)
    with np.load(tmp / "train.npz") as d:  # the windows are z-scored with exactly those stats
        assert d["x"].shape[1:] == (3, E)
        np.testing.assert_array_equal(d["mean"], stats.mean)


def test_sessions_split_options(pipeline):
    tmp, _, _ = pipeline
    frames, _ = facedata.read_frames(tmp / "frames.parquet")
    names = sorted(set(frames["session"]))
    val_names = sorted(set(frames["session"][frames["split"] == "val"]))
    train_names = [n for n in names if n not in val_names]
    args = (tmp / "frames.parquet", tmp / "stats.npz", tmp / "labels.json")
    r = facedata.make_sequences(*args, T=2, stride=1, sessions_train=train_names, sessions_val=val_names,
                                out_train=tmp / "s_train.npz", out_val=tmp / "s_val.npz")
    with np.load(tmp / "s_val.npz") as d:
        assert set(d["session"]) == set(val_names) and r["val"]["windows"] == len(val_names) * 3
    with pytest.raises(TrainingError, match=f"session '{train_names[0]}' is named in both"):
        facedata.make_sequences(*args, T=2, sessions_train=train_names, sessions_val=[train_names[0]],
                                out_train=tmp / "x.npz")
    with pytest.raises(TrainingError, match="session 'S001_001' is named twice"):
        facedata.make_sequences(*args, T=2, sessions_train=["S001_001", "S001_001"], out_train=tmp / "x.npz")
    with pytest.raises(TrainingError, match="session 'nope' is not in"):
        facedata.make_sequences(*args, T=2, sessions_train=["nope"], out_train=tmp / "x.npz")
    # stats made on the training split hold training sessions only: a val session among them is refused
    with pytest.raises(TrainingError, match=r"stats\.npz: computed on session '.*', a validation session"):
        facedata.make_sequences(*args, T=2, sessions_train=val_names[:1], sessions_val=train_names[:1],
                                out_train=tmp / "x.npz")
    with pytest.raises(TrainingError, match="either --use-split-column or --sessions-train"):
        facedata.make_sequences(*args, T=2, out_train=tmp / "x.npz")


def test_split_folds_cover_every_group_once():
    labels = [c for c in CLASSES for _ in range(10)]
    groups = [f"S{i % 10}" for i in range(30)]
    seen = set()
    for fold in range(5):
        split = facedata.assign_split(labels, groups, folds=5, fold=fold)
        val = {g for g, s in zip(groups, split, strict=True) if s == "val"}
        assert val and not val & seen
        seen |= val
    assert seen == set(groups)
    with pytest.raises(TrainingError, match="only 2 groups, need ≥ 5"):
        facedata.assign_split(labels, ["a", "b"] * 15, folds=5)


def test_bad_inputs_one_line(pipeline, tmp_path, embedder_onnx):
    tmp, _, _ = pipeline
    # T longer than every track
    with pytest.raises(TrainingError, match=r"--T 9: longer than every track of .*frames\.parquet \(the longest "
                                            r"has 4 frames\)"):
        facedata.make_sequences(tmp / "frames.parquet", tmp / "stats.npz", tmp / "labels.json", T=9,
                                use_split_column=True, out_train=tmp_path / "t.npz")
    # stats of another backbone (dimension)
    np.savez(tmp_path / "other.npz", mean=np.zeros(128, np.float32), std=np.ones(128, np.float32),
             backbone=np.array("dlib_resnet_v1"))
    with pytest.raises(TrainingError, match=rf"other\.npz: 128-D stats \(backbone dlib_resnet_v1\) but .* has "
                                            rf"{E}-D embeddings"):
        facedata.make_sequences(tmp / "frames.parquet", tmp_path / "other.npz", tmp / "labels.json", T=2,
                                use_split_column=True, out_train=tmp_path / "t.npz")
    # unlabelled rows: skipped with a count, an error under strict
    rows = facedata.read_manifest(tmp / "crops" / "manifest.csv")
    rows[0]["label"] = rows[5]["label"] = ""
    facedata.write_manifest(tmp_path / "m.csv", rows)
    kw = {"stats_out": tmp_path / "s.npz", "labels_out": tmp_path / "l.json", "progress": False}
    with pytest.raises(TrainingError, match=r"m\.csv: 2 of 120 rows have no label \(first: session 'S000_001', "
                                            r"frame 5\)"):
        facedata.embed_crops(tmp / "crops", tmp_path / "m.csv", str(embedder_onnx), tmp_path / "f.parquet",
                             strict=True, **kw)
    r = facedata.embed_crops(tmp / "crops", tmp_path / "m.csv", str(embedder_onnx), tmp_path / "f.parquet", **kw)
    assert r.skipped == 2 and r.rows == 118
    # a session named twice: adding the same recording to a manifest again
    with pytest.raises(TrainingError, match=r"manifest\.csv: session 'S000_001' is already there"):
        facedata.crops_from_images(tmp / "images", tmp / "crops", group_by=r"^(S\d+)")


def test_cli_bad_input_is_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "data", "sequences", "--frames", str(tmp_path / "none.parquet"), "--use-split-column",
                        "--out-train", str(tmp_path / "t.npz"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "none.parquet" in err and "Traceback" not in err
    code, _, err = _run(capsys, "data", "crops", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "c"))
    assert code == 2 and err.strip().count("\n") == 0 and "nope: no such folder" in err
    code, _, err = _run(capsys, "train", "gru", "--train", "t.npz", "--val", "v.npz", "--backbone", "iresnet50")
    assert code == 2 and "--backbone and --finetune-last-block go together" in err and err.strip().count("\n") == 0


@pytest.mark.parametrize("T", [1, 3, 12])
def test_gru_onnx_parity_for_t_and_batch(tmp_path, T):  # noqa: N803
    import onnxruntime as ort
    from facegraph.nodes.nets.gru import GRUConfig, TemporalGRU, _Softmaxed, export_onnx

    torch.manual_seed(T)
    for bidirectional in (False, True):
        model = TemporalGRU(GRUConfig(input_dim=E, hidden=8, layers=2, classes=3, bidirectional=bidirectional)).eval()
        path = export_onnx(model, tmp_path / f"g{T}{bidirectional}.onnx", T, labels=list(CLASSES))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n in (1, 5, 33):
            x = np.random.default_rng(n).normal(size=(n, T, E)).astype(np.float32)
            got = session.run(None, {"window": x})[0]
            with torch.no_grad():
                want = _Softmaxed(model)(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_train_gru_exports_checked_model(pipeline, capsys):
    tmp, _, _ = pipeline
    out = tmp / "run"
    code, text, err = _run(capsys, "train", "gru", "--train", str(tmp / "train.npz"), "--val", str(tmp / "val.npz"),
                           "--hidden", "8", "--epochs", "2", "--max-batches", "2", "--batch-size", "8",
                           "--out", str(out), "--no-progress", "--device", "cpu", "--threads", "1")
    assert code == 0, err
    assert "baseline: logistic regression" in text and "exported" in text
    meta = json.loads((out / "exported" / "metadata.json").read_text())
    assert meta["T"] == 3 and meta["E"] == meta["input_dim"] == E and meta["labels"] == list(CLASSES)
    assert len(meta["feature_stats"]["mean"]) == E and meta["onnx_max_abs_diff"] < 1e-3
    assert "logistic_regression_baseline" in meta["scores"]
    assert (out / "checkpoint_best.pt").is_file() and (out / "exported" / "gru_embed.onnx").is_file()
    # the val side must match the train side
    with np.load(tmp / "val.npz") as d:
        np.savez(tmp / "val_t2.npz", **{**d, "x": d["x"][:, :2]})
    code, _, err = _run(capsys, "train", "gru", "--train", str(tmp / "train.npz"), "--val", str(tmp / "val_t2.npz"),
                        "--out", str(tmp / "run2"), "--no-progress")
    assert code == 2 and "val_t2.npz: T=2, but --train" in err and err.strip().count("\n") == 0


def _graph(model: Path, length: int, stats: str | None):
    import facegraph.nodes  # noqa: F401

    from facegraph import Graph

    g = Graph("t")
    frame = g.add("decode", id="video", source="sample").frame
    faces = g.add("detect", id="faces", frame=frame).faces
    crops = g.add("align", id="crops", frame=frame, faces=faces).crops
    emb = g.add("embed", id="embed", model=str(model), crops=crops).embeddings
    params = {"stats": stats} if stats else {}
    window = g.add("temporal", id="window", length=length, vectors=emb, **params).window
    g.add("gru", id="gru", model=str(model.parent / "gru_embed.onnx"), window=window)
    return g.check()


def test_graph_t_mismatch_is_a_build_time_error(pipeline, embedder_onnx, capsys):
    tmp, _, _ = pipeline
    model = tmp / "run" / "exported" / "gru_embed.onnx"
    if not model.is_file():
        pytest.skip("needs the model of test_train_gru_exports_checked_model")
    emb = model.parent / embedder_onnx.name
    emb.write_bytes(embedder_onnx.read_bytes())
    assert _graph(emb, 3, str(model)).requirements() == []
    (problem,) = _graph(emb, 12, str(model)).requirements()
    assert "metadata.json: the model takes windows of T=3, but 'window' (temporal) has length 12" in problem
    assert "set window.length to 3" in problem
    (problem,) = _graph(emb, 3, None).requirements()
    assert "trained on z-scored windows, but 'window' (temporal) has no stats" in problem
    # the shipped graph with the user's model: the same error from facegraph run, before anything runs
    code, _, err = _run(capsys, "run", "graphs/expression_gru.yaml", "--source", "sample",
                        "--set", f"gru.model={model}", "--set", f"window.stats={model}", "--set", "window.length=5",
                        "--set", f"embed.model={emb}")
    assert code == 2 and "T=3" in err and "length 5" in err and "Traceback" not in err


def test_reuse_takes_earlier_vectors(pipeline, tmp_path, embedder_onnx):
    tmp, _, _ = pipeline
    kw = {"stats_out": tmp_path / "s.npz", "labels_out": tmp_path / "l.json", "progress": False}
    facedata.embed_crops(tmp / "crops", tmp / "crops" / "manifest.csv", str(embedder_onnx), tmp_path / "f.parquet",
                         reuse=tmp / "frames.parquet", **kw)
    a, _ = facedata.read_frames(tmp / "frames.parquet")
    b, _ = facedata.read_frames(tmp_path / "f.parquet")
    np.testing.assert_array_equal(a["embedding"], b["embedding"])
    other = tmp_path / "other_embed.onnx"
    other.write_bytes(embedder_onnx.read_bytes())
    with pytest.raises(TrainingError, match=r"--reuse .*frames\.parquet: made with backbone .*tiny_embed\.onnx"):
        facedata.embed_crops(tmp / "crops", tmp / "crops" / "manifest.csv", str(other), tmp_path / "g.parquet",
                             reuse=tmp / "frames.parquet", **kw)


def test_ckplus48_detect_path(tmp_path):
    from conftest import SHARED_DATA

    ck = SHARED_DATA / "fer" / "ckplus48"
    if not ck.is_dir():
        pytest.skip(f"needs {ck} (shared data)")
    r = facedata.crops_from_images(ck, tmp_path / "crops", group_by=r"^(S\d+)", classes=["contempt"], detect=True)
    assert r.rows + r.dropped == 54 and r.rows >= 50 and r.sessions == 18  # 18 contempt sequences of 3 frames
    rows = facedata.read_manifest(tmp_path / "crops" / "manifest.csv")
    assert all(re.fullmatch(r"S\d{3}_\d{3}", row["session"]) and row["group"] == row["session"][:4] for row in rows)
    assert json.loads((tmp_path / "crops" / "crops.json").read_text())["framing"] == "arcface"
    crop = cv2.imread(str(tmp_path / "crops" / rows[0]["crop"]))
    assert crop.shape == (112, 112, 3)


def test_video_path_by_sessions(tmp_path, embedder_onnx):
    from conftest import VIDEOS

    video = VIDEOS / "pyfeat_single_face.mp4"
    if not video.is_file():
        pytest.skip(f"needs {video} (shared data)")
    crops = tmp_path / "crops"
    for session, label in (("take1", "happy"), ("take2", "sad")):
        r = facedata.crops_from_video(video, crops, session=session, label=label, max_frames=8)
        assert r.rows == 8  # one face in every frame
    rows = facedata.read_manifest(crops / "manifest.csv")
    assert [r["frame"] for r in rows[:3]] == ["0", "1", "2"] and float(rows[1]["time"]) > 0
    assert {r["track"] for r in rows} == {"0"} and all(float(r["x2"]) > float(r["x1"]) for r in rows)
    with pytest.raises(TrainingError, match="session 'take1' is already there"):
        facedata.crops_from_video(video, crops, session="take1", max_frames=1)
    kw = {"stats_out": tmp_path / "s.npz", "labels_out": tmp_path / "l.json", "progress": False}
    with pytest.raises(TrainingError, match="no training rows for the feature stats"):
        facedata.embed_crops(crops, crops / "manifest.csv", str(embedder_onnx), tmp_path / "f.parquet", **kw)
    facedata.embed_crops(crops, crops / "manifest.csv", str(embedder_onnx), tmp_path / "f.parquet",
                         train_sessions=["take1"], **kw)
    assert facedata.load_stats(tmp_path / "s.npz").sessions == ["take1"]
    r = facedata.make_sequences(tmp_path / "f.parquet", tmp_path / "s.npz", tmp_path / "l.json", T=4, stride=2,
                                sessions_train=["take1"], sessions_val=["take2"], out_train=tmp_path / "tr.npz",
                                out_val=tmp_path / "va.npz")
    assert r["train"]["windows"] == r["val"]["windows"] == 3  # frames 0-3, 2-5, 4-7
    with np.load(tmp_path / "va.npz") as d:
        assert d["frame_end"].tolist() == [3, 5, 7] and set(d["y"].tolist()) == {1}


def test_finetune_changes_only_the_last_block(pipeline, tmp_path):
    from facegraph.nodes.nets.gru import GRUConfig
    from facegraph.nodes.nets.iresnet import IResNet
    from facegraph.nodes.training.gru import FinetuneTask, export_finetuned, load_sequences
    from facegraph.nodes.training.trainer import TrainConfig, Trainer

    tmp, _, _ = pipeline
    torch.manual_seed(0)
    backbone = IResNet([1, 1, 1, 1], widths=(4, 4, 4, 8), num_features=8, input_size=32)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    train, val = load_sequences(tmp / "train.npz", "--train"), load_sequences(tmp / "val.npz", "--val")
    task = FinetuneTask(train, val, GRUConfig(input_dim=8, hidden=4, classes=3), backbone, tmp / "crops")
    assert task.train_crops.shape[1:] == (3, 32, 32, 3)
    config = TrainConfig(out=str(tmp_path / "ft"), epochs=1, batch_size=4, max_batches=2, progress=False,
                         device="cpu", threads=1, lr=0.05, warmup_epochs=0.0)
    result = Trainer(config).fit(task)
    after = result.model.backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("layer4.") for k in changed), sorted(changed)
    assert any(k.startswith("layer4.") and k.endswith("weight") for k in changed)
    backbone_onnx, head_onnx = export_finetuned(result.model, tmp_path / "ft", task, command="test")
    assert backbone_onnx.is_file() and json.loads((head_onnx.parent / "metadata.json").read_text())["E"] == 8
