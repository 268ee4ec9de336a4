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

``refine68: dlib`` (or ``auto``: when the ``[dlib]`` extra is installed) blends FaceMesh's
``landmarks68`` with dlib's 68-point predictor, whose iBUG points the openface AU backend reads
closer to OpenFace (``_dlib68.py``); ~1.5 ms a face more.

Following faces between detections (no graph cycle): this node keeps the faces' identities
(``_tracking.FaceTracks``). A face it followed on the previous frame is cropped from the ROI of
its own previous landmarks (as MediaPipe's face mesh does), not from the detector's box. On a
frame with a fresh detection (``detect`` with ``detect_every: N`` repeats its last output on the
frames it skips, which is how a repeated box is told from a fresh one), detections are matched
to the followed faces' landmark boxes of the previous frame (the most current positions; the
detector's own id is only a hint), then to faces lost in the last ``track_max_age`` frames
(position gate that widens with the time lost, HSV histogram of the face), so a face that turns
away and comes back keeps its id; the rest are new faces. A detection that disagrees with the
followed face (IoU < 0.3), a new or re-found face, and a followed face whose landmarks fail while
the detector sees it, start from the detection's keypoints. A face whose FaceMesh presence score
falls below ``min_score`` is lost: it is dropped from the outputs until a fresh detection finds it
again; two followed faces that land on the same face (IoU > 0.5) keep one id. Output ``faces``
carries boxes from the landmarks' extent, ArcFace keypoints from the landmarks, the landmark
score and the track ids: downstream nodes should use ``landmarks.faces`` rather than
``detect.faces``. Without ``track_id`` in its input the node follows nothing and emits no ids.

Tracks never continue onto another person: a detection extends a followed face only when its
colour histogram is within ``track_appearance`` of the face's, and a shot cut (``shot_cut``:
consecutive frames' colour histograms far apart, a new frame size, or a new ``shot`` number
from decode, which gives each image of an unrelated folder its own) ends every track; faces
of the new shot get new ids once the detector (which runs on a cut frame whatever
``detect_every`` says) sees them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from facegraph import FRAME, Input, Node, Output, Param, ParamError, register

from ..types import FACES, LANDMARKS
from . import _facemesh as fm
from ._nms import iou_matrix
from ._tracking import FaceTracks, ShotCuts, hsv_histogram

log = logging.getLogger(__name__)

PFLD_DEFAULTS = {
    "input_size": 112,
    "mean": [0.0, 0.0, 0.0],
    "std": [255.0, 255.0, 255.0],
    "rgb": True,
    "output_range": [0.0, 1.0],
    "crop_scale": 1.0,
}


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
    track_max_age = Param(int, 60, ge=0, doc="frames a lost face keeps its id for re-identification")
    track_appearance = Param(float, 0.6, ge=0.0, le=1.0,
                             doc="colour-histogram distance above which a detection cannot extend a face (1 = off)")
    shot_cut = Param(float, 0.25, ge=0.0, le=1.0,
                     doc="frame histogram distance that is a shot cut and ends every track (0 = off)")
    refine68 = Param(str, "none", choices=("none", "dlib", "auto"),
                     doc="facemesh: blend landmarks68 with dlib's 68-point predictor (the [dlib] extra), closer to "
                         "OpenFace's points for the openface AU backend; auto: when dlib is installed")

    threads = 2
    cost = 3.0  # FaceMesh on one face: 1.3 ms of model, crop, conversions and the way back (one core)

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if values["backend"] == "onnx" and not values["model"]:
            raise ParamError("parameter 'model' is required for backend 'onnx' (path of a 68/106-point .onnx)")
        if values["backend"] != "facemesh" and values["refine68"] == "dlib":
            raise ParamError("parameter 'refine68' applies to backend 'facemesh' only")
        return None

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        if values.get("refine68") == "dlib":
            from ._dlib68 import missing

            return missing()
        return []

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        refine = values.get("refine68", "none")
        if refine == "auto":
            from ._dlib68 import missing

            refine = "none" if missing() else "dlib"
        return cls.cost + (1.5 if refine == "dlib" else 0.0)

    def open(self) -> None:
        import cv2

        cv2.setNumThreads(max(1, self.context.threads))
        self._book = FaceTracks(max_age=self.track_max_age, follow_appearance=self.track_appearance)
        self._cuts = ShotCuts(self.shot_cut)
        self._shot: int | None = None  # detect's shot number on the last frame, when it sends one
        self._rois: dict[int, fm.Roi] = {}  # followed faces: where to crop them on the next frame
        self._given: tuple[np.ndarray, np.ndarray] | None = None  # the last detection (boxes, ids)
        self._count = 0
        self._refiner = self._open_refiner()
        if self.backend == "facemesh":
            from ..models._tflite import TfliteModel, mediapipe_model

            path = self.model or mediapipe_model("modules/face_landmark/face_landmark.tflite")
            self._tflite = TfliteModel(path, threads=self.context.threads)
            self._size = self._tflite.input_shape[1]
            self._scale = 1.5 if self.scale is None else self.scale
            self._corners = fm.MESH_EYE_CORNERS
            self._run(np.zeros((1, self._size, self._size, 3), np.uint8))  # warm-up
        else:
            from ..models._onnx import OnnxModel

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

    def _open_refiner(self) -> Any:
        """dlib's 68-point refiner when asked for (``auto``: when installed), else None."""
        if self.refine68 == "none" or self.backend != "facemesh":
            return None
        from ._dlib68 import Dlib68Refiner, missing

        if self.refine68 == "auto" and missing():
            log.info("landmarks: dlib is not installed (%s); landmarks68 stay FaceMesh's mapping", missing()[0])
            return None
        return Dlib68Refiner()

    def _run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 BGR crops [N,S,S,3] → (points [N,K,2|3] in crop pixels, presence scores [N])."""
        n = len(crops)
        if self.backend == "facemesh":
            raw, flag = self._tflite.run_filled(n, lambda tensor: _rgb_unit(crops, tensor))
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
        image = frame.image
        index = self._count
        self._count += 1
        boxes = np.asarray(faces.boxes, np.float32).reshape(-1, 4)
        kps = np.asarray(faces.kps, np.float32).reshape(-1, 5, 2)
        det_ids = faces.get("track_id")
        if det_ids is None:  # no identities: landmarks of this frame's detections, nothing followed
            rois = [fm.roi_from_kps(kps[i], boxes[i], self._scale) for i in range(len(boxes))]
            rows = [(r[0], r[1], -1, r[2], r[3]) for r in self._landmarks(image, rois) if r is not None]
            columns = (list(v) for v in zip(*rows, strict=True)) if rows else ([],) * 5
            return self._refined(image, self._outputs(*columns, False))
        det_ids = np.asarray(det_ids, np.int64).reshape(-1)
        if self._new_shot(image, frame, faces):  # a new shot: nobody here continues a face of the last
            self._book.cut()
            self._rois.clear()
        fresh = self._given is None or not (
            np.array_equal(self._given[0], boxes) and np.array_equal(self._given[1], det_ids)
        )
        seeds = self._on_detection(image, boxes, kps, det_ids, index) if fresh else {}
        tracks = self._book.active()
        rois = [self._rois.get(t.track_id) or seeds[t.track_id] for t in tracks]
        found = self._landmarks(image, rois)
        retry = [k for k, t in enumerate(tracks) if found[k] is None and t.track_id in seeds
                 and t.track_id in self._rois]  # following failed, the detector sees it: start from there
        for k, row in zip(retry, self._landmarks(image, [seeds[tracks[k].track_id] for k in retry]), strict=True):
            found[k] = row
        found = self._drop_duplicates(tracks, found, seeds)
        out = []
        for track, row in zip(tracks, found, strict=True):
            if row is None:
                self._book.lose(track.track_id)
                self._rois.pop(track.track_id, None)
                continue
            pts, score, box, kp5 = row
            self._book.follow(track.track_id, box, index)
            self._rois[track.track_id] = fm.roi_from_points(pts, *self._corners, scale=self._scale)
            out.append((pts, score, track.track_id, box, kp5))
        columns = (list(v) for v in zip(*out, strict=True)) if out else ([],) * 5
        return self._refined(image, self._outputs(*columns, True))

    def _refined(self, image: np.ndarray, out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``landmarks68`` blended with dlib's points when ``refine68`` is on (the native 468 stay as found)."""
        if self._refiner is None or "landmarks68" not in out:
            return out
        view = out["landmarks68"]
        out["landmarks68"] = {**view, "points": self._refiner.refine(image, view["points"]),
                              "mapped_from": "facemesh468+dlib68"}
        return out

    def _new_shot(self, image: np.ndarray, frame: Any, faces: Any) -> bool:
        """Whether this frame starts a shot. ``detect`` says so in its faces (``shot``) when it looked with
        our threshold: the same frames, histograms and test, so the same answer, computed once (0.2 ms a
        frame, in FaceMesh's worker, the one that sets the default AU graph's pace); else we look ourselves."""
        shot = faces.get("shot")
        if shot is None or faces.get("shot_cut") != self.shot_cut:
            return self._cuts(image, frame.get("shot"))
        cut = self._shot is not None and shot != self._shot
        self._shot = shot
        return cut

    def _on_detection(self, image: np.ndarray, boxes: np.ndarray, kps: np.ndarray, det_ids: np.ndarray,
                      index: int) -> dict[int, fm.Roi]:
        """Give this frame's detections their ids; the ROI from each detection, by id. A face whose
        followed ROI no longer agrees with its detection (or that was not followed) restarts from it."""
        self._given = (boxes.copy(), det_ids.copy())
        looks = [hsv_histogram(image, b) for b in boxes]
        ids, followed = self._book.associate(boxes, index, det_ids, looks)
        seeds: dict[int, fm.Roi] = {}
        for i, tid in enumerate(ids.tolist()):
            track = self._book.get(tid)
            moved = not followed[i] or iou_matrix(track.box[None], boxes[i][None])[0, 0] < 0.3
            if self.backend != "facemesh" or moved:
                self._rois.pop(tid, None)
            seeds[tid] = fm.roi_from_kps(kps[i], boxes[i], self._scale)
        if self.backend != "facemesh":  # no presence score: a face the detector no longer sees is gone
            for track in self._book.active():
                if track.track_id not in seeds:
                    self._book.lose(track.track_id)
                    self._rois.pop(track.track_id, None)
        return seeds

    def _landmarks(self, image: np.ndarray, rois: list[fm.Roi]) -> list[tuple | None]:
        """Per ROI (points, score, box, 5 keypoints) in frame pixels, or None when the face is not there."""
        import cv2

        if not rois:
            return []
        rois = [r if self.roll else r._replace(angle=0.0) for r in rois]
        matrices = [fm.crop_matrix(r, self._size) for r in rois]
        crops = np.stack([
            cv2.warpAffine(image, m, (self._size, self._size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
            for m in matrices
        ])
        points, scores = self._run(crops)
        rows: list[tuple | None] = []
        for j, m in enumerate(matrices):
            if self.backend == "facemesh" and scores[j] < self.min_score:
                rows.append(None)
                continue
            pts = fm.to_frame(points[j], m).astype(np.float32)
            box = np.concatenate([pts[:, :2].min(0), pts[:, :2].max(0)]).astype(np.float32)
            k = pts.shape[0]
            kp5 = fm.mesh_kps(pts) if k == 468 else fm.ibug_kps(pts) if k == 68 else _kps_from_box(box)
            rows.append((pts, float(scores[j]), box, kp5))
        return rows

    def _drop_duplicates(self, tracks: list, found: list, seeds: dict) -> list:
        """Two followed faces that landed on the same face (IoU > 0.5): keep the one the detector saw
        on this frame, else the one matched to more detections; the other is lost."""
        alive = [k for k, row in enumerate(found) if row is not None]
        if len(alive) < 2:
            return found
        overlap = iou_matrix(np.stack([found[k][2] for k in alive]), np.stack([found[k][2] for k in alive]))
        found = list(found)
        for a in range(len(alive)):
            for b in range(a + 1, len(alive)):
                ka, kb = alive[a], alive[b]
                if overlap[a, b] <= 0.5 or found[ka] is None or found[kb] is None:
                    continue
                ta, tb = tracks[ka], tracks[kb]
                rank_a = (ta.track_id in seeds, ta.hits, -ta.track_id)
                rank_b = (tb.track_id in seeds, tb.hits, -tb.track_id)
                found[kb if rank_a >= rank_b else ka] = None
        return found

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
                "mapped_from": "facemesh468",
                "scores": score_arr,
                **extra,
            }
        elif k == 68:
            out["landmarks68"] = out["landmarks"]
        return out

    def close(self) -> None:
        self._tflite = None
        self._onnx = None


def _rgb_unit(crops: np.ndarray, out: np.ndarray) -> None:
    """uint8 BGR crops [N,S,S,3] → RGB / 255 in ``out`` (float32): the bits of
    ``crops[..., ::-1].astype(np.float32) / 255.0``, ten times faster (OpenCV swaps the channels of a
    contiguous copy; numpy's cast of the reversed view was the slow part, 0.32 vs 0.03 ms per crop)."""
    import cv2

    rgb = np.empty(crops.shape[1:], np.uint8)
    for i in range(len(crops)):
        cv2.cvtColor(crops[i], cv2.COLOR_BGR2RGB, dst=rgb)
        out[i] = rgb
    np.divide(out, np.float32(255.0), out=out)


def _kps_from_box(box: np.ndarray) -> np.ndarray:
    mid = (box[:2] + box[2:]) / 2
    return np.repeat(mid[None], 5, axis=0).astype(np.float32)
