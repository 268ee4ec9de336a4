"""`detect` on real data (../shared): faces found, SCRFD counts, track ids stable on the multi-face video."""

from __future__ import annotations

import numpy as np
import pytest
from _face_video import read_frames, run_chain
from facegraph.nodes.face.detect import Detect
from facegraph.nodes.face.landmarks import Landmarks

from facegraph import ModelError, ParamError
from facegraph.testing import run_node

pytestmark = pytest.mark.shared


def _opened(node):
    node.open()
    return node


def test_params_are_checked():
    with pytest.raises(ParamError, match="model"):
        Detect(backend="scrfd")
    with pytest.raises(ParamError, match="multiple of 32"):
        Detect(backend="scrfd", model="x.onnx", input_size=100)
    with pytest.raises(ParamError, match="short, full"):
        Detect(model="medium")
    with pytest.raises(ModelError, match=r"nope\.onnx"):
        Detect(backend="scrfd", model="/nope/nope.onnx").open()


def test_blank_frame_has_no_faces():
    out = run_node(Detect(), {"frame": {"image": np.zeros((480, 640, 3), np.uint8)}})["faces"]
    assert out["boxes"].shape == (0, 4) and out["kps"].shape == (0, 5, 2) and out["track_id"].shape == (0,)


@pytest.mark.parametrize(("video", "limit"), [("openface_2015-10-15-15-14.avi", 150), ("pyfeat_single_face.mp4", None)])
@pytest.mark.parametrize("model", ["full", "short"])
def test_single_face_found_in_99_percent_of_frames(shared_video, video, limit, model):
    frames = read_frames(shared_video(video), limit)
    out = run_chain(_opened(Detect(model=model)), _opened(Landmarks()), frames)
    detected = np.mean([len(o["detect"]["boxes"]) == 1 for o in out])
    followed = np.mean([len(o["faces"]["boxes"]) == 1 for o in out])
    assert detected >= 0.99 and followed >= 0.99, (detected, followed)
    ids = {int(t) for o in out for t in o["faces"]["track_id"]}
    assert len(ids) == 1
    # the 5 keypoints sit inside the box, left eye left of the right eye
    for o in out[::10]:
        box, kps = o["detect"]["boxes"][0], o["detect"]["kps"][0]
        assert (kps >= box[:2] - 2).all() and (kps <= box[2:] + 2).all()
        assert kps[0, 0] < kps[1, 0] and kps[3, 0] < kps[4, 0]


@pytest.mark.parametrize(
    ("what", "count"),
    [("openface_2015-10-15-15-14.avi", 1), ("openface_multi_face.avi", 3), ("insightface_t1.jpg", 6)],
)
def test_scrfd_counts_faces_on_frame_0(shared_video, shared_image, shared_model, what, count):
    import cv2

    image = cv2.imread(str(shared_image("misc", what))) if what.endswith(".jpg") else read_frames(
        shared_video(what), 1)[0]
    node = Detect(backend="scrfd", model=str(shared_model("scrfd_500m_det_500m.onnx")))
    faces = run_node(node, {"frame": {"image": image}})["faces"]
    assert len(faces["boxes"]) == count
    assert (faces["scores"] >= 0.5).all()
    w = faces["boxes"][:, 2] - faces["boxes"][:, 0]
    assert (w > 20).all() and (faces["boxes"][:, 2] <= image.shape[1] + 5).all()


def test_scrfd_and_blazeface_agree_on_the_eyes(shared_video, shared_model):
    image = read_frames(shared_video("openface_2015-10-15-15-14.avi"), 1)[0]
    a = run_node(Detect(), {"frame": {"image": image}})["faces"]["kps"][0]
    b = run_node(Detect(backend="scrfd", model=str(shared_model("scrfd_500m_det_500m.onnx"))),
                 {"frame": {"image": image}})["faces"]["kps"][0]
    eye_dist = np.linalg.norm(b[1] - b[0])
    assert np.linalg.norm(a[:3] - b[:3], axis=1).max() < 0.15 * eye_dist
    assert np.linalg.norm(a[3:] - b[3:], axis=1).max() < 0.25 * eye_dist  # estimated mouth corners


def _switches(outputs: list[dict], faces: int) -> int:
    ids = {int(t) for o in outputs for t in o["faces"]["track_id"]}
    return max(0, len(ids) - faces)


@pytest.fixture(scope="module")
def multi_face_frames():
    """The whole multi-face video (702 frames, 3 people), decoded once for this module's tests."""
    from conftest import shared_file

    return read_frames(shared_file("data", "videos", "openface_multi_face.avi"))


def test_track_ids_stable_on_multi_face_video(multi_face_frames):
    """Whole video, detector on every frame: at most one id switch over the 3 faces (after frame ~385
    people move fast while turning away, and one crosses behind another out of sight)."""
    out = run_chain(_opened(Detect()), _opened(Landmarks()), multi_face_frames)
    assert _switches(out, 3) <= 1
    assert np.mean([len(o["faces"]["boxes"]) == 3 for o in out]) > 0.85


@pytest.mark.parametrize("every", [3, 5])
def test_track_ids_stable_with_sparse_detection_on_whole_multi_face_video(multi_face_frames, every):
    """Whole video (consecutive frames), detector on every 3rd / 5th frame only: landmarks follow the
    faces between detections and re-identify those that turn away and come back, so there is at most
    one id switch (there were 8 / 12 when only the detector's sparse tracker kept the ids)."""
    out = run_chain(_opened(Detect(detect_every=every)), _opened(Landmarks()), multi_face_frames)
    assert _switches(out, 3) <= 1
    assert np.mean([len(o["faces"]["boxes"]) == 3 for o in out]) > 0.8
    # all three faces of the first frame are still there, with their ids, on the last frame
    assert sorted(out[0]["faces"]["track_id"].tolist()) == sorted(out[-1]["faces"]["track_id"].tolist())
    assert len(out[-1]["faces"]["track_id"]) == 3


def test_detect_every_5_landmarks_follow_between(multi_face_frames):
    """Frames 0-379 (before the fast, turning motion that follows): detector on every 5th frame only,
    landmarks follow all three faces on every frame, with no id switch."""
    out = run_chain(_opened(Detect(detect_every=5)), _opened(Landmarks()), multi_face_frames[:380])
    assert all(len(o["faces"]["boxes"]) == 3 for o in out)
    assert _switches(out, 3) == 0
    # on skipped frames the detector repeats itself, the landmark boxes move on
    assert out[3]["detect"]["boxes"] is out[1]["detect"]["boxes"]
    moved = [np.abs(out[i]["faces"]["boxes"] - out[i - 1]["faces"]["boxes"]).max() for i in range(1, 5)]
    assert max(moved) > 0
