"""Action-unit intensities per face: landmark geometry against a neutral baseline, or a trained ONNX network."""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import Input, ModelError, Node, Output, Param, ParamError, PortValueError, register
from facegraph._ports import AUS, CROPS, LANDMARKS, POSE

from ._au_geometry import ESTIMATED, OPENFACE_AUS, NeutralBaseline, features, intensities


@register("au")
class AU(Node):
    """OpenFace's intensity AUs (0–5) per face.

    ``geometric`` (default, no weights) measures the AUs that landmarks can show and
    normalises each track against its own running neutral (``_au_geometry``); its
    ``names`` list only those AUs. ``onnx`` runs a trained network named by ``model``
    on aligned crops (or on landmarks when its metadata says ``"input": "landmarks"``).
    """

    landmarks = Input(LANDMARKS, doc="68-point iBUG landmarks; track_id keys the per-track baseline")
    crops = Input(CROPS, optional=True, doc="aligned crops (onnx backend)")
    pose = Input(POSE, optional=True, doc="head pose per face, to frontalise the landmarks (else estimated here)")
    aus = Output(AUS)
    backend = Param(str, "geometric", choices=("geometric", "onnx"))
    model = Param(str, "", doc="ONNX AU network (backend onnx); metadata.json or <model>.json beside it")
    providers = Param(str, "auto", doc="ONNX Runtime provider: auto, cpu, cuda, tensorrt, coreml")
    window = Param(int, 300, ge=1, doc="frames of history per track for the neutral baseline")

    threads = 2

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """geometric: 0.5 ms per face (measured); onnx: a network per face."""
        return 3.0 if values["backend"] == "onnx" else 0.5

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if values["backend"] == "onnx" and not values["model"]:
            raise ParamError("parameter 'model' is required for backend onnx (path of the AU network)")
        return None

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        from pathlib import Path

        if values.get("backend") == "onnx" and values.get("model") and not Path(values["model"]).expanduser().exists():
            return [f"{values['model']}: AU model file not found"]
        return []

    def open(self) -> None:
        self._baseline = NeutralBaseline(self.window)
        self._net = None
        self._pose_states: dict[int, Any] = {}
        if self.backend == "onnx":
            from ._onnx import OnnxModel

            self._net = OnnxModel(self.model, providers=self.providers, threads=self.context.threads, what="AU model")
            meta = self._net.metadata
            self._input = meta.get("input", "crops")
            if self._input not in ("crops", "landmarks"):
                raise ModelError(
                    f"{self._net.path}: metadata 'input' must be 'crops' or 'landmarks', got {self._input!r}"
                )
            n_out = self._net.outputs[0].shape[-1]
            names = meta.get("names") or meta.get("aus") or (list(OPENFACE_AUS) if n_out in (17, None) else None)
            if names is None or (isinstance(n_out, int) and len(names) != n_out):
                raise ModelError(f"{self._net.path}: metadata 'names' must list the {n_out} AU outputs")
            self._names = [str(n) for n in names]
            self._size = int(meta.get("input_size", meta.get("size", 112)))
            self._mean = np.asarray(meta.get("mean", 0.0), np.float32)
            self._std = np.asarray(meta.get("std", 255.0), np.float32)
            self._rgb = str(meta.get("color", "rgb")).lower() == "rgb"
            self._nhwc = str(meta.get("layout", "nchw")).lower() == "nhwc"
            self._range = meta.get("range")

    def process(self, landmarks: Any, crops: Any = None, pose: Any = None) -> dict[str, Any]:
        tracks = landmarks.get("track_id")
        if self._net is not None:
            values = self._run_net(landmarks, crops)
            names = self._names
        else:
            points = landmarks.points
            if points.shape[1] != 68:
                raise PortValueError(f"au (geometric) needs 68-point iBUG landmarks, got {points.shape[1]} points")
            n = points.shape[0]
            keys = [int(t) for t in tracks] if tracks is not None else [-1 - i for i in range(n)]
            rotation = pose.rotation if pose is not None and len(pose.rotation) == n else self._rotations(points, keys)
            feat = features(points, rotation) if n else np.zeros((0, 8))
            base = self._baseline.update(keys, feat) if n else feat
            values = intensities(feat, base) if n else np.zeros((0, len(ESTIMATED)))
            names = list(ESTIMATED)
        out: dict[str, Any] = {"intensity": np.asarray(values, np.float32), "names": list(names)}
        if tracks is not None:
            out["track_id"] = np.asarray(tracks, np.int32)
        return {"aus": out}

    def _rotations(self, points: np.ndarray, keys: list[int]) -> np.ndarray:
        """Head rotations when no pose input is connected: solvePnP with a generic camera, per track."""
        from ._headpose import camera_matrix, solve_pose

        out = np.zeros((len(points), 3))
        for i, key in enumerate(keys):
            cx, cy = np.nanmean(points[i, :, :2], axis=0)
            k = camera_matrix(1000.0, 1000.0, cx, cy)  # principal point on the face: weak perspective
            euler, _, state = solve_pose(points[i, :, :2], k, self._pose_states.get(key))
            if np.all(np.isfinite(euler)):
                out[i] = euler
                self._pose_states[key] = state
        if len(self._pose_states) > 4 * self.window:
            self._pose_states = {k: self._pose_states[k] for k in keys if k in self._pose_states}
        return out

    def _run_net(self, landmarks: Any, crops: Any) -> np.ndarray:
        if self._input == "landmarks":
            batch = landmark_input(landmarks.points)
        else:
            if crops is None:
                raise PortValueError("au (onnx) needs the 'crops' input connected (aligned faces)")
            batch = self.preprocess(crops.images)
        if batch.shape[0] == 0:
            return np.zeros((0, len(self._names)), np.float32)
        out = self._net.run(batch)[0].reshape(batch.shape[0], -1)
        if self._range is not None:
            out = np.clip(out, float(self._range[0]), float(self._range[1]))
        return out

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 BGR crops (N, S, S, 3) → the network's float32 batch, as its metadata describes."""
        import cv2

        if images.shape[1] != self._size:
            images = np.stack([cv2.resize(im, (self._size, self._size), interpolation=cv2.INTER_AREA) for im in images])
        x = images[..., ::-1] if self._rgb else images
        x = (x.astype(np.float32) - self._mean) / self._std
        if not self._nhwc:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, np.float32).reshape(len(images), *x.shape[1:])


def landmark_input(points: np.ndarray) -> np.ndarray:
    """Landmarks (N, K, 2|3) → (N, 2K): each face centred on its mean and divided by its RMS spread."""
    p = np.asarray(points, np.float32)[..., :2]
    c = p - p.mean(1, keepdims=True)
    scale = np.sqrt((c**2).sum(-1).mean(1))[:, None, None] if len(p) else 1.0
    return (c / np.maximum(scale, 1e-6)).reshape(len(p), p.shape[1] * 2).astype(np.float32)
