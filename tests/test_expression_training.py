"""facegraph data clips → train expression → train enroll → eval reconstruction, on a shared video with tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facegraph.nodes.training.clips import build_clips, read_keywords  # noqa: E402
from facegraph.nodes.training.errors import TrainingError  # noqa: E402

from facegraph.cli import main as cli_main  # noqa: E402

TINY = ["--preset", "cpu64", "--image-size", "16", "--patch", "8", "--embed-dim", "16", "--heads", "2", "--layers",
        "1", "--ff", "32", "--tokens", "2", "--subjects", "4", "--batch-size", "2", "--warmup-steps", "1",
        "--loss-ramp-steps", "2", "--threads", "1", "--no-progress"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _rows(session: str, track: int, frames: list[int]) -> list[dict]:
    return [{"session": session, "track": str(track), "frame": str(f), "time": f"{f / 10:.2f}",
             "crop": f"{session}/{f:06d}_{track}.jpg"} for f in frames]


def test_clips_follow_tracks_and_break_at_gaps():
    rows = [*_rows("a", 0, [*range(0, 10), *range(12, 20)]), *_rows("a", 1, list(range(3))),
            *_rows("b", 0, list(range(8)))]
    subjects, clips = build_clips(rows, clip_len=4, stride=3, val_sessions=["b"])
    assert [s["name"] for s in subjects] == ["a#0", "b#0"]  # a#1 has 3 frames: shorter than a clip
    assert [s["split"] for s in subjects] == ["train", "val"]
    a = [c for c in clips if c["session"] == "a"]
    assert [c["start"] for c in a] == [0, 3, 6, 12, 15]  # no clip across the lost frames 10-11
    assert all(len(c["crops"]) == 4 for c in clips) and {c["split"] for c in clips if c["session"] == "b"} == {"val"}


def test_keyword_clips_centre_on_their_times(tmp_path):
    csv = tmp_path / "kw.csv"
    csv.write_text("video, time, keyword\na.mp4, 1.0, smile\na.mp4, 9.0, gone\n")
    kw = read_keywords(csv)
    assert kw == {"a": [(1.0, "smile"), (9.0, "gone")]}
    _, clips = build_clips(_rows("a", 0, list(range(20))), clip_len=4, stride=1, keywords=kw)
    assert [(c["start"], c["keyword"]) for c in clips] == [(8, "smile")]  # frame 10 = 1.0 s; 9.0 s has no face
    csv.write_text("video, when\na, 1\n")
    with pytest.raises(TrainingError, match="needs the columns video, time, keyword"):
        read_keywords(csv)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import VIDEOS

    video = VIDEOS / "pyfeat_single_face.mp4"
    if not video.is_file():
        pytest.skip(f"needs {video} (shared data)")
    root = tmp_path_factory.mktemp("expr")
    videos = root / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (videos / name).symlink_to(video)
    clips, run = root / "clips", root / "run"
    assert cli_main(["data", "clips", "--source", str(videos), "--out", str(clips), "--clip-len", "4", "--stride",
                     "4", "--size", "112", "--val-videos", "b.mp4", "--max-frames", "20", "--no-progress"]) == 0
    assert cli_main(["train", "expression", "--clips", str(clips), "--out", str(run), "--epochs", "1",
                     "--max-batches", "2", *TINY]) == 0
    return root, videos, clips, run


def test_clips_folder(run_dir):
    _, _, clips, _ = run_dir
    subjects = json.loads((clips / "subjects.json").read_text())
    meta = json.loads((clips / "clips.json").read_text())
    assert [s["name"] for s in subjects] == ["a#0", "b#0"] and meta["val_sessions"] == ["b"]
    assert {c["split"] for c in meta["clips"]} == {"train", "val"} and meta["size"] == 112
    assert all((clips / p).is_file() for c in meta["clips"] for p in c["crops"])


def test_train_writes_joint_and_part_checkpoints_and_checked_onnx(run_dir):
    from facegraph.nodes.models._subjects import SubjectStore
    from facegraph.nodes.nets.reconstruction import load_checkpoint
    from facegraph.nodes.training import checkpoints

    _, _, _, run = run_dir
    joint = checkpoints.load(run / "checkpoint_best.pt")
    assert joint["kind"] == "expression" and set(joint["model_config"]) == {"transformer", "reconstruction"}
    t, _ = load_checkpoint(run / "exported" / "expression_transformer.pt")
    r, _ = load_checkpoint(run / "exported" / "expression_reconstruction.pt")
    own = {k.removeprefix("transformer."): v for k, v in joint["model"].items() if k.startswith("transformer.")}
    assert all(torch.equal(v, own[k]) for k, v in t.state_dict().items())
    assert r.config.tokens == 2 and t.config.image_size == 16
    for name in ("expression_transformer", "expression_reconstruction"):
        meta = json.loads((run / "exported" / f"{name}.json").read_text())
        assert meta["onnx_max_abs_diff"] < 1e-3 and "command" in meta["training"]
    store = SubjectStore.read(run / "exported" / "subjects.npz")
    assert store.names == ["a#0", "mean"] and store.ids == [0, -1]  # the held-out subject has no trained row
    history = json.loads((run / "training_history.json").read_text())
    row = history["epochs"][0]
    assert {"train_rec", "train_temporal", "train_diversity", "val_psnr", "val_temporal_ratio"} <= set(row)


def test_enroll_and_eval_reconstruction(run_dir, capsys):
    from facegraph.nodes.models._subjects import SubjectStore

    root, videos, _, run = run_dir
    code, out, err = _run(capsys, "train", "enroll", "--model", str(run), "--source", str(videos / "b.mp4"),
                          "--name", "bee", "--enroll-frames", "4", "--steps", "3", "--threads", "1")
    assert code == 0, err
    assert "bee" in SubjectStore.read(run / "exported" / "subjects.npz")
    report = root / "rec.json"
    code, out, err = _run(capsys, "eval", "reconstruction", "--model", str(run), "--source", str(videos / "b.mp4"),
                          "--enroll-frames", "8", "--enroll-steps", "2", "--max-frames", "16", "--threads", "1",
                          "--json", str(report))
    assert code == 0, err
    r = json.loads(report.read_text())
    assert {"psnr", "ssim", "baseline_psnr"} <= set(r) and r["eval_frames"] == 8
    assert np.isfinite([r["psnr"], r["ssim"], r["baseline_psnr"]]).all() and "baseline PSNR" in out


def test_resume_of_a_finished_run_exports_again(run_dir, capsys):
    _, _, clips, run = run_dir
    onnx = run / "exported" / "expression_transformer.onnx"
    before = onnx.stat().st_mtime_ns
    code, out, err = _run(capsys, "train", "expression", "--clips", str(clips), "--out", str(run), "--epochs", "1",
                          "--resume", str(run), *TINY)
    assert code == 0, err
    assert "nothing to train" in out and onnx.stat().st_mtime_ns > before


def test_bad_inputs_are_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "expression", "--clips", str(tmp_path / "none"), *TINY)
    assert code == 2 and "no clips.json" in err and err.strip().count("\n") == 0
    code, _, err = _run(capsys, "train", "expression", "--clips", str(tmp_path), "--rec-weight", "a:b", *TINY)
    assert code == 2 and "--rec-weight 'a:b'" in err and err.strip().count("\n") == 0
    code, _, err = _run(capsys, "train", "expression", "--clips", str(tmp_path), "--tokenizer", "dinov2", *TINY)
    assert code == 2 and "needs --dinov2" in err
    code, _, err = _run(capsys, "data", "clips", "--source", str(tmp_path / "*.mp4"), "--out", str(tmp_path / "c"))
    assert code == 2 and "no video there" in err and err.strip().count("\n") == 0
    code, _, err = _run(capsys, "eval", "reconstruction", "--model", str(tmp_path), "--source", "x.mp4")
    assert code == 2 and "no expression_transformer.pt there" in err


def test_video_folder_of_clips_is_found(tmp_path):
    from facegraph.nodes.training.clips import find_videos

    for name in ("b.avi", "a.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_videos(str(tmp_path))] == ["a.mp4", "b.avi"]
    assert [p.name for p in find_videos(str(tmp_path / "*.avi"))] == ["b.avi"]
    assert find_videos(str(tmp_path / "a.mp4")) == [Path(tmp_path / "a.mp4")]


def test_probe_and_identity_swap_reports(run_dir, tmp_path):
    import cv2
    from conftest import SHARED
    from facegraph.nodes.training.expression_eval import identity_swap, linear_probe

    _, videos, clips, run = run_dir
    rng = np.random.default_rng(0)
    data = tmp_path / "ck"
    for c, name in enumerate(("happy", "sad")):
        (data / name).mkdir(parents=True)
        for s in range(6):
            img = np.clip(rng.normal(100 + 60 * c, 20, (48, 48)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(data / name / f"S{s:03d}_00{c}_0000000{s}.png"), img)
    r = linear_probe(run, data, folds=3, threads=1)
    assert r["subjects"] == 6 and r["classes"] == 2 and r["pixel_features"] == 48 * 48
    assert 0 <= r["tokens_accuracy"] <= 1 and r["pixels_accuracy"] > 0.9  # the classes differ in brightness
    embedder = SHARED / "models" / "mobilefacenet_128d.onnx"
    if not embedder.is_file():
        pytest.skip(f"needs {embedder} (shared models)")
    s = identity_swap(run, videos / "b.mp4", "0", clips / "a", embedder=str(embedder), enroll_frames=4, steps=2,
                      max_frames=10, threads=1)
    assert s["frames"] == 6 and -1 <= s["swap_cos_to_target"] <= 1 and 0 <= s["own_frame_rank_fraction"] <= 1
