"""Action-unit intensities per face: OpenFace 2.2's own models, landmark geometry, or a trained ONNX network."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import FRAME, Input, ModelError, Node, Output, Param, ParamError, PortValueError, register

from ..au_revision import write_revision
from ..types import AUS, CROPS, LANDMARKS, POSE
from ._au_geometry import ESTIMATED, OPENFACE_AUS, NeutralBaseline, features, intensities
from ._source_kind import is_image, wants_postprocess

log = logging.getLogger(__name__)
#: the catalogue entry of OpenFace's AU models
OPENFACE_MODEL = "openface-au"


@register("au")
class AU(Node):
    """OpenFace's intensity AUs (0–5) per face.

    ``openface`` runs OpenFace 2.2's own pipeline and model files (``_openface_au``): all
    17 intensities and 18 presences, per-track running medians (a new track id is a new
    person), and for files OpenFace's offline post-processing, written back into the
    table sinks at the end (``postprocess``). ``auto`` is ``openface`` when its models are
    installed (``facegraph models fetch openface-au``), else ``geometric``.
    ``geometric`` (default, no weights) measures the AUs that landmarks can show and
    normalises each track against its own running neutral (``_au_geometry``); its
    ``names`` list only those AUs. ``onnx`` runs a trained network named by ``model``
    on aligned crops (or on landmarks when its metadata says ``"input": "landmarks"``).
    """

    landmarks = Input(LANDMARKS, doc="68-point iBUG landmarks; track_id keys the per-track baseline")
    frame = Input(FRAME, optional=True, doc="the frame (openface backend: its HOG features come from the face)")
    crops = Input(CROPS, optional=True, doc="aligned crops (onnx backend)")
    pose = Input(POSE, optional=True, doc="head pose per face, to frontalise the landmarks (else estimated here)")
    aus = Output(AUS)
    backend = Param(str, "geometric", choices=("geometric", "onnx", "openface", "auto"),
                    doc="auto: openface when its models are installed, else geometric")
    model = Param(str, "", doc="onnx: the AU network; openface: AU_predictors folder (default: openface-au)")
    static = Param(bool, None, doc="openface: static models only (no per-person median); default: for images")
    postprocess = Param(str, "auto", choices=("auto", "on", "off"),
                        doc="openface: OpenFace's offline re-prediction, offsets and smoothing, written into the "
                            "table sinks at the end; auto: on for files, off for cameras and streams")
    max_yaw = Param(float, 45.0, ge=0.0, le=90.0,
                    doc="openface: a face turned further (degrees, from the PDM fit) is not read: success 0")
    facemesh_offsets = Param(bool, False, doc="openface: move FaceMesh-mapped points onto OpenFace's landmark "
                             "conventions before the fit (a fixed table): MAE −0.01…−0.04, r −0.01…−0.02 held out")
    gaze = Param(bool, True, doc="openface: also OpenFace's gaze (gaze_0/1, gaze_angle) from mediapipe's iris model; "
                 "needs the pose input")
    gaze_every = Param(int, 1, ge=1, doc="openface: run the iris model on every k-th frame of a track; between, "
                       "each pupil keeps its place relative to the eye corners (the iris model is 2 runs per face)")
    max_fit_error = Param(float, 0.08, ge=0.0,
                          doc="openface: PDM fit RMS error / face size above which the face is not read")
    providers = Param(str, "auto", doc="ONNX Runtime provider: auto, cpu, cuda, tensorrt, coreml")
    window = Param(int, 300, ge=1, doc="frames of history per track for the neutral baseline")

    threads = 2

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """ms per frame: geometric 0.5 per face (measured); onnx a network per face; openface about 3 (warm-started
        fit 0.9, alignment 0.4, FHOG 1.0, medians and models 0.5: CPU per face, measured alone) plus the iris model's
        3.3 every ``gaze_every``-th frame; auto as what it will run."""
        backend = values["backend"]
        if backend == "auto":
            backend = "openface" if openface_folder(values.get("model") or "") is not None else "geometric"
        if backend == "openface":
            gaze = 3.3 / max(int(values.get("gaze_every") or 1), 1) if values.get("gaze", True) else 0.0
            return 3.0 + gaze
        return {"onnx": 3.0}.get(backend, 0.5)

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        if values["backend"] == "onnx" and not values["model"]:
            raise ParamError("parameter 'model' is required for backend onnx (path of the AU network)")
        return None

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        if values.get("backend") == "onnx" and values.get("model") and not Path(values["model"]).expanduser().exists():
            return [f"{values['model']}: AU model file not found"]
        if values.get("backend") == "openface":
            return openface_requirements(values.get("model") or "")
        return []

    def open(self) -> None:
        self._baseline = NeutralBaseline(self.window)
        self._net = None
        self._of = None
        self._pose_states: dict[int, Any] = {}
        self._kind = self.backend
        if self.backend in ("openface", "auto"):
            folder = openface_folder(self.model or "")
            if folder is None and self.backend == "openface":
                raise ModelError(openface_requirements(self.model or "")[0])
            self._kind = "openface" if folder is not None else "geometric"
            if folder is not None:
                self._open_openface(folder)
            else:
                log.info("au: OpenFace's AU models are not installed (facegraph models fetch %s); using geometry",
                         OPENFACE_MODEL)
        if self.backend == "onnx":
            from ..models._onnx import OnnxModel

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

    def process(self, landmarks: Any, frame: Any = None, crops: Any = None, pose: Any = None) -> dict[str, Any]:
        tracks = landmarks.get("track_id")
        if self._of is not None:
            return {"aus": self._run_openface(landmarks, frame, pose)}
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
        out: dict[str, Any] = {"intensity": np.asarray(values, np.float32), "names": list(names),
                               "backend": "onnx" if self._net is not None else "geometric"}
        if tracks is not None:
            out["track_id"] = np.asarray(tracks, np.int32)
        return {"aus": out}

    # ------------------------------------------------------------------ openface

    def _open_openface(self, folder: Path) -> None:
        from . import _openface_au as oa

        try:  # the fit's 40×40 solves and 1×4702 products are far slower on a multi-threaded BLAS
            from threadpoolctl import threadpool_limits

            self._blas_limit = threadpool_limits(1, user_api="blas")
        except ImportError:
            self._blas_limit = None
        self._oa = oa
        self._folder = folder
        self._of_models: dict[bool, Any] = {}
        self._of = self._models(bool(self.static))
        self._people: dict[int, Any] = {}
        self._seen: dict[int, int] = {}
        self._tick = 0
        self._static_mode: bool | None = self.static
        self._offline: bool | None = None
        self._done: list[tuple] = []  # finished people's post-processed rows
        self._gaze = None
        self._fits: dict[int, Any] = {}  # track → its last PDM fit (a warm start for the next frame)
        self._eyes: dict[int, tuple[int, np.ndarray]] = {}  # track → (tick of the iris model's run, pupils' eye coords)
        if self.gaze:
            from ._gaze import Gaze

            self._gaze = Gaze(threads=1)
        self._revise = str(self.context.output_path(f".facegraph/{self.context.graph_name}.{self.id}.aus.npz"))

    def _models(self, static: bool) -> Any:
        if static not in self._of_models:
            try:
                self._of_models[static] = self._oa.OpenFaceModels(self._folder, static=static)
            except (OSError, ValueError) as exc:
                raise ModelError(f"{self._folder}: cannot read OpenFace's AU models ({exc})") from None
        return self._of_models[static]

    def _decide_modes(self, source: str) -> None:
        """Static models for images, offline post-processing for files (not cameras or streams)."""
        if self._static_mode is None:
            self._static_mode = is_image(source)
        self._of = self._models(bool(self._static_mode))
        self._offline = wants_postprocess(self.postprocess, source) and self._of.any_dynamic

    def _run_openface(self, landmarks: Any, frame: Any, pose: Any = None) -> dict[str, Any]:
        if frame is None:
            raise PortValueError("au (openface) needs the 'frame' input connected (its features come from the image)")
        points = landmarks.points
        if points.shape[1] != 68:
            raise PortValueError(f"au (openface) needs 68-point iBUG landmarks, got {points.shape[1]} points")
        if self._offline is None:
            self._decide_modes(landmarks.source)
        oa, models = self._oa, self._of
        image = frame.image
        tracks = landmarks.get("track_id")
        n = points.shape[0]
        keys = [int(t) for t in tracks] if tracks is not None else [-1 - i for i in range(n)]
        self._tick += 1
        reg = np.full((n, len(models.svr.names)), np.nan, np.float32)
        cls = np.full((n, len(models.svm.names)), np.nan, np.float32)
        success = np.zeros(n, np.uint8)
        shift = self.facemesh_offsets and landmarks.get("mapped_from") == "facemesh468"
        for i, key in enumerate(keys):
            x = self._read_face(image, points[i], shift, key if tracks is not None else None)
            if self._static_mode:
                if x is not None:
                    reg[i] = np.clip(models.svr.raw(x[None], None)[0], 0.0, 5.0)
                    cls[i] = models.svm.classes(models.svm.raw(x[None], None))[0]
                    success[i] = 1
                continue
            person = self._people.get(key) if tracks is not None else None
            if person is None:
                person = oa.Person()
                if tracks is not None:
                    self._people[key] = person
            self._seen[key] = self._tick
            med = person.observe(x)
            if self._offline and tracks is not None:
                person.keys.append(landmarks.frame_id)
                person.success.append(x is not None)
                if x is not None and len(person.kept) < oa.MAX_INIT_FRAMES:
                    person.kept.append((landmarks.frame_id, x.astype(np.float32)))
            if x is None:
                continue
            med_b = None if med is None else med[None]
            raw = models.svr.raw(x[None], med_b)[0]
            reg[i] = np.clip(person.correct(raw), 0.0, 5.0)
            cls[i] = models.svm.classes(models.svm.raw(x[None], med_b))[0]
            success[i] = 1
        self._forget_stale()
        out: dict[str, Any] = {
            "intensity": reg, "names": list(models.svr.names), "presence": cls,
            "presence_names": list(models.svm.names), "success": success, "backend": "openface",
            "landmarks_from": str(landmarks.get("mapped_from") or landmarks.get("scheme") or "ibug68"),
        }
        if self._offline and tracks is not None:
            out["revise"] = self._revise
        if self._gaze is not None and pose is not None and len(pose.rotation) == n:
            vec = np.full((n, 2, 3), np.nan, np.float32)
            ang = np.full((n, 2), np.nan, np.float32)
            read = np.flatnonzero(success)
            if len(read):
                h, w = image.shape[:2]
                pupils = self._pupils(image, points[read], [keys[i] for i in read], tracks is not None)
                v, a = self._gaze.vectors(pupils, pose.rotation[read], pose.translation[read], (w, h))
                vec[read], ang[read] = v, a
            out["gaze"], out["gaze_angle"] = vec, ang
        if tracks is not None:
            out["track_id"] = np.asarray(tracks, np.int32)
        return out

    def _pupils(self, image: np.ndarray, points: np.ndarray, keys: list[int], tracked: bool) -> np.ndarray:
        """Pupils (N, 2, 2): from the iris model on a track's every ``gaze_every``-th frame, else carried along
        with the eye corners from the track's last model run."""
        from ._gaze import eye_coords, from_eye_coords

        pts = np.asarray(points, np.float64)[..., :2]
        if self.gaze_every <= 1 or not tracked:
            return self._gaze.pupils(image, pts)
        out = np.empty((len(pts), 2, 2))
        fresh = []
        for k, key in enumerate(keys):
            state = self._eyes.get(key)
            if state is not None and self._tick - state[0] < self.gaze_every:
                out[k] = from_eye_coords(state[1][None], pts[k:k + 1])[0]
            else:
                fresh.append(k)
        if fresh:
            got = self._gaze.pupils(image, pts[fresh])
            out[fresh] = got
            coords = eye_coords(got, pts[fresh])
            for j, k in enumerate(fresh):
                self._eyes[keys[k]] = (self._tick, coords[j])
        return out

    def _read_face(self, image: np.ndarray, points: np.ndarray, shift: bool = False,
                   key: int | None = None) -> np.ndarray | None:
        """The 4702 features of one face, or None when it cannot be read (turned too far, fit failed).

        A tracked face's PDM fit starts from its previous frame's (``key``): the same optimum in fewer steps."""
        p = np.asarray(points, np.float64)[:, :2]
        if not np.all(np.isfinite(p)) or np.ptp(p[:, 0]) < 1 or np.ptp(p[:, 1]) < 1:
            return None
        if shift:
            p = self._oa.undo_offsets(p, self._oa.FACEMESH_OFFSETS, self._of.aligner.dest)
        x, fit, _ = self._of.features(image, p, init=self._fits.get(key) if key is not None else None)
        size = fit.scale * 100.0  # the PDM's face is ~150 mm wide: its scale × 100 ≈ face size in pixels
        if (not np.all(np.isfinite(x)) or abs(np.degrees(fit.rotation[1])) > self.max_yaw
                or fit.rms > self.max_fit_error * max(size, 1e-6)):
            self._fits.pop(key, None)  # a face not read is no place to start the next fit from
            return None
        if key is not None:
            self._fits[key] = fit
        return x

    def _forget_stale(self, horizon: int = 90) -> None:
        """A track unseen for ``horizon`` frames is done (the landmarks node gives up an id after 60): post-process
        it now and free its histograms (13.7 MB per person)."""
        stale = [k for k, t in self._seen.items() if self._tick - t > horizon]
        for key in stale:
            del self._seen[key]
            self._eyes.pop(key, None)
            self._fits.pop(key, None)
            person = self._people.pop(key, None)
            if person is not None and self._offline:
                self._finish(key, person)

    def _finish(self, key: int, person: Any) -> None:
        frames, reg, cls, ok = self._oa.offline(self._of, person)
        if frames:
            self._done.append((np.asarray(frames, np.int64), np.full(len(frames), key, np.int64), reg, cls, ok))

    def flush(self) -> None:
        """End of stream: post-process every person and leave the values where the table sinks look for them."""
        if self._of is None or not self._offline:
            return None
        for key, person in list(self._people.items()):
            self._finish(key, person)
        self._people.clear()
        parts = self._done
        if parts:
            arrays = {name: np.concatenate([p[i] for p in parts]) for i, name in
                      enumerate(("frame_id", "track_id", "intensity", "presence", "success"))}
        else:
            arrays = {"frame_id": np.zeros(0, np.int64), "track_id": np.zeros(0, np.int64),
                      "intensity": np.zeros((0, len(self._of.svr.names))),
                      "presence": np.zeros((0, len(self._of.svm.names))), "success": np.zeros(0, bool)}
        write_revision(self._revise, list(self._of.svr.names), list(self._of.svm.names), **arrays)
        return None

    def close(self) -> None:
        limit = getattr(self, "_blas_limit", None)
        if limit is not None:
            limit.restore_original_limits()
            self._blas_limit = None

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


def openface_folder(spec: str) -> Path | None:
    """The AU_predictors folder: a path given, else the catalogue's openface-au; None when absent."""
    if spec and Path(spec).expanduser().is_dir():
        return Path(spec).expanduser()
    if spec and spec != OPENFACE_MODEL:
        return None
    from facegraph._modelstore import locate, lookup

    entry = lookup(OPENFACE_MODEL)
    return None if entry is None else locate(entry)


def openface_requirements(spec: str) -> list[str]:
    """validate's one line when OpenFace's AU models are missing."""
    if openface_folder(spec) is not None:
        return []
    if spec and spec != OPENFACE_MODEL:
        return [f"AU models {spec}: folder not found (an OpenFace AU_predictors folder, or '{OPENFACE_MODEL}')"]
    from facegraph._modelstore import lookup, missing_message

    entry = lookup(OPENFACE_MODEL)
    return [missing_message(entry)] if entry is not None else [f"needs model {OPENFACE_MODEL}"]

