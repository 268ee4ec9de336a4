"""``landmarks.nn`` and ``au.nn``: the trained landmark/pose and AU nets in a graph, on the best backend here.

``landmarks.nn`` crops each face to the nets' 112×112 template from the detector's five
keypoints (on frames where the detector did not run, from the five points of the face's
last landmarks), runs UnifiedLandmarkPoseNet, and with ``refine`` crops again from its own
landmarks and runs it once more: the second crop is made the way the training crops were
(from 68 points), so it is the one the AU net gets. Head rotation is the net's PDM rotation
moved back to the frame; translation follows OpenFace's weak-perspective reading
(``Tz = f/scale``). ``au.nn`` runs an AU model on those crops; one that reads FHOG
(``train au --net fhog+fer``) also takes the faces' 68 landmarks, moved into each crop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import FRAME, Input, ModelError, Node, Output, Param, register

from ..au_revision import write_revision
from ..types import AUS, CROPS, FACES, LANDMARKS, POSE
from ._align import transform_points, warp_crops
from ._aligned_hog import reads_fhog
from ._headpose import default_intrinsics
from ._source_kind import wants_postprocess

BACKEND_CHOICES = ("auto", "coreml", "onnx", "onnx-gpu", "onnx-cpu", "torch")


def _model_folder(spec: str, what: str) -> Any:
    from ..models.facepose import model_folder

    if not spec:
        raise ModelError(f"{what}: parameter 'model' names the model folder (a training run's --output, a "
                         "folder under benchmarks/models/, or its catalogue name)")
    try:
        return model_folder(spec)
    except ModelError as exc:
        raise ModelError(f"{what}: {exc}") from None


def _reads_fhog(spec: str) -> bool:
    """Whether the AU model's metadata says it takes FHOG as a second input (``train au --net fhog+fer``)."""
    import json

    try:
        meta = json.loads((_model_folder(spec, "AU model") / "au_net.json").read_text())
    except (ModelError, OSError, ValueError):
        return False  # a missing model is requirements()'s to report
    return reads_fhog(meta)


def _five_from_68(points: np.ndarray) -> np.ndarray:
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def _invert(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]


@register("landmarks.nn")
class LandmarksNN(Node):
    """68 landmarks, head pose and the nets' aligned crops per face, from the landmark/pose net."""

    frame = Input(FRAME)
    faces = Input(FACES, doc="boxes, five keypoints (ArcFace order) and track ids from any detector")
    landmarks68 = Output(LANDMARKS, doc="iBUG 68 points (x, y px in the frame)")
    pose = Output(POSE, doc="rotation from the net's PDM parameters; translation by weak perspective")
    crops = Output(CROPS, doc="112×112 crops on the nets' template (for au.nn)")
    faces_out = Output(FACES, doc="the faces, boxes from the landmarks", name="faces")

    model = Param(str, "", doc="folder with landmark_pose.onnx + .json (+ .mlpackage, checkpoint)")
    backend = Param(str, "auto", choices=BACKEND_CHOICES, doc="auto: CoreML > ONNX GPU > ONNX CPU > PyTorch")
    refine = Param(bool, True, doc="crop again from the first pass's landmarks and run the net once more")

    cost = 6.0  # two passes of the width-0.5 net, one core

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        try:
            _model_folder(values.get("model") or "", "landmark-pose model")
        except ModelError as exc:
            return [str(exc)]
        return []

    def open(self) -> None:
        from ..models.facepose import load_predictor

        folder = _model_folder(self.model, "landmark-pose model")
        self.net = load_predictor(folder, backend=None if self.backend == "auto" else self.backend,
                                  threads=max(1, self.context.threads))
        self._given: tuple[np.ndarray, np.ndarray] | None = None
        self._last: dict[int, np.ndarray] = {}

    def _starts(self, faces: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Five points per face to crop from: the detection's when it is new, else the last landmarks'."""
        kps = np.asarray(faces.kps, np.float64).reshape(-1, 5, 2)
        boxes = np.asarray(faces.boxes, np.float32).reshape(-1, 4)
        tids = faces.get("track_id")
        if tids is None:
            return kps, None
        tids = np.asarray(tids, np.int64).reshape(-1)
        fresh = self._given is None or not (np.array_equal(self._given[0], boxes)
                                            and np.array_equal(self._given[1], tids))
        self._given = (boxes.copy(), tids.copy())
        if fresh:
            self._last = {t: v for t, v in self._last.items() if t in set(tids.tolist())}
            return kps, tids
        return np.stack([self._last.get(int(t), k) for t, k in zip(tids, kps, strict=True)]) if len(kps) else kps, tids

    def _run(self, image: np.ndarray, five: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        from ..models.facepose import crop_matrix

        matrices = np.array([crop_matrix(k) for k in five], np.float64).reshape(-1, 2, 3)
        crops = warp_crops(image, matrices, 112)
        return matrices, crops, self.net.predict_batch(crops)

    def process(self, frame: Any, faces: Any) -> dict[str, Any]:
        from ._pdm_params import params_to_frame

        image = frame.image
        five, tids = self._starts(faces)
        matrices, crops, out = self._run(image, five)
        if self.refine and len(five):
            first = np.stack([transform_points(lm, _invert(m)) for lm, m in zip(out["landmarks"], matrices,
                                                                                   strict=True)])
            matrices, crops, out = self._run(image, np.stack([_five_from_68(p) for p in first]))
        n = len(five)
        points = np.zeros((0, 68, 2))
        if n:
            points = np.stack([transform_points(lm, _invert(m)) for lm, m in zip(out["landmarks"], matrices,
                                                                                 strict=True)])
        glob = np.array([params_to_frame(g, m) for g, m in zip(out["global_params"], matrices, strict=True)]
                        ).reshape(-1, 6)
        if tids is not None:
            self._last = {int(t): _five_from_68(p) for t, p in zip(tids, points, strict=True)}
        h, w = image.shape[:2]
        fx, fy, cx, cy = default_intrinsics(w, h)
        tz = fx / np.maximum(glob[:, 0], 1e-6)
        translation = np.stack([(glob[:, 4] - cx) * tz / fx, (glob[:, 5] - cy) * tz / fy, tz], 1) if n else \
            np.zeros((0, 3))
        boxes = np.concatenate([points.min(1), points.max(1)], 1) if n else np.zeros((0, 4))
        extra = {} if tids is None else {"track_id": np.asarray(tids, np.int32)}
        return {
            "landmarks68": {"points": points.astype(np.float32), "scheme": "ibug68", **extra},
            "pose": {"rotation": glob[:, 1:4].astype(np.float32), "translation": translation.astype(np.float32),
                     **extra},
            "crops": {"images": crops, "matrices": matrices.astype(np.float32), **extra},
            "faces": {"boxes": boxes.astype(np.float32),
                      "scores": np.asarray(faces.scores, np.float32).reshape(-1),
                      "kps": np.stack([_five_from_68(p) for p in points]).astype(np.float32) if n
                      else np.zeros((0, 5, 2), np.float32), **extra},
        }


@register("au.nn")
class AUNN(Node):
    """17 AU intensities (OpenFace's scale, 0-5) per face from the AU net on ``landmarks.nn``'s crops.

    For files (``postprocess`` auto: not cameras, streams or images) each track's floor, the 25th
    percentile of its own values, is taken off after the video, as OpenFace's offline offset does
    (``models/au_floor.py``), and written into the table sinks at the end; the live values are the
    net's own. A person-normalised net (``facegraph train au --person-norm``) is given each face's reference:
    the running mean of its track's features so far, this frame's included; a new track id starts
    a fresh one (like the openface backend's per-person running median). Without track ids
    the faces are taken by their order in the frame.
    """

    crops = Input(CROPS, doc="112×112 crops on the nets' template (landmarks.nn's crops)")
    landmarks = Input(LANDMARKS, optional=True,
                      doc="the faces' 68 points in the frame (landmarks.nn's landmarks68): needed by nets that read "
                      "FHOG (facegraph train au --net fhog+fer)")
    aus = Output(AUS)

    model = Param(str, "", doc="folder with au_net.onnx + .json (+ .mlpackage, checkpoint)")
    backend = Param(str, "auto", choices=BACKEND_CHOICES, doc="auto: CoreML > ONNX GPU > ONNX CPU > PyTorch")
    postprocess = Param(str, "auto", choices=("auto", "on", "off"),
                        doc="take each track's floor (25th percentile of its values, OpenFace's offline offset) off "
                            "after the video, written into the table sinks at the end; auto: on for files, off for "
                            "cameras, streams and images")

    cost = 4.0  # the width-0.5 AU net, one face, one core

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        try:
            _model_folder(values.get("model") or "", "AU model")
        except ModelError as exc:
            return [str(exc)]
        return []

    @classmethod
    def link_requirements(cls, values: dict[str, Any], upstream: dict[str, dict[str, Any]]) -> list[str]:
        if "landmarks" in upstream or not _reads_fhog(values.get("model") or ""):
            return []
        return [f"model {values.get('model')} reads FHOG aligned by the 68 landmarks: connect au.nn's landmarks "
                "input (e.g. landmarks: lm.landmarks68)"]

    def open(self) -> None:
        from ..models.facepose import load_au_predictor

        folder = _model_folder(self.model, "AU model")
        self.net = load_au_predictor(folder, backend=None if self.backend == "auto" else self.backend,
                                     threads=max(1, self.context.threads))
        self.names = self.net.get_au_names()
        from ..models.au_floor import FloorBook
        from ..models.person_reference import TrackReferences

        self.references = TrackReferences()
        self._floors = FloorBook()
        self._offline: bool | None = None
        self._revise = str(self.context.output_path(f".facegraph/{self.context.graph_name}.{self.id}.aus.npz"))

    def _crop_landmarks(self, crops: Any, landmarks: Any) -> np.ndarray:
        """Each face's 68 points moved into its crop (the crop's matrix maps the frame onto it)."""
        if landmarks is None:
            raise ModelError(f"au.nn: model {self.model} reads FHOG aligned by the 68 landmarks: connect its "
                             "landmarks input (e.g. landmarks: lm.landmarks68)")
        points = np.asarray(landmarks.points, np.float64).reshape(-1, 68, 2)
        matrices = np.asarray(crops.matrices, np.float64).reshape(-1, 2, 3)
        if len(points) != len(matrices):
            raise ModelError(f"au.nn: {len(matrices)} crops but {len(points)} faces' landmarks in this frame "
                             "(connect the landmarks of the node that made the crops)")
        return np.stack([transform_points(p, m) for p, m in zip(points, matrices, strict=True)]) if len(points) \
            else np.zeros((0, 68, 2))

    def process(self, crops: Any, landmarks: Any = None) -> dict[str, Any]:
        images = np.asarray(crops.images)
        if self.net.needs_landmarks:
            out = self.net.predict_batch(images, landmarks=self._crop_landmarks(crops, landmarks))
        elif self.net.person_norm and len(images):
            ids = np.arange(len(images)) if crops.get("track_id") is None else np.asarray(crops.track_id)
            features = self.net.features_batch(images)
            out = self.net.predict_features(features, self.references.update(ids, features))
        else:
            out = self.net.predict_batch(images)
        extra = {} if crops.get("track_id") is None else {"track_id": np.asarray(crops.track_id, np.int32)}
        if self._offline is None:
            self._offline = wants_postprocess(self.postprocess, crops.source)
        if self._offline and "track_id" in extra:
            self._floors.add(crops.frame_id, extra["track_id"], out["au_intensities"])
            extra["revise"] = self._revise
        return {"aus": {"intensity": out["au_intensities"], "names": list(self.names),
                        "success": np.ones(len(images), np.uint8), "backend": f"nn-{self.net.backend}", **extra}}

    def flush(self) -> None:
        """End of a file: each track's floor off, left where the table sinks look for revised values (nothing is
        written when no tracked face was seen: no packet named the file)."""
        if not self._offline or not self._floors.values:
            return None
        write_revision(self._revise, list(self.names), [], presence=None, **self._floors.revised(len(self.names)))
        return None
