"""Training samples from a teacher: an OpenFace CSV paired with its video, turned into the HDF5 layout.

Each frame the teacher read gives one sample: the face aligned to a 112×112 ArcFace-style
crop (zoomed out by 0.8 so the chin fits) from five points of the teacher's own 68 landmarks
(eye centres, nose tip, mouth corners: the points a face detector gives, so the graph can make the same crop from a
detection), the landmarks moved into that crop, and OpenFace's PDM global parameters moved
into it exactly (:mod:`..face._pdm_params`). ``hog_features`` is FHOG of OpenFace's own 112×112 alignment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..face._align import transform_points, warp_crops
from ..face._aligned_hog import aligned_fhog
from ..face._pdm_params import params_to_crop, params_to_frame  # noqa: F401 - re-exported
from ..io import _openface as of
from ..models.facepose import ZOOM, crop_template  # noqa: F401 - re-exported: the nets' crop
from ..models.facepose import crop_matrix as crop_matrix_from_kps
from .errors import TrainingError
from .h5data import SIZE

GLOBAL = ("p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty")
LOCAL = tuple(f"p_{i}" for i in range(34))


@dataclass
class TeacherReport:
    frames: int = 0
    samples: int = 0
    failed: int = 0  # the teacher found no face (success 0)
    low_quality: int = 0  # below --min-confidence
    no_row: int = 0  # a video frame the CSV does not mention


def five_from_68(points: np.ndarray) -> np.ndarray:
    """ArcFace's five points from iBUG 68 (one face): eye centres, nose tip, mouth corners."""
    p = np.asarray(points, np.float64)[:, :2]
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def crop_matrix(points68: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Frame → crop similarity the nets' input is made with, from the teacher's 68 points."""
    return crop_matrix_from_kps(five_from_68(points68), size)


def read_csv(path: str | Path) -> tuple[dict[int, dict[str, np.ndarray]], list[str]]:
    """OpenFace rows keyed by 0-based frame index (OpenFace counts from 1), and the AU intensity names."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"--teacher openface-csv {path}: no such file")
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:
        raise TrainingError(f"--teacher openface-csv {path}: not a CSV ({str(exc).splitlines()[0]})") from None
    table.columns = [c.strip() for c in table.columns]
    needed = ["frame", "confidence", "success", *of.LANDMARKS_68, *GLOBAL, *LOCAL]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise TrainingError(f"--teacher openface-csv {path}: not an OpenFace CSV with landmarks and PDM parameters "
                            f"(missing {', '.join(missing[:4])}{'…' if len(missing) > 4 else ''})")
    aus = [f"{a}_r" for a in of.AU_INTENSITY]
    absent = [a for a in aus if a not in table.columns]
    if absent:
        raise TrainingError(f"--teacher openface-csv {path}: no AU intensities {', '.join(absent[:3])}")
    if "face_id" in table.columns:  # OpenFace 2.x multi-face output: the first face of each frame
        table = table.sort_values(["frame", "face_id"]).drop_duplicates("frame")
    xs = table[list(of.LANDMARKS_68[:68])].to_numpy(np.float64)
    ys = table[list(of.LANDMARKS_68[68:])].to_numpy(np.float64)
    rows: dict[int, dict[str, np.ndarray]] = {}
    glob = table[list(GLOBAL)].to_numpy(np.float64)
    local = table[list(LOCAL)].to_numpy(np.float64)
    au = table[aus].to_numpy(np.float64)
    for i, (frame, conf, ok) in enumerate(zip(table["frame"], table["confidence"], table["success"], strict=True)):
        rows[int(frame) - 1] = {"points": np.stack([xs[i], ys[i]], 1), "global": glob[i], "local": local[i],
                                "au": au[i], "confidence": float(conf), "success": int(ok)}
    return rows, list(of.AU_INTENSITY)


def frames_of(video: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """(0-based index, BGR frame) of every frame, in order."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise TrainingError(f"--video {video}: cannot be opened")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield i, frame
            i += 1
    finally:
        cap.release()


def sample(frame_bgr: np.ndarray, points: np.ndarray, global_params: np.ndarray, local_params: np.ndarray,
           aus: np.ndarray, *, hog: bool = True) -> dict[str, np.ndarray]:
    """One row of the layout from a frame and the teacher's values for its face."""
    matrix = crop_matrix(points)
    crop = warp_crops(frame_bgr, matrix[None], SIZE)[0]
    if hog:
        hog_values = aligned_fhog(frame_bgr[None], points[None, :, :2])[0]
    else:
        hog_values = np.zeros(4464, np.float32)
    lo, hi = points.min(0), points.max(0)
    return {
        "images": crop[..., ::-1],  # RGB, as the layout says
        "hog_features": hog_values,
        "landmarks": transform_points(points, matrix),
        "global_params": params_to_crop(global_params, matrix),
        "local_params": local_params,
        "au_intensities": np.clip(aus, 0.0, 5.0),
        "bboxes": np.concatenate([lo, hi]),
        "metadata/matrices": matrix,
    }


def samples_from_csv(video: str | Path, csv: str | Path, *, min_confidence: float = 0.5, every: int = 1,
                     max_frames: int | None = None, hog: bool = True,
                     report: TeacherReport | None = None,
                     rows: dict[int, dict[str, np.ndarray]] | None = None,
                     ) -> Iterator[tuple[int, float, dict[str, np.ndarray]]]:
    """(frame index, teacher confidence, sample) for each frame of ``video`` the teacher read well."""
    rows = rows if rows is not None else read_csv(csv)[0]
    report = report if report is not None else TeacherReport()
    for index, frame in frames_of(video):
        if max_frames is not None and index >= max_frames:
            break
        if index % every:
            continue
        report.frames += 1
        row = rows.get(index)
        if row is None:
            report.no_row += 1
            continue
        if not row["success"]:
            report.failed += 1
            continue
        if row["confidence"] < min_confidence:
            report.low_quality += 1
            continue
        report.samples += 1
        yield index, row["confidence"], sample(frame, row["points"], row["global"], row["local"], row["au"], hog=hog)
