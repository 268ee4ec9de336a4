"""`landmarks`: facial landmarks for every face of a frame in one batch, and the faces' refined boxes.

Backends:
  * ``facemesh`` (default, no download): MediaPipe FaceMesh ``face_landmark.tflite`` from the
    installed mediapipe wheel, 468 points (x, y, depth in pixels), run by a TFLite/LiteRT
    interpreter on roll-aware 192×192 crops (``_facemesh.py``); ``landmarks68`` maps them onto
    the iBUG 68 scheme with a documented table.
  * ``onnx``: a 68/106-point ONNX model (``model`` param), square crop around the face,
    normalised per its metadata.json, PFLD defaults otherwise (RGB/255, 112×112, output [B,2K]
    in 0..1 of the crop). For 68-point models ``landmarks68`` is ``landmarks``; other point
    counts emit no ``landmarks68``.

Following faces between detections (no graph cycle): this node keeps per-track state. A face
whose track it followed on the previous frame is cropped from the ROI of its own previous
landmarks (as MediaPipe's face mesh does), not from the detector's box; a new track, or a fresh
detection that disagrees with the followed face (IoU < 0.3), starts from the detection's
keypoints. ``detect`` with ``detect_every: N`` repeats its last output (the same arrays) on the
frames it skips, which is how a repeated box is told from a fresh one. A face whose FaceMesh
presence score falls below ``min_score`` is lost: it is dropped from the outputs until a fresh
detection of its track arrives. Output ``faces`` carries boxes from the landmarks' extent,
ArcFace keypoints from the landmarks, the landmark score and the same track ids: downstream
nodes should use ``landmarks.faces`` rather than ``detect.faces``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facegraph import FACES, FRAME, LANDMARKS, Input, Node, Output, Param, ParamError, register

from . import _facemesh as fm
from ._nms import iou_matrix

PFLD_DEFAULTS = {
    "input_size": 112,
    "mean": [0.0, 0.0, 0.0],
    "std": [255.0, 255.0, 255.0],
    "rgb": True,
    "output_range": [0.0, 1.0],
    "crop_scale": 1.0,
}


@dataclass
class _TrackState:
    given_box: np.ndarray  # the detector's box the last time this track was seen
    roi: fm.Roi | None  # from this frame's landmarks, for the next frame; None when lost
    box: np.ndarray | None  # landmarks' extent


@register("landmarks")
class Landmarks(Node):
    """Landmarks per face (FaceMesh 468 or an ONNX 68/106 model), iBUG 68 view, refined faces."""

    frame = Input(FRAME)
    faces = Input(FACES, doc="boxes, keypoints and track ids from any detector")
    landmarks = Output(LANDMARKS, doc="native points: facemesh468 (x, y, depth px) or the model's scheme")
    landmarks68 = Output(LANDMARKS, doc="iBUG 68 points (x, y px)")
    faces_out = Output(FACES, doc="faces with boxes and keypoints from the landmarks, same track ids", name="faces")

    backend = Param(str, "facemesh", choices=("facemesh", "onnx"), doc="landmark model family")
    model = Param(str, "", doc="onnx: path of the landmark .onnx (required); facemesh: optional .tflite path")
    min_score = Param(float, 0.5, ge=0.0, le=1.0, doc="facemesh: presence score below which a face is lost")
    scale = Param(float, None, ge=0.5, le=4.0, doc="crop side / face size; default 1.5 facemesh, metadata/1.0 onnx")
    roll = Param(bool, True, doc="rotate crops by the eye line (roll-aware ROI)")
    providers = Param(str, "auto", doc="ONNX Runtime providers for the onnx backend")

    threads = 2

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if values["backend"] == "onnx" and not values["model"]:
            raise ParamError("parameter 'model' is required for backend 'onnx' (path of a 68/106-point .onnx)")
        return None

    def open(self) -> None:
        import cv2

        cv2.setNumThreads(max(1, self.context.threads))
        self._tracks: dict[int, _TrackState] = {}
        self._alias: dict[int, int] = {}  # detector's track id → the id this node keeps for that face
        if self.backend == "facemesh":
            from ._tflite import TfliteModel, mediapipe_model

            path = self.model or mediapipe_model("modules/face_landmark/face_landmark.tflite")
            self._tflite = TfliteModel(path, threads=self.context.threads)
            self._size = self._tflite.input_shape[1]
            self._scale = 1.5 if self.scale is None else self.scale
            self._corners = fm.MESH_EYE_CORNERS
            self._run(np.zeros((1, self._size, self._size, 3), np.uint8))  # warm-up
        else:
            from ._onnx import OnnxModel

            self._onnx = OnnxModel(
                self.model, providers=self.providers, threads=self.context.threads, what="landmark model"
            )
            meta = {**PFLD_DEFAULTS, **self._onnx.metadata}
            size = meta["input_size"]
            self._size = int(size[0] if isinstance(size, (list, tuple)) else size)
            self._mean = np.asarray(meta["mean"], np.float32)
            self._std = np.asarray(meta["std"], np.float32)
            self._rgb = bool(meta["rgb"])
            self._range = tuple(float(v) for v in meta["output_range"])
            self._scale = float(meta["crop_scale"]) if self.scale is None else self.scale
            self._corners = fm.IBUG_EYE_CORNERS

    def _run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 BGR crops [N,S,S,3] → (points [N,K,2|3] in crop pixels, presence scores [N])."""
        n = len(crops)
        if self.backend == "facemesh":
            batch = crops[..., ::-1].astype(np.float32) / 255.0
            raw, flag = self._tflite.run(batch)
            points = raw.reshape(n, -1, 3)
            score = 1.0 / (1.0 + np.exp(-np.clip(flag.reshape(n).astype(np.float64), -100, 100)))
            return points, score.astype(np.float32)
        batch = crops[..., ::-1] if self._rgb else crops
        batch = ((batch.astype(np.float32) - self._mean) / self._std).transpose(0, 3, 1, 2)
        raw = self._onnx.run(np.ascontiguousarray(batch))[0].reshape(n, -1, 2)
        lo, hi = self._range
        points = (raw - lo) / (hi - lo) * self._size
        return points, np.ones(n, np.float32)

    def process(self, frame: Any, faces: Any) -> dict[str, dict[str, Any]]:
        import cv2

        image = frame.image
        boxes, kps = faces.boxes, faces.kps
        ids = faces.get("track_id")
        if ids is not None:
            ids = self._associate(np.asarray(ids, np.int64), boxes)
        rois, keep_rows = [], []
        for i in range(len(boxes)):
            roi = self._roi_for(int(ids[i]) if ids is not None else None, boxes[i], kps[i])
            if roi is not None:
                rois.append(roi if self.roll else roi._replace(angle=0.0))
                keep_rows.append(i)
        matrices = [fm.crop_matrix(r, self._size) for r in rois]
        crops = (
            np.stack(
                [
                    cv2.warpAffine(
                        image, m, (self._size, self._size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
                    )
                    for m in matrices
                ]
            )
            if rois
            else np.zeros((0, self._size, self._size, 3), np.uint8)
        )
        points, scores = self._run(crops) if rois else (None, np.zeros(0, np.float32))
        out_pts, out_scores, out_ids, out_boxes, out_kps = [], [], [], [], []
        seen = set()
        for j, row in enumerate(keep_rows):
            tid = int(ids[row]) if ids is not None else None
            pts = fm.to_frame(points[j], matrices[j]).astype(np.float32)
            ok = self.backend != "facemesh" or scores[j] >= self.min_score
            box = np.concatenate([pts[:, :2].min(0), pts[:, :2].max(0)]).astype(np.float32)
            if tid is not None:
                seen.add(tid)
                roi = fm.roi_from_points(pts, *self._corners, scale=self._scale) if ok else None
                last = self._tracks.get(tid)
                kept = box if ok else (last.box if last is not None else None)  # lost: remember where
                self._tracks[tid] = _TrackState(np.array(boxes[row], np.float32), roi, kept)
            if not ok:
                continue
            out_pts.append(pts)
            out_scores.append(scores[j])
            out_ids.append(tid if tid is not None else -1)
            out_boxes.append(box)
            out_kps.append(
                fm.mesh_kps(pts)
                if pts.shape[0] == 468
                else fm.ibug_kps(pts)
                if pts.shape[0] == 68
                else _kps_from_box(box)
            )
        current = set() if ids is None else set(ids.tolist())
        for tid in list(self._tracks):
            if tid not in seen and tid not in current:
                del self._tracks[tid]
        return self._outputs(out_pts, out_scores, out_ids, out_boxes, out_kps, ids is not None)

    def _associate(self, det_ids: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Map the detector's ids onto this node's ids. A detection with an id new to this node that
        overlaps a face this node follows or lost last (IoU ≥ 0.3 with its last landmark box, or centres
        closer than the face's size) continues
        that face's id: between sparse detections (``detect_every``) a fast face can move off its old
        box, so the detector's tracker starts a new id, while this node followed it frame by frame."""
        incoming = set(det_ids.tolist())
        self._alias = {d: o for d, o in self._alias.items() if d in incoming}
        claimed = {self._alias.get(d, d) for d in incoming if d in self._alias or d in self._tracks}
        out = det_ids.copy()
        for i, d in enumerate(det_ids.tolist()):
            if d in self._alias or d in self._tracks:
                out[i] = self._alias.get(d, d)
                continue
            followed = [t for t, st in self._tracks.items() if st.box is not None and t not in claimed]
            best = _closest(np.stack([self._tracks[t].box for t in followed]), boxes[i]) if followed else None
            if best is not None:
                self._alias[d] = followed[best]
                claimed.add(followed[best])
                out[i] = followed[best]
        return out

    def _roi_for(self, tid: int | None, box: np.ndarray, kps: np.ndarray) -> fm.Roi | None:
        """Where to crop this face: its own last landmarks when followed, else the detection; None when lost."""
        from_detection = fm.roi_from_kps(kps, box, self._scale)
        state = self._tracks.get(tid) if tid is not None else None
        if state is None:
            return from_detection
        fresh = not np.array_equal(state.given_box, box)
        if state.roi is None or state.box is None:  # lost: wait for a fresh detection
            return from_detection if fresh else None
        if fresh and (self.backend != "facemesh" or iou_matrix(state.box[None], box[None])[0, 0] < 0.3):
            return from_detection
        return state.roi

    def _outputs(self, pts, scores, ids, boxes, kps, with_ids: bool) -> dict[str, dict[str, Any]]:
        k = 468 if self.backend == "facemesh" else None
        if pts:
            points = np.stack(pts)
        else:
            k = k or (self._onnx.outputs[0].shape[-1] // 2 if isinstance(self._onnx.outputs[0].shape[-1], int) else 68)
            points = np.zeros((0, k, 3 if self.backend == "facemesh" else 2), np.float32)
        n, k = points.shape[:2]
        extra = {"track_id": np.asarray(ids, np.int32)} if with_ids else {}
        score_arr = np.asarray(scores, np.float32).reshape(n)
        scheme = "facemesh468" if self.backend == "facemesh" else ("ibug68" if k == 68 else f"points{k}")
        out = {
            "landmarks": {"points": points, "scheme": scheme, "scores": score_arr, **extra},
            "faces": {
                "boxes": np.asarray(boxes, np.float32).reshape(n, 4),
                "scores": score_arr,
                "kps": np.asarray(kps, np.float32).reshape(n, 5, 2),
                **extra,
            },
        }
        if self.backend == "facemesh":
            out["landmarks68"] = {
                "points": np.ascontiguousarray(fm.to_ibug68(points), np.float32),
                "scheme": "ibug68",
                "scores": score_arr,
                **extra,
            }
        elif k == 68:
            out["landmarks68"] = out["landmarks"]
        return out

    def close(self) -> None:
        self._tflite = None
        self._onnx = None


def _closest(candidates: np.ndarray, box: np.ndarray) -> int | None:
    """Index of the candidate box that is the same face as ``box``: best IoU ≥ 0.3, else the nearest
    centre within one face size; None when none qualifies."""
    overlap = iou_matrix(candidates, box[None])[:, 0]
    best = int(np.argmax(overlap))
    if overlap[best] >= 0.3:
        return best
    centres = (candidates[:, :2] + candidates[:, 2:]) / 2
    size = np.sqrt(np.prod(np.clip(candidates[:, 2:] - candidates[:, :2], 1e-6, None), axis=1))
    shift = np.linalg.norm(centres - (box[:2] + box[2:]) / 2, axis=1) / size
    best = int(np.argmin(shift))
    return best if shift[best] < 1.0 else None


def _kps_from_box(box: np.ndarray) -> np.ndarray:
    mid = (box[:2] + box[2:]) / 2
    return np.repeat(mid[None], 5, axis=0).astype(np.float32)
