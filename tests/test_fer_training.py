"""FER training end to end: the loader and its group split, a real few-batch run on CK+48, checked ONNX export,
and the one-line errors of bad data, checkpoints and flags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from conftest import SHARED_DATA  # noqa: E402
from facegraph.nodes.training import imagefolder  # noqa: E402
from facegraph.nodes.training.errors import TrainingError  # noqa: E402

from facegraph.cli import main as cli  # noqa: E402

CKPLUS = SHARED_DATA / "fer" / "ckplus48"


def _folder(root, classes=("happy", "sad"), per_class=12, subjects=6, size=48):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (size, size), np.uint8)
            cv2.imwrite(str(root / c / f"S{i % subjects:03d}_{c}_{i:02d}.png"), image)
    return root


def test_group_split_puts_each_person_on_one_side(tmp_path):
    data = imagefolder.load(_folder(tmp_path / "d", per_class=30, subjects=10), size=48)
    train, val = imagefolder.split(data, 0.2, group_by=r"^(S\d+)")
    people = imagefolder.groups_of(data.paths, r"^(S\d+)")
    assert {people[i] for i in train}.isdisjoint({people[i] for i in val})
    assert len(train) + len(val) == len(data) and len(val) > 0
    assert set(data.labels[val]) == {0, 1}  # stratified: both classes held out


@pytest.mark.shared
def test_ckplus_split_by_subject_has_no_subject_on_both_sides():
    if not CKPLUS.is_dir():
        pytest.skip(f"needs {CKPLUS} (../shared is not next to this checkout)")
    train, val = imagefolder.load_splits(CKPLUS, size=48, color="gray", val_split=0.2, group_by=r"^(S\d+)")
    subject = re.compile(r"^(S\d+)")
    left = {subject.match(p.rsplit("/", 1)[-1]).group(1) for p in train.paths}
    right = {subject.match(p.rsplit("/", 1)[-1]).group(1) for p in val.paths}
    assert left and right and left.isdisjoint(right)
    assert train.classes == val.classes and len(train.classes) == 7


@pytest.mark.shared
def test_a_few_batches_on_ckplus_lower_the_loss_and_export_matches_torch(tmp_path):
    if not CKPLUS.is_dir():
        pytest.skip(f"needs {CKPLUS} (../shared is not next to this checkout)")
    from facegraph.nodes.training.fer import FerTask, export, model_config, normalise, to_input
    from facegraph.nodes.training.trainer import TrainConfig, Trainer

    train, val = imagefolder.load_splits(CKPLUS, size=48, color="gray", group_by=r"^(S\d+)")
    cfg = model_config("cnn48", len(train.classes), width=16, dropout=0.0)
    task = FerTask(train, val, cfg)
    torch.manual_seed(0)
    pick = np.random.default_rng(0).choice(len(train), 128, replace=False)  # files are sorted by class
    fixed = normalise(to_input(train.images[pick])), torch.from_numpy(train.labels[pick])

    def loss_on_fixed(model):
        model.train()  # batch statistics: the same normalisation before and after, whatever BN's running means
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(fixed[0])[0], fixed[1]))

    before = loss_on_fixed(task.build_model())  # the seed the trainer uses gives the same initial weights
    result = Trainer(TrainConfig(out=str(tmp_path / "run"), epochs=3, batch_size=32, lr=3e-3, max_batches=8,
                                 progress=False, threads=2, warmup_epochs=0)).fit(task)
    final = task.build_model()
    final.load_state_dict(torch.load(result.final_checkpoint, weights_only=False)["model"])
    after = loss_on_fixed(final)
    assert after < before - 0.1, (before, after)
    path, report = export(result.model, tmp_path / "run", task, data=str(CKPLUS), command="test", seconds=1.0,
                          history_best=result.best_metrics)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["onnx_max_abs_diff"] < 1e-4
    assert meta["labels"] == train.classes and meta["input_size"] == 48 and meta["color"] == "gray"
    assert meta["scores"]["val_accuracy"] == report["accuracy"] and report["n"] == len(val)


def _run(capsys, *argv):
    code = cli(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_data_folders_are_one_line_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _run(capsys, "train", "fer", "--data", str(empty), "--out", str(tmp_path / "o"))
    assert code == 2 and "no class folders" in err and str(empty) in err and len(err.splitlines()) == 1

    root = _folder(tmp_path / "d")
    (root / "angry").mkdir()
    code, err = _run(capsys, "train", "fer", "--data", str(root), "--out", str(tmp_path / "o"))
    assert code == 2 and "class 'angry' holds no images" in err

    (root / "angry").rmdir()
    broken = root / "happy" / "broken.png"
    broken.write_bytes(b"\x89PNG not an image")
    code, err = _run(capsys, "train", "fer", "--data", str(root), "--out", str(tmp_path / "o"))
    assert code == 2 and f"{broken}: unreadable image" in err
    broken.unlink()

    code, err = _run(capsys, "train", "fer", "--data", str(root), "--group-by", "^(X\\d+)", "--out", str(tmp_path))
    assert code == 2 and "--group-by" in err and "does not match" in err


def test_corrupt_checkpoint_and_wrong_resume_are_one_line(tmp_path, capsys):
    root = _folder(tmp_path / "d")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code, err = _run(capsys, "train", "fer", "--data", str(root), "--resume", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2 and f"--resume {bad}: not a readable checkpoint" in err
    args = ["train", "fer", "--data", str(root), "--epochs", "1", "--no-progress", "--export", "none"]
    assert _run(capsys, *args, "--width", "4", "--out", str(tmp_path / "a"))[0] == 0
    code, err = _run(capsys, *args, "--width", "8", "--out", str(tmp_path / "b"), "--resume", str(tmp_path / "a"))
    assert code == 2 and "checkpoint's model differs" in err and "width=4 vs 8" in err
    code, err = _run(capsys, "eval", "fer", "--model", str(tmp_path / "none.onnx"), "--data", str(root))
    assert code == 2 and "none.onnx: no such file" in err


def test_a_model_onnx_cannot_trace_is_refused_in_one_line(tmp_path):
    from facegraph.nodes.training.exporting import export_onnx_checked

    def export_fn():
        raise RuntimeError("Unsupported: ONNX export of operator foo\nlong details")

    with pytest.raises(TrainingError, match=r"--export onnx: toy cannot be exported to ONNX \(Unsupported: .*foo\)$"):
        export_onnx_checked(export_fn, lambda x: x, [np.zeros((1, 1), np.float32)], "toy")


def test_predict_and_eval_need_existing_files(tmp_path, capsys):
    code, err = _run(capsys, "predict", str(tmp_path / "nope.jpg"))
    assert code == 2 and "nope.jpg: no such image file" in err


def test_the_resnet18_backbone_gives_an_embedding_and_exports(tmp_path):
    from facegraph.nodes.nets.expression import ExpressionNet, _Exported
    from facegraph.nodes.nets.expression import export_onnx as export_expression
    from facegraph.nodes.training.exporting import export_onnx_checked
    from facegraph.nodes.training.fer import model_config

    cfg = model_config("resnet18", 5, width=8)
    model = ExpressionNet(cfg).eval()
    logits, emb = model(torch.zeros(3, 1, 48, 48))
    assert logits.shape == (3, 5) and emb.shape == (3, 128)
    x = np.random.default_rng(0).normal(size=(4, 1, 48, 48)).astype(np.float32)
    path, diff = export_onnx_checked(
        lambda: export_expression(model, tmp_path / "r.onnx", labels=list("abcde")), _Exported(model).eval(), [x],
        "resnet18")
    assert diff < 1e-4 and json.loads(path.with_suffix(".json").read_text())["onnx_max_abs_diff"] == diff
    with pytest.raises(TrainingError, match="--model vgg99: unknown"):
        model_config("vgg99", 7)


def test_group_folds_hold_every_person_out_once(tmp_path):
    data = imagefolder.load(_folder(tmp_path / "d", per_class=30, subjects=10), size=48)
    held = [imagefolder.split(data, 0.2, group_by=r"^(S\d+)", fold=k)[1] for k in range(5)]
    assert sorted(np.concatenate(held).tolist()) == list(range(len(data)))
    with pytest.raises(TrainingError, match="--val-fold must be 0…4"):
        imagefolder.split(data, 0.2, group_by=r"^(S\d+)", fold=5)


def test_the_shipped_fer_model_is_listed_with_its_card_and_hash():
    from facegraph._modelstore import locate, lookup, sha256_file

    entry = lookup("fer")
    assert entry is not None and entry.name == "facegraph/fer_cnn" and entry.bundled
    path = locate(entry)
    assert path is not None and path.stat().st_size == entry.size <= 16_000_000
    assert sha256_file(path) == entry.sha256
    card = json.loads(path.with_suffix(".json").read_text())
    assert "research use" in card["data_licence"] and card["command"].startswith("facegraph train fer")
    assert card["scores"]["val_accuracy"] > 0.6 and card["labels"][3] == "happy"


def test_predict_names_the_emotion_of_every_face_in_a_real_photo(capsys):
    """insightface's group photo ships in its wheel: faces found, probabilities sorted and summing to 1."""
    import insightface

    photo = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not photo.is_file():
        pytest.skip(f"needs {photo} (insightface's sample photos)")
    assert cli(["predict", str(photo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 4 and {r["face"] for r in rows} == set(range(len(rows)))
    for r in rows:
        values = list(r["probs"].values())
        assert values == sorted(values, reverse=True) and abs(sum(values) - 1) < 0.01 and len(values) == 7
    assert sum(next(iter(r["probs"])) == "happy" for r in rows) >= 2  # a cast photo: most of them smile
    assert cli(["predict", str(photo)]) == 0
    assert "PROBABILITIES" in capsys.readouterr().out


def test_coreml_export_carries_the_metadata(tmp_path):
    ct = pytest.importorskip("coremltools", reason="CoreML export needs coremltools (the [coreml] extra)")
    from facegraph.nodes.nets.expression import ExpressionNet, _Exported
    from facegraph.nodes.training.exporting import export_coreml
    from facegraph.nodes.training.fer import model_config

    model = ExpressionNet(model_config("cnn48", 3, width=4)).eval()
    example = np.zeros((1, 1, 48, 48), np.float32)
    path = export_coreml(_Exported(model).eval(), example, tmp_path / "fer", metadata={"labels": ["a", "b", "c"]})
    assert path.suffix == ".mlpackage" and path.is_dir()
    spec = ct.models.MLModel(str(path), skip_model_load=True)
    assert json.loads(spec.user_defined_metadata["labels"]) == ["a", "b", "c"]
