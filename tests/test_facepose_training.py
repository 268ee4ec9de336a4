"""Teacher HDF5 (writer/reader, append, split by video), a few real training steps on frames of a shared video
with their OpenFace CSV, the checked exports, and the predictors' backend choice with each backend taken away."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from conftest import shared_file  # noqa: E402
from facegraph.nodes.face._pdm_params import params_to_crop, params_to_frame  # noqa: E402
from facegraph.nodes.models import facepose as fp  # noqa: E402
from facegraph.nodes.training import h5data, teacher  # noqa: E402
from facegraph.nodes.training.errors import TrainingError  # noqa: E402

from facegraph import ModelError  # noqa: E402


def _rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in h5data.ARRAYS.items():
        data = rng.uniform(0, 100, (n, *shape))
        out[name] = data.astype(dtype)
    return out


def test_writer_reader_round_trip_and_append(tmp_path):
    path = tmp_path / "t.h5"
    a, b, c = _rows(5, 1), _rows(70, 2), _rows(3, 3)
    with h5data.H5Writer(path, expected=8, attrs={"au_names": fp.AU_NAMES}) as w:
        w.append(a, ["v1"] * 5)
        w.append(b, ["v2"] * 70)  # past the first allocation and one chunk
    with h5data.H5Writer(path) as w:  # reopened: extended, not overwritten
        assert w.start == 75
        w.append(c, ["v3"] * 3)
    d = h5data.read(path)
    assert len(d) == 78 and d.au_names == fp.AU_NAMES
    np.testing.assert_array_equal(d.images, np.concatenate([a["images"], b["images"], c["images"]]))
    np.testing.assert_allclose(d.landmarks[75:], c["landmarks"])
    assert d.videos() == ["v1", "v2", "v3"] and list(d.video_names[:6]) == ["v1"] * 5 + ["v2"]
    with pytest.raises(TrainingError, match="images of shape"):
        with h5data.H5Writer(path) as w:
            w.append({**c, "images": c["images"][:, :50]}, ["v4"] * 3)


def test_reader_names_the_problem(tmp_path):
    import h5py

    with pytest.raises(TrainingError, match="no such file"):
        h5data.read(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["images"] = np.zeros((1, 112, 112, 3), np.uint8)
    with pytest.raises(TrainingError, match=r"not a facegraph teacher file .*landmarks"):
        h5data.read(tmp_path / "foreign.h5")


def test_split_keeps_each_video_on_one_side():
    names = np.array(["a"] * 30 + ["b"] * 20 + ["c"] * 25 + ["d"] * 25)
    for seed in range(5):
        train, val = h5data.split_by_video(names, None, 0.25, seed)
        assert set(names[train]).isdisjoint(names[val]) and len(train) + len(val) == 100 and len(val) >= 20
    train, val = h5data.split_by_video(names, ["b", "d"])
    assert set(names[val]) == {"b", "d"} and set(names[train]) == {"a", "c"}
    with pytest.raises(TrainingError, match="--val-videos x: not in the data"):
        h5data.split_by_video(names, ["x"])
    with pytest.raises(TrainingError, match="one video"):
        h5data.split_by_video(np.array(["a"] * 4))


def test_global_params_move_exactly_between_frame_and_crop():
    g = np.array([1.3, 0.2, -0.4, 0.1, 320.0, 240.0])
    m = np.array([[0.3, -0.1, 20.0], [0.1, 0.3, -50.0]])
    np.testing.assert_allclose(params_to_frame(params_to_crop(g, m), m), g, atol=1e-9)
    assert params_to_crop(g, m)[0] == pytest.approx(1.3 * np.sqrt(0.1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Frames of two shared videos with their OpenFace 0.2 rows: 20 + 9 samples (OpenFace failed on 3)."""
    root = tmp_path_factory.mktemp("teacher")
    path = root / "tiny.h5"
    with h5data.H5Writer(path, attrs={"au_names": fp.AU_NAMES}) as w:
        for stem, ext, n in (("pyfeat_single_face", "mp4", 20), ("ytf_1461_01_021_noam_chomsky", "avi", 12)):
            video = shared_file("data", "videos", f"{stem}.{ext}")
            csv = shared_file("data", "openface_0.2", f"{stem}.csv")
            report = teacher.TeacherReport()
            items = list(teacher.samples_from_csv(video, csv, max_frames=n, hog=stem.startswith("ytf"),
                                                  report=report))
            assert report.frames == n and report.samples + report.failed == n
            batch = {k: [s[k] for _, _, s in items] for k in items[0][2]}
            batch["metadata/frame_indices"] = [i for i, _, _ in items]
            batch["metadata/quality_scores"] = [q for _, q, _ in items]
            w.append(batch, [stem] * len(items))
    return path


def test_teacher_samples_are_the_csvs_values_in_the_crop(tiny):
    d = h5data.read(tiny)
    assert len(d) == 29 and d.videos() == ["pyfeat_single_face", "ytf_1461_01_021_noam_chomsky"]
    # the whole face lies inside the crop, and the crop→frame map gives the CSV's landmarks back
    assert d.landmarks.min() > 0 and d.landmarks.max() < 112
    rows, _ = teacher.read_csv(shared_file("data", "openface_0.2", "pyfeat_single_face.csv"))
    m = d.matrices[3]
    back = (d.landmarks[3] - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
    np.testing.assert_allclose(back, rows[int(d.frame_indices[3])]["points"], atol=1e-3)
    np.testing.assert_allclose(params_to_frame(d.global_params[3], m), rows[int(d.frame_indices[3])]["global"],
                               rtol=1e-4, atol=1e-3)


def _fit(task, out, epochs=3):
    from facegraph.nodes.training.config import TrainConfig
    from facegraph.nodes.training.trainer import Trainer

    cfg = TrainConfig(out=str(out), epochs=epochs, batch_size=8, lr=5e-4, warmup_epochs=0, schedule="constant",
                      threads=1, progress=False, max_batches=1, patience=50, monitor=task.monitor, mode=task.mode)
    return Trainer(cfg, command="test").fit(task)


def test_a_few_steps_lower_both_losses_and_export_checks_parity(tiny, tmp_path):
    from facegraph.nodes.training.facepose import AUTask, LandmarkPoseTask
    from facegraph.nodes.training.facepose_export import export_all

    d = h5data.read(tiny)
    tr, va = h5data.split_by_video(d.video_names, ["ytf_1461_01_021_noam_chomsky"])
    train, val = d.subset(tr), d.subset(va)
    train = train.subset(np.arange(8))  # one fixed batch: steps on it must lower its loss
    lm = LandmarkPoseTask(train, val, width_mult=0.25, augment=False)
    lm.monitor, lm.mode = "val_nme", "min"
    result = _fit(lm, tmp_path / "lm", epochs=6)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0], losses
    assert {"val_nme", "val_mae_px", "val_pose_r", "val_landmark_r"} <= set(result.history[-1])
    paths = export_all(result.model, tmp_path / "lm", lm, ["onnx"], data=str(tiny), command="test", seconds=1.0,
                       best=result.best_metrics)
    import json

    meta = json.loads((tmp_path / "lm" / "landmark_pose.json").read_text())
    assert meta["onnx_max_abs_diff"] <= 1e-4 and meta["data"]["val_videos"] == ["ytf_1461_01_021_noam_chomsky"]
    assert paths[0].name == "landmark_pose.onnx"

    au = AUTask(train, val, width_mult=0.25, augment=False)
    au.monitor, au.mode = "val_mae", "min"
    result = _fit(au, tmp_path / "au", epochs=6)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0], losses
    assert "val_r_AU12" in result.history[-1] and "val_mean_ccc" in result.history[-1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny untrained landmark net exported as a run folder would be (ONNX + metadata + checkpoint)."""
    from facegraph.nodes.nets._export import export as export_onnx
    from facegraph.nodes.nets.facepose import UnifiedLandmarkPoseNet

    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    net = UnifiedLandmarkPoseNet(width_mult=0.25).eval()
    cfg = {"net": "UnifiedLandmarkPoseNet", "width_mult": 0.25, "num_landmarks": 68, "num_local_params": 34,
           "image_size": 112, "dropout": 0.1}
    export_onnx(net, (torch.zeros(1, 3, 112, 112),), folder / "landmark_pose.onnx", ["image"],
                ["landmarks", "global_params", "local_params"],
                {"kind": "landmark-pose", "input_size": 112, "mean": 0.5, "std": 0.5, "model_config": cfg,
                 "outputs": ["landmarks", "global_params", "local_params"], "weights": "checkpoint_final.pt"})
    torch.save({"kind": "landmark-pose", "model_config": cfg, "model": net.state_dict()},
               folder / "checkpoint_final.pt")
    return folder


CROPS = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)


def _fake(name):
    class Runner(fp._Runner):
        def __init__(self, inner):
            self.inner, self.name = inner, name

        def __call__(self, x):
            return self.inner(x)

    return lambda path, meta, *a: Runner(fp.load_onnx_cpu(path.with_suffix(".onnx"), meta))


def test_backend_order_with_each_backend_taken_away(exported, tmp_path, monkeypatch):
    # this machine: not a Mac, no GPU provider → ONNX on the CPU, with the reasons for the two before it
    p = fp.load_predictor(exported)
    assert p.backend == "onnx-cpu"
    assert [n for n, _ in p.tried] == ["coreml", "onnx-gpu"]
    assert "macOS" in p.tried[0][1] and "CUDA" in p.tried[1][1]
    want = p.predict_batch(CROPS)
    assert want["landmarks"].shape == (2, 68, 2) and p.predict(CROPS[0])["local_params"].shape == (34,)

    # a Mac with CoreML: taken first (its runner stands in for coremltools, which predicts only on macOS)
    monkeypatch.setitem(fp.LOADERS, "coreml", _fake("coreml"))
    assert fp.load_predictor(exported).backend == "coreml"
    # CoreML gone, a CUDA provider there: ONNX on the GPU next
    monkeypatch.setitem(fp.LOADERS, "coreml", fp.load_coreml)
    monkeypatch.setitem(fp.LOADERS, "onnx-gpu", _fake("onnx-gpu"))
    assert fp.load_predictor(exported).backend == "onnx-gpu"
    monkeypatch.setitem(fp.LOADERS, "onnx-gpu", fp.load_onnx_gpu)

    # no ONNX file: PyTorch from the checkpoint, the same numbers to 1e-4
    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    (bare / "landmark_pose.onnx").unlink()
    t = fp.load_predictor(bare)
    assert t.backend == "torch" and "no such ONNX file" in dict(t.tried)["onnx-cpu"]
    np.testing.assert_allclose(t.predict_batch(CROPS)["landmarks"], want["landmarks"], atol=1e-4)

    # nothing loads: one error naming every reason
    (bare / "checkpoint_final.pt").unlink()
    with pytest.raises(ModelError, match=r"no backend could load.*coreml: CoreML runs on macOS.*torch: .*no such"):
        fp.load_predictor(bare)
    # a backend asked for by name that cannot load is an error, not a silent fallback
    with pytest.raises(ModelError, match="onnx-gpu"):
        fp.load_predictor(exported, backend="cuda")
    with pytest.raises(ModelError, match="no such model folder"):
        fp.load_predictor(tmp_path / "nowhere")


def test_data_hdf5_command_appends_and_names_bad_input(tmp_path, capsys):
    from facegraph.cli import main as cli

    video = shared_file("data", "videos", "pyfeat_single_face.mp4")
    csv = shared_file("data", "openface_0.2", "pyfeat_single_face.csv")
    out = tmp_path / "t.h5"
    args = ["data", "hdf5", "--video", str(video), "--teacher", "openface-csv", str(csv), "--out", str(out),
            "--max-frames", "4", "--no-hog"]
    assert cli(args) == 0 and cli([*args, "--video-name", "again"]) == 0
    assert "4 samples of 'again' from 4 frames (rows 4–8)" in capsys.readouterr().out
    assert h5data.read(out).videos() == ["again", "pyfeat_single_face"]
    assert cli(["data", "hdf5", "--video", str(video), "--teacher", "graph", "--out", str(out)]) == 2
    assert "sink.hdf5" in capsys.readouterr().err
    assert cli(["data", "hdf5", "--video", str(tmp_path / "no.mp4"), "--teacher", "openface-csv", str(csv),
                "--out", str(out)]) == 2
    assert "no.mp4: no such file" in capsys.readouterr().err
    assert cli(["data", "hdf5", "--video", str(video), "--teacher", "openface-csv", str(video), "--out",
                str(out)]) == 2
    assert "--teacher openface-csv" in capsys.readouterr().err and len(h5data.read(out)) == 8


def test_eval_au_cross_validates_models_on_the_videos_each_held_out(tiny, tmp_path, capsys):
    """``eval au --model A,B``: each model scores only the videos its card holds out, and the scores pool them."""
    import json

    from facegraph.nodes.models.au_floor import subtract_floors
    from facegraph.nodes.training.facepose import AUTask
    from facegraph.nodes.training.facepose_export import export_all
    from facegraph.nodes.training.facepose_scores import au_scores

    from facegraph.cli import main as cli

    d = h5data.read(tiny)
    runs, expect_rows, expect_pred = [], [], []
    for held in d.videos():
        tr, va = h5data.split_by_video(d.video_names, [held])
        au = AUTask(d.subset(tr), d.subset(va), width_mult=0.25, augment=False)
        au.monitor, au.mode = "val_mae", "min"
        out = tmp_path / held
        result = _fit(au, out, epochs=1)
        export_all(result.model, out, au, ["onnx"], data=str(tiny), command="test", seconds=1.0,
                   best=result.best_metrics)
        runs.append(str(out))
        p = fp.load_au_predictor(out, backend="onnx")
        expect_pred.append(p.predict_batch(d.subset(va).images[..., ::-1])["au_intensities"])
        expect_rows.append(va)
    path = tmp_path / "cv.json"
    rows = np.concatenate(expect_rows)
    for floor in ("off", "on"):  # on: each video's floor (its 25th percentile per AU) off, as au.nn after a file
        assert cli(["eval", "au", "--model", ",".join(runs), "--data", str(tiny), "--backend", "onnx",
                    "--floor", floor, "--json", str(path)]) == 0
        report = json.loads(path.read_text())
        assert report["faces"] == len(d) and sorted(report["videos"]) == d.videos() and report["floor"] == floor
        pred = np.concatenate(expect_pred)
        if floor == "on":
            pred = subtract_floors(pred, d.video_names[rows])
        want = au_scores(pred, d.au_intensities[rows], d.au_names)
        assert abs(report["scores"]["val_mae"] - want["val_mae"]) < 1e-5
    capsys.readouterr()
    # one-line refusals: a video held out twice, --videos beside several models
    assert cli(["eval", "au", "--model", f"{runs[0]},{runs[0]}", "--data", str(tiny)]) != 0
    assert "held out by an earlier model too" in capsys.readouterr().err
    assert cli(["eval", "au", "--model", ",".join(runs), "--data", str(tiny), "--videos", d.videos()[0]]) != 0
    assert "each model scores the videos it held out" in capsys.readouterr().err
