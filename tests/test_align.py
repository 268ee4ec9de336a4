"""Alignment: Umeyama against scikit-image/insightface, template identity, OpenFace crop, the align node."""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.face import _align
from facegraph.nodes.face.align import Align

from facegraph import ParamError
from facegraph.testing import run_node


def _rot(deg: float, scale: float, t: tuple[float, float]) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), t[0]], [scale * np.sin(a), scale * np.cos(a), t[1]]])


@pytest.mark.parametrize("size", [112, 128, 224])
def test_template_maps_to_itself(size):
    m = _align.arcface_matrix(_align.arcface_template(size), size)
    np.testing.assert_allclose(m, np.eye(2, 3), atol=1e-9)


def test_template_sizes_follow_insightface():
    np.testing.assert_allclose(_align.arcface_template(224), _align.ARCFACE_112 * 2)
    expect = _align.ARCFACE_112.copy()
    expect[:, 0] += 8.0
    np.testing.assert_allclose(_align.arcface_template(128), expect)
    with pytest.raises(ValueError):
        _align.arcface_template(100)


def test_umeyama_recovers_a_similarity():
    src = np.random.default_rng(1).uniform(0, 200, (7, 2))
    m = _rot(23.0, 1.7, (5.0, -40.0))
    dst = _align.transform_points(src, m)
    np.testing.assert_allclose(_align.umeyama(src, dst), m, atol=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image's estimate(), inside insightface
@pytest.mark.parametrize("size", [112, 128, 224])
def test_matches_insightface_estimate_norm(size):
    pytest.importorskip("skimage", reason="insightface's face_align needs scikit-image")
    from insightface.utils import face_align

    kps = np.random.default_rng(size).uniform(50, 300, (5, 2)).astype(np.float32)
    np.testing.assert_allclose(_align.arcface_matrix(kps, size), face_align.estimate_norm(kps, size), atol=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_node_crop_equals_insightface_norm_crop_on_tom_hanks(shared_image):
    pytest.importorskip("skimage", reason="insightface's face_align needs scikit-image")
    import cv2
    from insightface.utils import face_align

    face = cv2.imread(str(shared_image("misc", "insightface_Tom_Hanks_54745.png")))
    assert face.shape == (112, 112, 3)
    # already aligned: the template keypoints give (almost) the identity and the same picture
    out = run_node(Align(), {"frame": {"image": face}, "faces": _faces(_align.ARCFACE_112[None])})
    np.testing.assert_allclose(out["crops"]["matrices"][0], np.eye(2, 3), atol=1e-5)
    assert np.abs(out["crops"]["images"][0].astype(int) - face).max() <= 1
    # put the face into a bigger frame, rotated and scaled, and align it back
    m = _rot(20.0, 1.8, (150.0, 60.0))
    big = cv2.warpAffine(face, m, (480, 360))
    kps = _align.transform_points(_align.ARCFACE_112, m).astype(np.float32)
    out = run_node(Align(), {"frame": {"image": big}, "faces": _faces(kps[None], track_id=[7])})
    crop = out["crops"]["images"][0]
    np.testing.assert_array_equal(crop, face_align.norm_crop(big, kps))
    inner = (slice(20, 92), slice(20, 92))
    assert np.abs(crop[inner].astype(int) - face[inner]).mean() < 6
    assert out["crops"]["track_id"].tolist() == [7]


def _faces(kps: np.ndarray, track_id: list[int] | None = None) -> dict:
    n = len(kps)
    out = {
        "boxes": np.tile(np.array([[0, 0, 10, 10]], np.float32), (n, 1)),
        "scores": np.ones(n, np.float32),
        "kps": np.asarray(kps, np.float32).reshape(n, 5, 2),
    }
    if track_id is not None:
        out["track_id"] = np.array(track_id, np.int32)
    return out


@pytest.mark.parametrize("mode,size", [("arcface", 112), ("arcface", 128), ("openface", 112), ("openface", 96)])
def test_zero_faces_give_an_empty_batch(mode, size):
    frame = {"image": np.zeros((60, 80, 3), np.uint8)}
    inputs = {"frame": frame, "faces": _faces(np.zeros((0, 5, 2)))} if mode == "arcface" else {
        "frame": frame, "landmarks": {"points": np.zeros((0, 68, 2), np.float32)}}
    crops = run_node(Align(mode=mode, size=size), inputs)["crops"]
    assert crops["images"].shape == (0, size, size, 3) and crops["matrices"].shape == (0, 2, 3)


def test_several_faces_in_one_output_each_with_its_own_matrix():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    ms = [_rot(0.0, 1.0, (10.0, 20.0)), _rot(-15.0, 0.7, (200.0, 150.0)), _rot(40.0, 1.2, (250.0, 10.0))]
    kps = np.stack([_align.transform_points(_align.ARCFACE_112, m) for m in ms]).astype(np.float32)
    crops = run_node(Align(), {"frame": {"image": frame}, "faces": _faces(kps)})["crops"]
    assert crops["images"].shape == (3, 112, 112, 3)
    for m, got in zip(ms, crops["matrices"], strict=True):
        back = _align.transform_points(_align.transform_points(_align.ARCFACE_112, m), got)
        np.testing.assert_allclose(back, _align.ARCFACE_112, atol=1e-3)
    # the first face is a pure translation: its crop is the frame's window
    np.testing.assert_array_equal(crops["images"][0, :100, :100], frame[20:120, 10:110])


def test_openface_crop_puts_the_mean_face_on_its_template():
    m = _rot(-12.0, 2.5, (300.0, 200.0))
    tmpl = _align.openface_template(112)
    pts = _align.transform_points(_align.openface_template(112), m).astype(np.float32)
    frame = {"image": np.zeros((600, 800, 3), np.uint8)}
    crops = run_node(Align(mode="openface"), {"frame": frame, "landmarks": {"points": pts[None]}})["crops"]
    np.testing.assert_allclose(_align.transform_points(pts, crops["matrices"][0]), tmpl, atol=1e-3)
    # OpenFace's scale: 0.7 px per model mm at 112 px, centred on the model's origin
    assert np.linalg.norm(tmpl[36:42].mean(0) - tmpl[42:48].mean(0)) == pytest.approx(0.7 * 65.7, abs=1.0)
    np.testing.assert_allclose(_align.openface_template(224), (tmpl - 56) * 2 + 112)


def test_arcface_from_68_landmarks_and_param_checks():
    pts = _align.transform_points(_align.openface_template(112), _rot(0, 1, (0, 0))).astype(np.float32)
    frame = {"image": np.zeros((112, 112, 3), np.uint8)}
    crops = run_node(Align(), {"frame": frame, "landmarks": {"points": pts[None]}})["crops"]
    assert crops["images"].shape == (1, 112, 112, 3)
    with pytest.raises(ParamError, match="multiple of 112 or 128"):
        Align(size=100)
    Align(mode="openface", size=100)  # any size is fine for the OpenFace crop


def test_input_frame_is_not_written():
    frame = np.full((120, 160, 3), 77, np.uint8)
    frame.setflags(write=False)
    run_node(Align(), {"frame": {"image": frame}, "faces": _faces(_align.ARCFACE_112[None])})
    assert (frame == 77).all()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image's estimate(), inside insightface
@pytest.mark.parametrize("size", [112, 128])
def test_one_arcface_alignment_equals_insightface_norm_crop(size):
    """The module the node and the gallery builder share, against insightface: within 0.5 px, same pixels."""
    pytest.importorskip("skimage", reason="insightface's face_align needs scikit-image")
    import cv2
    from insightface.utils import face_align

    rng = np.random.default_rng(size)
    # smooth like a photo: on raw noise a 1e-6 matrix difference can flip OpenCV's 1/32-px bin and a pixel by 7
    image = cv2.GaussianBlur(rng.integers(0, 255, (400, 500, 3), dtype=np.uint8), (0, 0), 3)
    for _ in range(5):
        m = _rot(rng.uniform(-30, 30), rng.uniform(0.8, 2.5), tuple(rng.uniform(50, 250, 2)))
        kps = (_align.transform_points(_align.ARCFACE_112, m) + rng.normal(0, 2, (5, 2))).astype(np.float32)
        crop, ours = _align.align(image, kps, size)
        theirs = face_align.estimate_norm(kps, size)
        # where each keypoint lands in the crop, ours against insightface's
        moved = np.abs(_align.transform_points(kps, ours) - _align.transform_points(kps, theirs)).max()
        assert moved < 0.5
        assert np.abs(crop.astype(int) - face_align.norm_crop(image, kps, size).astype(int)).max() <= 1


def test_gallery_builder_crops_with_the_same_alignment(monkeypatch):
    """identify's gallery photos go through face/_align.py: a 4-point detection lands on the template's 5."""
    from facegraph.nodes.face import _align as shared
    from facegraph.nodes.models import _gallery

    calls = []

    def spy(image, kps, size=112):
        calls.append(len(kps))
        return shared.arcface_matrix(kps, size), None

    class Detection:  # what mediapipe's FaceDetection gives for one face
        def __init__(self, points):
            box = type("Box", (), {"width": 0.5})()
            self.location_data = type("Loc", (), {
                "relative_bounding_box": box,
                "relative_keypoints": [type("K", (), {"x": x / 400, "y": y / 300})() for x, y in points],
            })()

    m = _rot(10.0, 1.5, (120.0, 40.0))
    five = _align.transform_points(_align.ARCFACE_112, m)
    four = np.vstack([five[:3], five[3:5].mean(0)])
    finder = _gallery.FaceFinder.__new__(_gallery.FaceFinder)
    finder.detector = type("D", (), {"process": lambda self, rgb: type("R", (), {"detections": [Detection(four)]})()})()
    monkeypatch.setattr(shared, "align", spy)
    matrix = finder(np.zeros((300, 400, 3), np.uint8))
    assert calls == [4]
    np.testing.assert_allclose(_align.transform_points(five, matrix), _align.ARCFACE_112, atol=0.5)


def test_align_needs_four_or_five_keypoints():
    with pytest.raises(ValueError, match="4 or 5 keypoints"):
        _align.align(np.zeros((50, 50, 3), np.uint8), np.zeros((2, 2), np.float32))
