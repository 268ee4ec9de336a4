"""The face vocabulary: port types that face-analysis nodes exchange, from one public place.

The engine (``facegraph``) knows only ``Frame`` and ``Any``; everything that
means "a face" lives here, so graphs, built-in nodes and third-party nodes all
import the same definitions: ``from facegraph.nodes.types import FACES, LANDMARKS``.
Per-face types hold one row per face (``N``) and an optional ``track_id``.
"""

from __future__ import annotations

from facegraph import ANY, FRAME, Field, PortType, array, value

__all__ = [
    "ANY",
    "AUS",
    "CROPS",
    "EMBEDDINGS",
    "FACES",
    "FRAME",
    "IDENTITIES",
    "LANDMARKS",
    "POSE",
    "PROBS",
    "WINDOW",
]


def _per_face(*extra: Field) -> tuple[Field, ...]:
    """The fields every per-face type carries after its own: the track id, when a tracker set one."""
    return (*extra, array("track_id", "int32", "N", required=False, doc="persistent id per face"))


FACES = PortType(
    "Faces",
    array("boxes", "float32", "N", 4, doc="x1, y1, x2, y2 in pixels"),
    array("scores", "float32", "N"),
    array("kps", "float32", "N", 5, 2, doc="eyes, nose tip, mouth corners (ArcFace order)"),
    value("shot", int, required=False, doc="detect: shot cuts seen up to this frame (a new number: a new shot)"),
    value("shot_cut", float, required=False, doc="detect: the frame-histogram threshold that found those cuts"),
    *_per_face(),
    doc="detected faces of one frame",
)
LANDMARKS = PortType(
    "Landmarks",
    array("points", "float32", "N", "5|68|98|106|468|478", "2|3", doc="pixel x, y (and depth)"),
    value("scheme", str, required=False, doc="point scheme: ibug68, facemesh468, ..."),
    value("mapped_from", str, required=False, doc="the native scheme these points were mapped from (facemesh468)"),
    array("scores", "float32", "N", required=False, doc="landmark confidence per face"),
    *_per_face(),
    doc="facial landmarks per face; K in 5, 68, 98, 106, 468, 478",
)
POSE = PortType(
    "Pose",
    array("rotation", "float32", "N", 3, doc="Rx, Ry, Rz in radians (OpenFace pose_R*)"),
    array("translation", "float32", "N", 3, doc="Tx, Ty, Tz in mm (OpenFace pose_T*)"),
    *_per_face(),
    doc="head pose per face",
)
CROPS = PortType(
    "Crops",
    array("images", "uint8", "N", "S", "S", 3, doc="aligned face crops"),
    array("matrices", "float32", "N", 2, 3, doc="frame → crop affine transforms"),
    *_per_face(),
    doc="aligned face crops of one frame",
)
EMBEDDINGS = PortType(
    "Embeddings",
    array("vec", "float32", "N", "D", doc="L2-normalised vectors"),
    *_per_face(),
    doc="one vector per face",
)
AUS = PortType(
    "AUs",
    array("intensity", "float32", "N", "A", doc="OpenFace scale 0-5; NaN where the face could not be read"),
    value("names", list, doc="AU names for the columns, e.g. AU01"),
    array("presence", "float32", "N", "P", required=False, doc="OpenFace's AU*_c: 0/1 per AU, NaN where unread"),
    value("presence_names", list, required=False, doc="AU names of the presence columns"),
    array("success", "uint8", "N", required=False, doc="1 where the backend could read the face (OpenFace's success)"),
    value("backend", str, required=False, doc="which backend made the values: geometric, openface, onnx"),
    value("landmarks_from", str, required=False,
          doc="openface: the 68 points it read (ibug68, facemesh468, facemesh468+dlib68)"),
    array("gaze", "float32", "N", 2, 3, required=False,
          doc="openface: unit gaze vector per eye (gaze_0: iBUG 36-41, gaze_1: 42-47), camera axes"),
    array("gaze_angle", "float32", "N", 2, required=False, doc="openface: gaze_angle_x, gaze_angle_y in radians"),
    value("revise", str, required=False,
          doc="file the node writes at end of stream with post-processed values for the table sinks"),
    *_per_face(),
    doc="action unit intensities per face",
)
PROBS = PortType(
    "Probs",
    array("p", "float32", "N", "C"),
    value("labels", list, doc="class names for the columns"),
    *_per_face(),
    doc="class probabilities per face or per track",
)
WINDOW = PortType(
    "Window",
    array("seq", "float32", "N", "T", "D", doc="the last T vectors of each track"),
    array("track_id", "int32", "N"),
    doc="per-track sequences ready for a temporal model",
)
IDENTITIES = PortType(
    "Identities",
    value("names", list, doc="matched name per face, '' when unknown"),
    array("scores", "float32", "N", doc="cosine similarity of the best match"),
    *_per_face(),
    doc="identity per face",
)
