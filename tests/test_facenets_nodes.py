"""landmarks.nn + au.nn on frames of a shared video (tiny untrained exports: shapes, the frame↔crop maps, tracks
followed between detections), and sink.hdf5 writing a teacher's values as training rows."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from conftest import shared_file  # noqa: E402
from facegraph.nodes.face.facenets import AUNN, LandmarksNN  # noqa: E402
from facegraph.nodes.io.sink_hdf5 import Hdf5Sink  # noqa: E402
from facegraph.nodes.training import h5data, teacher  # noqa: E402

from facegraph import RunContext  # noqa: E402
from facegraph.testing import run_node_frames  # noqa: E402

STEM = "pyfeat_single_face"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from facegraph.nodes.nets._export import export as export_onnx
    from facegraph.nodes.nets.facepose import AUPredictionNet, UnifiedLandmarkPoseNet

    root = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    common = {"input_size": 112, "mean": 0.5, "std": 0.5}
    export_onnx(UnifiedLandmarkPoseNet(width_mult=0.25), (torch.zeros(1, 3, 112, 112),), root / "lm" /
                "landmark_pose.onnx", ["image"], ["landmarks", "global_params", "local_params"],
                {"kind": "landmark-pose", "outputs": ["landmarks", "global_params", "local_params"], **common})
    export_onnx(AUPredictionNet(width_mult=0.25), (torch.zeros(1, 3, 112, 112),), root / "au" / "au_net.onnx",
                ["image"], ["au_intensities"], {"kind": "au-net", "outputs": ["au_intensities"], **common})
    return root


@pytest.fixture(scope="module")
def frames():
    """Three frames with the teacher's landmarks and AUs (OpenFace 0.2)."""
    video = shared_file("data", "videos", f"{STEM}.mp4")
    rows, names = teacher.read_csv(shared_file("data", "openface_0.2", f"{STEM}.csv"))
    out = []
    for index, image in teacher.frames_of(video):
        if index >= 3:
            break
        out.append((image, rows[index]["points"], rows[index]["au"], names))
    return out


def _faces(points, tid=7):
    five = teacher.five_from_68(points)
    lo, hi = points.min(0), points.max(0)
    return {"boxes": np.array([[*lo, *hi]], np.float32), "scores": np.ones(1, np.float32),
            "kps": five[None].astype(np.float32), "track_id": np.array([tid], np.int32)}


def test_landmarks_and_aus_per_face_with_tracks_followed(models, frames, tmp_path):
    image, points, _, _ = frames[0]
    faces = _faces(points)
    lm = LandmarksNN(model=str(models / "lm"), backend="auto")
    out = run_node_frames(lm, [{"frame": {"image": im}, "faces": faces} for im, *_ in frames])
    assert lm.net.backend == "onnx-cpu"
    for o in out:
        assert o["landmarks68"]["points"].shape == (1, 68, 2) and o["landmarks68"]["scheme"] == "ibug68"
        assert o["crops"]["images"].shape == (1, 112, 112, 3) and o["pose"]["rotation"].shape == (1, 3)
        assert list(o["faces"]["track_id"]) == [7]
        assert np.all(np.isfinite(o["pose"]["translation"]))
    # the crop is the frame warped by the crop's matrix, and the landmarks come back to the frame through it
    m = out[0]["crops"]["matrices"][0]
    assert np.abs(out[0]["crops"]["images"][0].astype(int) - _warp(image, m)).max() <= 1
    back = out[0]["landmarks68"]["points"][0]
    assert np.all((back @ m[:, :2].T + m[:, 2] > -112) & (back @ m[:, :2].T + m[:, 2] < 224))
    # frames 2 and 3 repeat the detection: their crops come from the last landmarks, not the detector's points
    assert not np.allclose(out[1]["crops"]["matrices"], out[0]["crops"]["matrices"])
    au = AUNN(model=str(models / "au"))
    got = run_node_frames(au, [{"crops": o["crops"]} for o in out], context=RunContext(output_dir=tmp_path))
    assert got[0]["aus"]["intensity"].shape == (1, 17) and got[0]["aus"]["backend"] == "nn-onnx-cpu"
    assert 0.0 <= got[0]["aus"]["intensity"].min() and got[0]["aus"]["intensity"].max() <= 5.0
    assert got[0]["aus"]["names"][0] == "AU01" and list(got[0]["aus"]["track_id"]) == [7]


def _warp(image, m):
    from facegraph.nodes.face._align import warp_crops

    return warp_crops(image, m[None], 112)[0].astype(int)


def test_missing_model_is_one_line(tmp_path):
    assert "model folder not found" in LandmarksNN.requirements({"model": str(tmp_path / "none")})[0]
    assert "names the model folder" in AUNN.requirements({"model": ""})[0]
    with pytest.raises(Exception, match=r"no landmark_pose\.json, \.onnx or checkpoint"):
        run_node_frames(LandmarksNN(model=str(tmp_path)), [])


def test_sink_hdf5_writes_the_teachers_values(frames, tmp_path):
    pdm = shared_file("models", "openface_2.2", "AU_predictors", "In-the-wild_aligned_PDM_68.txt")
    sink = Hdf5Sink(path="t.h5", pdm=str(pdm), video_name=STEM, hog=False)
    inputs = []
    for image, points, aus, names in frames:
        inputs.append({"frame": {"image": image}, "landmarks": {"points": points[None].astype(np.float32)},
                       "aus": {"intensity": aus[None].astype(np.float32), "names": names}})
    inputs[1]["aus"]["intensity"][0, 3] = np.nan  # an unread face: skipped, counted
    run_node_frames(sink, inputs, context=RunContext(output_dir=tmp_path))
    assert (sink.written, sink.skipped) == (2, 1)
    d = h5data.read(tmp_path / "t.h5")
    assert len(d) == 2 and d.videos() == [STEM] and list(d.frame_indices) == [0, 2]
    want = teacher.sample(frames[0][0], frames[0][1], np.zeros(6), np.zeros(34), frames[0][2], hog=False)
    np.testing.assert_allclose(d.landmarks[0], want["landmarks"], atol=1e-3)
    np.testing.assert_array_equal(d.images[0], want["images"])
    np.testing.assert_allclose(d.au_intensities[0], np.clip(frames[0][2], 0, 5), atol=1e-6)
    assert 0.1 < d.global_params[0, 0] < 2.0 and d.quality_scores.min() > 0.3  # the PDM fits the points well
