"""Port types refuse malformed values with the field, the expected and the actual shape."""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.types import AUS, FACES, LANDMARKS

from facegraph import FRAME, Field, PortType, PortValueError, array, port_type, value


def faces(n: int) -> dict:
    return {
        "boxes": np.zeros((n, 4), np.float32),
        "scores": np.zeros(n, np.float32),
        "kps": np.zeros((n, 5, 2), np.float32),
        "track_id": np.arange(n, dtype=np.int32),
    }


@pytest.mark.parametrize("n", [0, 1, 3])
def test_faces_accepts_any_count(n):
    out = FACES.validate(faces(n))
    assert out["boxes"].shape == (n, 4)


@pytest.mark.parametrize(
    ("port", "values", "message"),
    [
        (FRAME, {"image": np.zeros((4, 4, 3), np.float32)}, "Frame.image must have dtype uint8, got float32"),
        (FRAME, {"image": np.zeros((4, 4), np.uint8)}, "Frame.image must have shape (H, W, 3), got shape (4, 4)"),
        (FRAME, {"image": np.zeros((4, 4, 4), np.uint8)}, "Frame.image must have shape (H, W, 3)"),
        (FRAME, {}, "Frame value lacks field 'image'"),
        (
            FACES,
            {**faces(2), "scores": np.zeros(3, np.float32)},
            "Faces.scores must have shape (N) with N=2, got shape (3,)",
        ),
        (FACES, {**faces(1), "extra": 1}, "Faces has no field 'extra'"),
        (LANDMARKS, {"points": np.zeros((1, 67, 2), np.float32)}, "Landmarks.points must have shape"),
        (LANDMARKS, {"points": np.zeros((1, 68, 4), np.float32)}, "got shape (1, 68, 4)"),
        (AUS, {"intensity": np.zeros((1, 2), np.float32), "names": "AU01"}, "AUs.names must be list, got str"),
    ],
)
def test_bad_values_are_refused_with_field_and_shapes(port, values, message):
    with pytest.raises(PortValueError) as err:
        port.validate(values)
    assert message in str(err.value)


def test_landmarks_known_counts_2d_and_3d():
    for k in (68, 106, 468, 478):
        for d in (2, 3):
            LANDMARKS.validate({"points": np.zeros((2, k, d), np.float32)})


def test_user_defined_type_is_registered_and_checked():
    gaze = PortType("GazeTest", array("vec", "float32", "N", 3), value("unit", str, required=False))
    assert port_type("GazeTest") is gaze
    gaze.validate({"vec": np.zeros((2, 3), np.float32), "unit": "rad"})
    with pytest.raises(PortValueError, match=r"GazeTest.vec must have shape \(N, 3\)"):
        gaze.validate({"vec": np.zeros((2, 2), np.float32)})
    assert isinstance(gaze.fields["vec"], Field)
    assert "vec: float32[N,3]" in repr(gaze)
