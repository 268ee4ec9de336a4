"""Knowledge distillation for ``train face-id``: the teacher cache, a few batches lowering the distillation loss,
the export's chosen output, and the one-line error when dlib is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from facegraph.nodes.models import _dlib  # noqa: E402
from facegraph.nodes.training import faceid_data as fd  # noqa: E402
from facegraph.nodes.training.faceid_distill import distill_loss, teacher_for  # noqa: E402
from test_faceid_train import _identity_folder  # noqa: E402

needs_dlib = pytest.mark.skipif(bool(_dlib.missing()), reason="dlib or face-recognition-models not installed "
                                f"({_dlib.INSTALL})")


class LeftRight:
    """A stand-in teacher: mean colour of the left and right image halves (so a mirror swaps them); counts calls."""

    calls = 0

    def __call__(self, crops):
        LeftRight.calls += 1
        half = crops.shape[2] // 2
        v = np.concatenate([crops[:, :, :half].mean((1, 2)), crops[:, :, half:].mean((1, 2))], 1) + 1.0
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_teacher_cache_round_trip(tmp_path):
    data = fd.load_identities(_identity_folder(tmp_path / "ids", people=3, each=3), holdout_people=1,
                              probe_fraction=0.34)
    LeftRight.calls = 0
    first = teacher_for(data, cache_dir=tmp_path / "cache", embedder=LeftRight(), log=lambda m: None)
    assert first.shape == (9, 2, 6) and LeftRight.calls == 2
    # column 1 is the mirror: its left half is the image's right half
    assert np.allclose(first[:, 1, :3], first[:, 0, 3:], atol=1e-6)
    again = teacher_for(data, cache_dir=tmp_path / "cache", embedder=LeftRight(), log=lambda m: None)
    assert LeftRight.calls == 2 and np.array_equal(first, again)  # read from the cache, not recomputed
    data.paths = data.paths[::-1]  # other files → the cache is not reused
    teacher_for(data, cache_dir=tmp_path / "cache", embedder=LeftRight(), log=lambda m: None)
    assert LeftRight.calls == 4


@needs_dlib
def test_teacher_in_two_processes_equals_one(tmp_path):
    from facegraph.nodes.training.faceid_distill import _teacher_cached

    folder = _identity_folder(tmp_path / "ids", people=2, each=3)
    images = np.stack([cv2.imread(str(p)) for p in sorted(folder.rglob("*.png"))])
    kw = {"batch": 2, "log": lambda m: None, "embedder": None, "paths": []}
    one = _teacher_cached(images, "k", "dlib", None, workers=1, **kw)
    two = _teacher_cached(images, "k", "dlib", None, workers=2, **kw)
    assert one.shape == (len(images), 2, 128)
    np.testing.assert_allclose(two, one, atol=1e-5)


def test_distill_loss_kinds():
    t = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    assert float(distill_loss(t * 3.0, t)) < 1e-6  # scale-free: only the direction counts
    assert float(distill_loss(-t, t)) == pytest.approx(2.0, abs=1e-5)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    rotated = t @ q  # a rotation keeps the similarity matrix: relation 0, cosine not
    assert float(distill_loss(rotated, t, "relation")) < 1e-6 and float(distill_loss(rotated, t)) > 0.1


def test_missing_dlib_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from facegraph.cli import main

    monkeypatch.setattr(_dlib, "missing", lambda: ["backbone dlib needs dlib"])
    data = _identity_folder(tmp_path / "ids", people=3, each=2)
    assert main(["train", "face-id", "--data_root", str(data), "--holdout-people", "1", "--distill", "dlib",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert err == f"facegraph: --distill dlib needs dlib and its CC0 weights: {_dlib.INSTALL}"
    assert main(["train", "face-id", "--data_root", str(data), "--distill-only", "--out", str(tmp_path / "r")])
    assert capsys.readouterr().err.strip() == "facegraph: --distill-only needs --distill dlib"


@needs_dlib
def test_few_batches_of_distillation_lower_its_loss_and_export_says_the_teacher(tmp_path):
    from facegraph.cli import main

    data = _identity_folder(tmp_path / "ids", people=4, each=6)
    out = tmp_path / "run"
    assert main(["train", "face-id", "--data_root", str(data), "--backbone", "resnet18", "--width", "0.125",
                 "--img_size", "32", "--distill", "dlib", "--distill-only", "--distill-morphs", "4",
                 "--holdout-people", "2",
                 "--probe-fraction", "0.25", "--epochs", "12", "--batch-size", "4", "--lr", "1e-2",
                 "--warmup-epochs", "0", "--no-augment", "--threads", "1", "--no-progress", "--no-fp16",
                 "--out", str(out)]) == 0
    history = json.loads((out / "training_history.json").read_text())
    distill = [r["train_distill"] for r in history["epochs"]]
    assert np.mean(distill[-3:]) < 0.7 * distill[0], distill
    assert (out / "cache" / "teacher_dlib.npz").exists()
    assert (out / "cache" / "teacher_dlib_morphs4_s0.npz").exists()
    meta = json.loads((out / "face_id.json").read_text())
    assert meta["distill"]["teacher"]["name"] == "dlib_face_recognition_resnet_model_v1"
    assert meta["distill"]["teacher"]["licence"].startswith("CC0") and meta["distill"]["margin_head"] is False
    assert meta["output"] in ("embedding", "projection")
    assert meta["dim"] == (128 if meta["output"] == "projection" else 512)
    assert set(meta["distill"]["held_out_torch"]) == {"embedding", "projection"}
    from facegraph.nodes.models._dlib import open_embedder

    crops = np.stack([cv2.imread(str(p)) for p in sorted((data / "person0").glob("*.png"))[:2]])
    assert open_embedder(str(out / "face_id.onnx"))(crops).shape == (2, meta["dim"])
    # eval verify takes the run folder and the card's unseen people
    assert main(["eval", "verify", "--model", str(out), "--data", str(data), "--unseen-only", "--no-progress",
                 "--json", str(tmp_path / "v.json")]) == 0
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["people"] == 2 and v["dim"] == meta["dim"]


def test_centring_removes_the_shared_direction():
    from facegraph.nodes.training.faceid_distill import centre_teacher

    rng = np.random.default_rng(0)
    shared = np.zeros(8, np.float32)
    shared[0] = 3.0
    v = shared + rng.normal(0, 0.3, (10, 2, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    c, mean = centre_teacher(v, np.arange(6))
    assert np.allclose(mean, v[:6].reshape(-1, 8).mean(0)) and np.linalg.norm(mean) > 0.9
    assert np.allclose(np.linalg.norm(c, axis=-1), 1, atol=1e-5)
    assert abs(float((c[:6].reshape(-1, 8) @ (mean / np.linalg.norm(mean))).mean())) < 0.05


def test_morphs_blend_two_people_and_train_without_a_label(tmp_path):
    from facegraph.nodes.nets.faceid import FaceIDConfig, FaceIDNet
    from facegraph.nodes.training.faceid import FaceIDTask
    from facegraph.nodes.training.faceid_distill import make_morphs

    data = fd.load_identities(_identity_folder(tmp_path / "ids", people=3, each=4), holdout_people=1,
                              probe_fraction=0.25)
    m = make_morphs(data, 5, cache_dir=tmp_path / "cache", embedder=LeftRight(), log=lambda s: None)
    assert m.images.shape == (5, 112, 112, 3) and m.teacher.shape == (5, 2, 6)
    assert (data.labels[m.pairs[:, 0]] != data.labels[m.pairs[:, 1]]).all()
    assert set(data.role[m.pairs.ravel()]) == {"train"}
    w = m.alpha[0]
    expect = w * data.images[m.pairs[0, 0]].astype(np.float32) + (1 - w) * data.images[m.pairs[0, 1]]
    assert np.abs(m.images[0].astype(np.float32) - expect).max() <= 0.5 + 1e-3
    assert list((tmp_path / "cache").glob("teacher_dlib_morphs5_s0.npz"))

    teacher = teacher_for(data, cache_dir=None, embedder=LeftRight(), log=lambda s: None)
    cfg = FaceIDConfig(backbone="resnet18", width=0.125, input_size=32, classes=2, distill_dim=6)
    task = FaceIDTask(data, cfg, heatmaps=None, spec=None, teacher=teacher, morphs=m, augment=False)
    assert len(task.train_index) == len(data.where("train")) + 5 and len(task.teacher) == len(data.labels) + 5
    model = FaceIDNet(cfg)
    only_morphs = torch.from_numpy(task.train_index[-4:])
    batch = (task.stacked(only_morphs), task.train_labels[-4:], 0.2, task.teacher[only_morphs, 0])
    loss, logs = task.loss(model, batch, torch.device("cpu"))
    assert torch.isfinite(loss) and "ce" not in logs and logs["distill"] > 0


def test_morphs_without_mirrors_run_the_teacher_once_per_blend(tmp_path):
    from facegraph.nodes.training.faceid_distill import make_morphs

    data = fd.load_identities(_identity_folder(tmp_path / "ids", people=3, each=4), holdout_people=1,
                              probe_fraction=0.25)
    LeftRight.calls = 0
    both = make_morphs(data, 6, cache_dir=tmp_path / "cache", embedder=LeftRight(), log=lambda s: None, batch=64)
    assert LeftRight.calls == 2  # the blends and their mirrors
    LeftRight.calls = 0
    plain = make_morphs(data, 6, cache_dir=tmp_path / "cache", embedder=LeftRight(), log=lambda s: None, batch=64,
                        mirrors=False)
    assert LeftRight.calls == 1  # the blends alone: not read from the mirrored cache
    assert np.array_equal(plain.images, both.images) and np.allclose(plain.teacher[:, 0], both.teacher[:, 0])
    assert np.array_equal(plain.teacher[:, 1], plain.teacher[:, 0])  # a mirrored blend learns the blend's vector
    assert not np.allclose(both.teacher[:, 1], both.teacher[:, 0])
    assert (tmp_path / "cache" / "teacher_dlib_morphs6_s0_plain.npz").exists()


@pytest.mark.parametrize("spec", [None, {"scheme": "groups6", "sigma": 1.0, "mask": True}])
def test_flip_test_export_gives_a_face_and_its_mirror_one_vector(tmp_path, spec):
    import onnxruntime as ort
    from facegraph.nodes.face._heatmaps import channels
    from facegraph.nodes.nets.faceid import FaceIDConfig, FaceIDNet
    from facegraph.nodes.nets.iresnet import export_onnx
    from facegraph.nodes.training.faceid import _Embedding, flip_channels, mirror_index, mirror_input

    order = flip_channels(spec, 468)
    cfg = FaceIDConfig(backbone="resnet18", width=0.125, input_size=32, in_channels=3 + channels(spec, 468))
    model = FaceIDNet(cfg).eval()
    x = torch.randn(3, cfg.in_channels, 32, 32)
    mirrored = mirror_input(x, mirror_index(order))
    if spec:  # the left-eye map of the mirror is the right-eye map of the face, flipped
        assert torch.equal(mirrored[:, 3 + order.index(1)], x[:, 3 + 1].flip(-1))
        assert not torch.equal(mirrored[:, 3:], x[:, 3:].flip(-1))
    flip = _Embedding(model, flip_index=mirror_index(order)).eval()
    with torch.no_grad():
        a, b, one = flip(x), flip(mirrored), _Embedding(model).eval()(x)
    assert torch.allclose(a, b, atol=1e-5)  # the same vector for the face and its mirror
    assert not torch.allclose(F_normalize(a), F_normalize(one), atol=1e-3)
    path = export_onnx(flip, tmp_path / "f.onnx", input_size=32, in_channels=cfg.in_channels)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input.1": x.numpy()})[0]
    assert np.abs(got - a.numpy()).max() < 1e-4


def F_normalize(v):  # noqa: N802 - mirrors torch.nn.functional.normalize
    return torch.nn.functional.normalize(v, dim=1)


def test_export_output_rule(tmp_path):
    """--export-output: the embedding by default, the projection when asked, or auto: the better-ranking one."""
    from facegraph.nodes.nets.faceid import FaceIDConfig, FaceIDNet
    from facegraph.nodes.training.faceid import FaceIDTask

    data = fd.load_identities(_identity_folder(tmp_path / "ids", people=3, each=4), holdout_people=1,
                              probe_fraction=0.25)
    teacher = teacher_for(data, cache_dir=None, embedder=LeftRight(), log=lambda s: None)
    cfg = FaceIDConfig(backbone="resnet18", width=0.125, input_size=32, classes=0, distill_dim=6)
    task = FaceIDTask(data, cfg, heatmaps=None, spec=None, teacher=teacher, augment=False)
    onehot = np.eye(8, dtype=np.float32)[data.labels]  # a vector that names each person: rank-1 is 1
    noise = np.random.default_rng(0).normal(size=(len(data.labels), 8)).astype(np.float32)
    task.embed_both = lambda model, idx, device, batch=128: (noise[idx], onehot[idx])
    model, cpu = FaceIDNet(cfg), torch.device("cpu")
    out, scores = task.choose_output(model, cpu)
    assert out == "embedding" and scores["projection"] == 1.0 > scores["embedding"]
    assert task.choose_output(model, cpu, "auto")[0] == "projection"
    assert task.choose_output(model, cpu, "projection")[0] == "projection"
