"""OpenFace 2.2's CSV conventions: column names, their order, their number formats.

OpenFace's FeatureExtraction (RecorderCSV) writes, per face and frame, these
groups in this order, each only when it was computed:

    frame, face_id, timestamp, confidence, success
    gaze_*                                 (the au node's openface backend; eye_lmk_* never written)
    pose_Tx, pose_Ty, pose_Tz, pose_Rx, pose_Ry, pose_Rz
    x_0..x_67, y_0..y_67                   (2-D landmarks, iBUG 68 scheme)
    X_0..X_67, Y_0..Y_67, Z_0..Z_67        (3-D landmarks in mm: not computed here)
    p_scale, p_rx, ..., p_0..p_33          (its own shape-model parameters: not computed here)
    AU01_r ... AU45_r                      (17 intensities, 0-5)
    AU01_c ... AU45_c                      (18 presences, 0/1: the openface backend only)

The header and the rows use ", " between fields, as OpenFace does; read them
with ``pandas.read_csv(path, skipinitialspace=True)`` or
``csv.reader(f, skipinitialspace=True)`` to get the bare names. A text cell
with a comma, a quote or a line break (an identity "Smith, J.") is quoted the
csv module's way, so it stays one field. Numbers use
OpenFace's precisions: timestamp 3 decimals, confidence 2, pose_T 1 (mm),
pose_R 3 (radians), landmarks 1 (pixels), AU_r 2.

facegraph's own columns come after all OpenFace columns under names OpenFace
does not use: track_id, box_x1..box_y2, identity, identity_score,
prob_<label> (not ``p_<label>``, which would clash with OpenFace's p_0..p_33),
emb_0..emb_<D-1>, and lmk_x_i/lmk_y_i(/lmk_z_i) for landmark schemes other than 68 points.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

BASE = ("frame", "face_id", "timestamp", "confidence", "success")
GAZE = ("gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y")
POSE = ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
LANDMARKS_68 = tuple(f"x_{i}" for i in range(68)) + tuple(f"y_{i}" for i in range(68))
AU_INTENSITY = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
                "AU20", "AU23", "AU25", "AU26", "AU45")
AU_PRESENCE = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
               "AU20", "AU23", "AU25", "AU26", "AU28", "AU45")

_AU_NAME = re.compile(r"^\s*AU\s*0*(\d+)\s*(?:_r)?\s*$", re.IGNORECASE)


def au_name(name: str) -> str | None:
    """'AU1', 'au01', 'AU01_r' → 'AU01'; None for a name that is no AU."""
    match = _AU_NAME.match(str(name))
    return f"AU{int(match.group(1)):02d}" if match else None


def au_columns(names: list[str]) -> list[tuple[str, str]]:
    """(column, packet AU name) for the intensities a packet names, in OpenFace's order.

    AUs OpenFace does not estimate (AU11, AU24 ...) follow in numeric order under the same
    ``AUxx_r`` naming; names that are no AU are dropped.
    """
    return _columns(names, AU_INTENSITY, "_r")


def presence_columns(names: list[str]) -> list[tuple[str, str]]:
    """(column, packet AU name) for the presences a packet names, in OpenFace's order (AU28 included)."""
    return _columns(names, AU_PRESENCE, "_c")


def _columns(names: list[str], order: Sequence[str], suffix: str) -> list[tuple[str, str]]:
    by_norm: dict[str, str] = {}
    for name in names:
        norm = au_name(name)
        if norm is not None and norm not in by_norm:
            by_norm[norm] = name
    known = [n for n in order if n in by_norm]
    others = sorted((n for n in by_norm if n not in order), key=lambda n: int(n[2:]))
    return [(f"{n}{suffix}", by_norm[n]) for n in known + others]


def precision(column: str) -> int | None:
    """Decimals OpenFace uses for a column (None: an integer or a text column)."""
    if column in ("frame", "face_id", "success", "track_id") or column == "identity":
        return None
    if column == "timestamp":
        return 3
    if column == "confidence":
        return 2
    if column.startswith("pose_T"):
        return 1
    if column.startswith("pose_R"):
        return 3
    if column.startswith(("x_", "y_", "box_", "lmk_")):
        return 1
    if column.startswith("AU") and column.endswith("_r"):
        return 2
    if column.startswith("AU") and column.endswith("_c"):
        return 0
    if column.startswith(("prob_", "identity_score")):
        return 4
    return 6  # emb_*: full float32 detail


def format_value(column: str, value: Any) -> str:
    """One cell, written the way OpenFace writes it; a missing value is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    digits = precision(column)
    if digits is None:
        return str(int(value))
    value = float(value)
    if value != value:  # NaN: nothing was measured
        return ""
    if column.startswith("emb_"):
        return f"{value:.6g}"
    return f"{value:.{digits}f}"


def cell_formatter(column: str) -> Callable[[Any], str]:
    """``format_value`` for one column, its rule looked up once: a row of the default AU graph formats about
    160 cells, and finding each one's precision by its name again on every row cost more than formatting it."""
    digits = precision(column)
    spec = ".6g" if column.startswith("emb_") else None if digits is None else f".{digits}f"

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if spec is None:
            return str(int(value))
        value = float(value)
        if value != value:  # NaN: nothing was measured
            return ""
        return format(value, spec)

    return cell


def round_value(column: str, value: Any) -> Any:
    """The same precision for JSON: plain Python numbers, None for missing."""
    if value is None or isinstance(value, str):
        return value
    digits = precision(column)
    if digits is None:
        return int(value)
    value = float(value)
    if value != value:
        return None
    return float(f"{value:.6g}") if column.startswith("emb_") else round(value, digits)
