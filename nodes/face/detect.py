"""`detect`: faces of a frame (boxes, scores, ArcFace 5 keypoints) with persistent track ids.

Backends:
  * ``mediapipe`` (default, no download): BlazeFace from the installed mediapipe wheel,
    ``model: full`` (default; 192×192 sparse, small and far faces too) or ``short`` (128×128, faces
    within ~2 m: faster, but it misses the small faces of openface_multi_face.avi on 1 frame in 2),
    run by a TFLite/LiteRT interpreter and decoded as MediaPipe does (``_blazeface.py``).
  * ``scrfd``: an insightface SCRFD ONNX file (det_500m, det_10g, ...) through the shared
    ONNX loader, decoded in ``_scrfd.py``.

Tracking and ``detect_every``: every detection is matched to the previous ones by an IoU
tracker (``_tracking.py``), so ``track_id`` stays with a face. With ``detect_every: N`` the
detector runs on every N-th frame only; on the frames between, this node emits the last
detection unchanged (the very same arrays: that is how a ``landmarks`` node downstream
tells a stale box from a fresh one). It is the ``landmarks`` node that follows each face
between detections, from its own previous-frame landmarks, as MediaPipe's face mesh does;
so there is no cycle in the graph, and consumers that need per-frame boxes use
``landmarks.faces``, not ``detect.faces``. ``landmarks`` also keeps the identities then: it
matches each fresh detection to the faces it followed up to the previous frame and to faces
lost recently, taking this node's ``track_id`` as a hint only, so ids stay put even when a
face moves far between two sparse detections.

Shot cuts (``shot_cut``, ``_tracking.ShotCuts``: consecutive frames' colour histograms far
apart, a new frame size, or a new ``shot`` number from decode) end every track of the IoU
tracker, and the detector runs on a cut frame whatever ``detect_every`` says, so the faces
of a new shot are found at once and never inherit an id from the last one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from facegraph import FRAME, Input, ModelError, Node, Output, Param, ParamError, register

from ..types import FACES
from . import _blazeface, _scrfd
from ._tracking import IoUTracker, ShotCuts


def _empty() -> dict[str, np.ndarray]:
    return {
        "boxes": np.zeros((0, 4), np.float32),
        "scores": np.zeros(0, np.float32),
        "kps": np.zeros((0, 5, 2), np.float32),
        "track_id": np.zeros(0, np.int32),
    }


@register("detect")
class Detect(Node):
    """Face detection with tracking; ``detect_every`` > 1 hands the following of faces to ``landmarks``."""

    frame = Input(FRAME)
    faces = Output(FACES, doc="boxes px x1y1x2y2, scores, ArcFace 5 keypoints, track ids")

    backend = Param(str, "mediapipe", choices=("mediapipe", "scrfd"), doc="detector family")
    model = Param(str, "", doc="mediapipe: full (default) | short | a .tflite path; scrfd: the .onnx path (required)")
    min_score = Param(float, 0.5, ge=0.0, le=1.0, doc="drop faces scored below this")
    nms_iou = Param(float, None, ge=0.0, le=1.0, doc="NMS overlap; default 0.3 (mediapipe), 0.4 (scrfd)")
    max_faces = Param(int, 0, ge=0, doc="keep at most this many faces, best first; 0 keeps all")
    input_size = Param(int, 640, ge=32, le=4096, doc="scrfd: square network input side (multiple of 32)")
    detect_every = Param(int, 1, ge=1, doc="run the detector on every N-th frame; landmarks follow faces between")
    track_iou = Param(float, 0.3, ge=0.0, le=1.0, doc="tracker: minimum IoU to continue a track")
    track_max_age = Param(int, 60, ge=0, doc="tracker: frames a track survives without a detection")
    shot_cut = Param(float, 0.25, ge=0.0, le=1.0,
                     doc="frame histogram distance that is a shot cut: tracks end, the detector runs (0 = off)")
    providers = Param(str, "auto", doc="ONNX Runtime providers for scrfd: auto, cpu, cuda, coreml, tensorrt")

    threads = 2
    #: one detector call, ms of a core at 640×480, one thread: BlazeFace full range with its resize and
    #: decoding about 7.5 (measured in the sequential loop on the 2-core VM: 1.5 ms per frame at
    #: detect_every 5), short range about 2.5, SCRFD-10G at 640 about 40 (estimates)
    CALL_MS: ClassVar[dict[str, float]] = {"full": 7.5, "short": 2.5, "scrfd": 40.0}

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """A detector call per ``detect_every`` frames, plus the repeats in between."""
        key = "scrfd" if values["backend"] == "scrfd" else ("short" if values["model"] == "short" else "full")
        return cls.CALL_MS[key] / values["detect_every"] + 0.02

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if values["backend"] == "scrfd":
            if not values["model"]:
                raise ParamError("parameter 'model' is required for backend 'scrfd' (path of an SCRFD .onnx file)")
            if values["input_size"] % 32:
                raise ParamError(
                    f"parameter 'input_size' must be a multiple of 32 for scrfd, got {values['input_size']}"
                )
        elif values["model"] and values["model"] not in _blazeface.CONFIGS and not values["model"].endswith(".tflite"):
            raise ParamError(f"parameter 'model' for backend 'mediapipe' must be short, full or a .tflite path, "
                             f"got {values['model']!r}")
        return None

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        from pathlib import Path

        from ..models._tflite import INSTALL_HINT, interpreter_available

        model = values.get("model") or ""
        is_path = values.get("backend") == "scrfd" or model.endswith(".tflite")
        if is_path and ("/" in model or model.endswith((".onnx", ".tflite"))) and not Path(model).expanduser().exists():
            return [f"{model}: model file not found"]
        if values.get("backend", "mediapipe") == "mediapipe" and not interpreter_available():
            return [f"backend 'mediapipe' needs a TFLite interpreter: {INSTALL_HINT}"]
        return []

    def open(self) -> None:
        import cv2

        cv2.setNumThreads(max(1, self.context.threads))
        self._tracker = IoUTracker(self.track_iou, self.track_max_age)
        self._cuts = ShotCuts(self.shot_cut)
        self._shots = 0  # cuts so far: sent with the faces, so landmarks need not look for them again
        self._last: dict[str, np.ndarray] = _empty()
        self._count = 0
        if self.backend == "scrfd":
            from ..models._onnx import OnnxModel

            self._onnx = OnnxModel(self.model, providers=self.providers, threads=self.context.threads,
                                   what="SCRFD detector", warmup=False)
            try:
                _scrfd.layout(len(self._onnx.outputs))
            except ValueError as exc:
                raise ModelError(f"{self._onnx.path}: not an SCRFD model ({exc})") from None
            self._in_hw = self._onnx.fixed_hw((self.input_size, self.input_size))
            self._onnx.run(np.zeros((1, 3, *self._in_hw), np.float32))  # warm-up at the real size
        else:
            from ..models._tflite import TfliteModel, mediapipe_model

            name = self.model or "full"
            self._cfg = _blazeface.CONFIGS.get(name, _blazeface.FULL_RANGE)
            if name.endswith(".tflite"):
                path = name
                size = None
            else:
                path = mediapipe_model(f"modules/face_detection/{self._cfg.filename}")
                size = self._cfg.input_size
            self._tflite = TfliteModel(path, threads=self.context.threads)
            size = size or self._tflite.input_shape[1]
            if size != self._cfg.input_size:
                self._cfg = _blazeface.CONFIGS["full"] if size == 192 else _blazeface.SHORT_RANGE
            self._anchors = _blazeface.anchors(self._cfg)

    def process(self, frame: Any) -> dict[str, dict[str, Any]]:
        index = self._count
        self._count += 1
        image = frame.image
        if self._cuts(image, frame.get("shot")):
            self._tracker.cut()
            self._shots += 1
        elif index % self.detect_every:
            return {"faces": self._last}
        if self.backend == "scrfd":
            boxes, scores, kps = self._detect_scrfd(image)
        else:
            boxes, scores, kps = self._detect_blazeface(image)
        if self.max_faces and len(boxes) > self.max_faces:
            best = np.argsort(-scores, kind="stable")[: self.max_faces]
            boxes, scores, kps = boxes[best], scores[best], kps[best]
        ids = self._tracker.update(boxes, index)
        self._last = {
            "boxes": np.ascontiguousarray(boxes, np.float32),
            "scores": np.ascontiguousarray(scores, np.float32),
            "kps": np.ascontiguousarray(kps, np.float32),
            "track_id": ids.astype(np.int32),
            "shot": self._shots,  # a cut frame always runs the detector, so a repeated output keeps its shot
            "shot_cut": float(self.shot_cut),
        }
        return {"faces": self._last}

    def _detect_blazeface(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        cfg = self._cfg
        h, w = image.shape[:2]
        _, _, pad_x, pad_y, new_w, new_h = _blazeface.letterbox(h, w, cfg.input_size)
        small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((cfg.input_size, cfg.input_size, 3), np.float32)
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = small[:, :, ::-1]  # BGR → RGB
        canvas = canvas / 127.5 - 1.0
        regressors, logits = self._tflite.run(canvas[None])
        boxes, scores, kps6 = _blazeface.postprocess(
            regressors, logits, self._anchors, cfg, (h, w), min_score=self.min_score, nms_iou=self.nms_iou
        )
        return boxes, scores, _blazeface.arcface_kps(kps6)

    def _detect_scrfd(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        in_h, in_w = self._in_hw
        h, w = image.shape[:2]
        sx, sy, new_w, new_h = _scrfd.letterbox(h, w, in_h, in_w)
        canvas = np.zeros((in_h, in_w, 3), np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128.0, (in_w, in_h), (127.5, 127.5, 127.5), swapRB=True)
        outputs = self._onnx.run(blob)
        nms_iou = 0.4 if self.nms_iou is None else self.nms_iou
        return _scrfd.decode(outputs, (in_h, in_w), self.min_score, nms_iou, (sx, sy))

    def close(self) -> None:
        self._tflite = None
        self._onnx = None
