"""Predictors for the landmark/pose and AU nets that pick their backend: CoreML > ONNX GPU > ONNX CPU > PyTorch.

    p = load_predictor("runs/lm")            # the best backend this machine can load
    p.predict(bgr_112)                       # {'landmarks' (68, 2), 'global_params' (6,), 'local_params' (34,)}
    a = load_au_predictor("runs/au", backend="onnx")
    a.predict(bgr_112)["au_dict"]            # {'AU01': 0.3, …}

A run folder holds ``<name>.onnx`` + ``<name>.json`` (the metadata the predictor feeds by),
``<name>.mlpackage`` and ``checkpoint_*.pt``. Each backend that cannot load (not a Mac, no
CUDA provider, file missing, package missing) leaves a one-line reason in ``tried`` and the
next is taken; only when none loads is it an error. Inputs are BGR uint8 crops made by
:func:`crop_matrix` (the 5-point template the nets were trained on), 112×112; outputs are in
those crop pixels.

A person-normalised AU net (``facegraph train au --person-norm``) needs the person's reference:
``au_net.onnx`` gives backbone features and ``au_head.onnx`` maps (features, reference) to AUs.

    a = load_au_predictor("runs/au_pn")
    ref = a.new_reference()                  # one per person / track (person_reference.RunningReference)
    f = a.features_batch(crops)              # (N, F), the frames of one person in order
    aus = a.predict_features(f, np.stack([ref.update(x) for x in f]))["au_intensities"]

``predict_batch(crops)`` alone takes the batch as one person's frames (reference: their mean);
``predict(crop)`` alone is the frame against itself (no change from the person's usual face).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

log = logging.getLogger("facegraph.models.facepose")

AU_NAMES = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU25", "AU26", "AU45"]
NUM_AUS = len(AU_NAMES)
BACKENDS = ("coreml", "onnx-gpu", "onnx-cpu", "torch")
CROP = 112


def get_au_names() -> list[str]:
    return list(AU_NAMES)


class BackendUnavailable(Exception):
    """One backend cannot load here; the message says why (the next one is tried)."""


# ------------------------------------------------------------------------------------------------ backends


class _Runner:
    """Runs (N, 3, S, S) float32 (and any further inputs, e.g. FHOG) → list of outputs in the metadata's order."""

    name = ""

    def __call__(self, x: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxRunner(_Runner):
    def __init__(self, path: Path, providers: list[str] | None, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        self.providers = self.session.get_providers()
        self.name = "onnx-gpu" if any(p != "CPUExecutionProvider" for p in self.providers) else "onnx-cpu"
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.input = self.inputs[0]

    def __call__(self, x: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.inputs, (x, *more), strict=True)))


class CoreMLRunner(_Runner):
    name = "coreml"

    def __init__(self, path: Path, outputs: list[str]) -> None:
        import coremltools as ct

        self.model = ct.models.MLModel(str(path))
        spec = self.model.get_spec()
        self.inputs = [i.name for i in spec.description.input]  # image, then fhog for an FHOG net
        self.outputs = [o.name for o in spec.description.output]  # in the traced module's return order
        if len(self.outputs) != len(outputs):
            raise BackendUnavailable(f"{path}: {len(self.outputs)} outputs, the metadata names {len(outputs)}")

    def __call__(self, x: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
        arrays = (x, *more)
        if len(arrays) != len(self.inputs):
            raise ModelError(f"the CoreML package takes {len(self.inputs)} inputs ({', '.join(self.inputs)}), "
                             f"given {len(arrays)}")
        rows = [self.model.predict({n: a[i:i + 1] for n, a in zip(self.inputs, arrays, strict=True)})
                for i in range(len(x))]
        return [np.concatenate([np.asarray(r[name]) for r in rows]) for name in self.outputs]


class TorchRunner(_Runner):
    name = "torch"

    def __init__(self, model: Any, device: str) -> None:
        self.model, self.device = model.eval(), device

    def __call__(self, x: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            out = self.model(*(torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in (x, *more)))
        out = out if isinstance(out, tuple) else (out,)
        return [o.float().cpu().numpy() for o in out]


class TorchHead:
    """A person-normalised AU net's head in torch: (features, reference) → [AUs]."""

    def __init__(self, head: Any, device: str) -> None:
        self.head, self.device = head.eval(), device

    def __call__(self, features: np.ndarray, reference: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            out = self.head(torch.from_numpy(features).to(self.device), torch.from_numpy(reference).to(self.device))
        return [out.float().cpu().numpy()]


class OnnxHead:
    """A person-normalised AU net's ``au_head.onnx`` on the CPU (it is one small MLP)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"{path}: no such file (the head of a person-normalised AU net, written beside "
                             "au_net.onnx by facegraph train au --person-norm)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, features: np.ndarray, reference: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"features": features, "reference": reference})


# ------------------------------------------------------------------------------------------------ loaders


def _is_mac() -> bool:
    return sys.platform == "darwin"


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed") from None
    return list(ort.get_available_providers())


def load_coreml(path: Path, meta: dict[str, Any]) -> _Runner:
    if not _is_mac():
        raise BackendUnavailable("CoreML runs on macOS only")
    if not path.exists():
        raise BackendUnavailable(f"{path}: no such CoreML package")
    try:
        import coremltools  # noqa: F401
    except ImportError:
        raise BackendUnavailable("coremltools is not installed (pip install 'facegraph[coreml]')") from None
    return CoreMLRunner(path, meta["outputs"])


def load_onnx_gpu(path: Path, meta: dict[str, Any], threads: int = 1) -> _Runner:
    if not path.is_file():
        raise BackendUnavailable(f"{path}: no such ONNX file")
    available = _ort_providers()
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not gpu:
        raise BackendUnavailable("ONNX Runtime here has no CUDA or TensorRT provider (pip install onnxruntime-gpu)")
    runner = OnnxRunner(path, [*gpu, "CPUExecutionProvider"], threads)
    if runner.name != "onnx-gpu":
        raise BackendUnavailable(f"ONNX Runtime fell back to the CPU for {', '.join(gpu)} (no usable GPU)")
    return runner


def load_onnx_cpu(path: Path, meta: dict[str, Any], threads: int = 1) -> _Runner:
    if not path.is_file():
        raise BackendUnavailable(f"{path}: no such ONNX file")
    if "CPUExecutionProvider" not in _ort_providers():
        raise BackendUnavailable("ONNX Runtime here has no CPU provider")
    return OnnxRunner(path, ["CPUExecutionProvider"], threads)


def load_torch(checkpoint: Path, meta: dict[str, Any], device: str | None = None,
               width_mult: float | None = None) -> _Runner:
    if not checkpoint.is_file():
        raise BackendUnavailable(f"{checkpoint}: no such checkpoint")
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("torch is not installed (pip install 'facegraph[train]')") from None
    from ..nets.facepose import AUFeatures, AUHead, AUPredictionNet, UnifiedLandmarkPoseNet

    state = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    config = dict(state.get("model_config") or meta.get("model_config") or {})
    if width_mult is not None:
        config["width_mult"] = width_mult
    net = config.pop("net", None)
    if net == "UnifiedLandmarkPoseNet":
        model = UnifiedLandmarkPoseNet(**{k: config[k] for k in ("width_mult", "num_landmarks", "num_local_params",
                                                                  "image_size", "dropout") if k in config})
    elif net == "AUPredictionNet":
        model = AUPredictionNet(width_mult=config.get("width_mult", 1.0), dropout=config.get("dropout", 0.3),
                                num_aus=len(config.get("au_names") or AU_NAMES),
                                person_norm=bool(config.get("person_norm")), with_frame=bool(config.get("with_frame")))
    elif net == "FhogFerAUNet":
        from ..nets.au_hybrid import FhogFerAUNet

        model = FhogFerAUNet(len(config.get("au_names") or AU_NAMES), float(config.get("fer_weight", 2.0)))
    else:
        raise BackendUnavailable(f"{checkpoint}: not a landmark-pose or AU-net checkpoint")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise BackendUnavailable(f"{checkpoint}: weights do not fit ({str(exc).splitlines()[0]}); "
                                 "is --width-mult the one it was trained with?") from None
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if net == "AUPredictionNet" and model.person_norm:
        runner = TorchRunner(AUFeatures(model).to(dev), dev)
        runner.head = TorchHead(AUHead(model).to(dev), dev)
        return runner
    return TorchRunner(model.to(dev), dev)


# ------------------------------------------------------------------------------------------------ predictors


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path}: no metadata file (written by facegraph train landmark-pose / au beside the model)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not JSON ({exc})") from None


def _checkpoint_meta(path: Path) -> dict[str, Any]:
    """A checkpoint alone: the metadata the training run would have written."""
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=False)
    cfg = state.get("model_config", {})
    kind = state.get("kind", "")
    outputs = ["landmarks", "global_params", "local_params"] if kind == "landmark-pose" else ["au_intensities"]
    if cfg.get("person_norm"):
        outputs = ["features"]
    return {"kind": kind, "model_config": cfg, "input_size": cfg.get("image_size", CROP), "crop_size": CROP,
            "mean": 0.5, "std": 0.5, "outputs": outputs, "au_names": cfg.get("au_names")}


class _Predictor:
    kind = ""
    file_stem = ""

    def __init__(self, runner: _Runner, meta: dict[str, Any], tried: list[tuple[str, str]] | None = None) -> None:
        if meta.get("kind") not in (None, "", self.kind):
            raise ModelError(f"a {meta.get('kind')} model given where a {self.kind} model is wanted")
        self.runner, self.meta, self.tried = runner, meta, list(tried or [])
        self.folder: Path | None = None  # where the model's files are (a person-normalised AU net's head)
        self.backend = runner.name
        self.size = int(meta.get("input_size", CROP))
        self.mean, self.std = float(meta.get("mean", 0.5)), float(meta.get("std", 0.5))

    # -- constructors, one per backend ------------------------------------------------------------------------
    @classmethod
    def from_onnx(cls, path: str | Path, providers: list[str] | None = None, threads: int = 1) -> _Predictor:
        path = Path(path)
        meta = _read_meta(path.with_suffix(".json"))
        if not path.is_file():
            raise ModelError(f"{path}: no such ONNX file")
        return cls(OnnxRunner(path, providers, threads), meta).located(path.parent)

    @classmethod
    def from_coreml(cls, path: str | Path) -> _Predictor:
        path = Path(path)
        meta = _read_meta(path.with_suffix(".json"))
        try:
            return cls(load_coreml(path, meta), meta).located(path.parent)
        except BackendUnavailable as exc:
            raise ModelError(str(exc)) from None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None,
                        width_mult: float | None = None) -> _Predictor:
        path = Path(path)
        meta_path = path.parent / f"{cls.file_stem}.json"
        meta = _read_meta(meta_path) if meta_path.is_file() else _checkpoint_meta(path)
        try:
            return cls(load_torch(path, meta, device, width_mult), meta).located(path.parent)
        except BackendUnavailable as exc:
            raise ModelError(str(exc)) from None

    @classmethod
    def from_auto(cls, folder: str | Path, prefer_coreml: bool = True, threads: int = 1,
                  backend: str | None = None) -> _Predictor:
        """The first backend of CoreML > ONNX GPU > ONNX CPU > PyTorch that loads (``backend``: only that one)."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            try:
                folder = model_folder(folder)
            except ModelError:
                raise ModelError(f"{folder}: no such model folder") from None
        order = list(BACKENDS if prefer_coreml else BACKENDS[1:])
        if backend not in (None, "auto"):
            names = {"onnx": ["onnx-gpu", "onnx-cpu"], "cuda": ["onnx-gpu"], "cpu": ["onnx-cpu"]}
            order = names.get(backend, [backend])
            if any(b not in BACKENDS for b in order):
                raise ModelError(f"backend {backend!r}: one of auto, {', '.join(BACKENDS)}, onnx")
        onnx, mlpackage = folder / f"{cls.file_stem}.onnx", folder / f"{cls.file_stem}.mlpackage"
        meta_path = folder / f"{cls.file_stem}.json"
        meta = _read_meta(meta_path) if meta_path.is_file() else None
        names = [meta["weights"]] if meta and meta.get("weights") else ["checkpoint_best.pt", "checkpoint_final.pt"]
        checkpoint = next((folder / n for n in names if (folder / n).is_file()), folder / names[0])
        loaders: dict[str, Callable[[dict[str, Any]], _Runner]] = {
            "coreml": lambda m: LOADERS["coreml"](mlpackage, m),
            "onnx-gpu": lambda m: LOADERS["onnx-gpu"](onnx, m, threads),
            "onnx-cpu": lambda m: LOADERS["onnx-cpu"](onnx, m, threads),
            "torch": lambda m: LOADERS["torch"](checkpoint, m),
        }
        if meta is None and not checkpoint.is_file():
            raise ModelError(f"{folder}: no {cls.file_stem}.json, .onnx or checkpoint here (a run folder of "
                             f"facegraph train {'landmark-pose' if cls.kind == 'landmark-pose' else 'au'})")
        tried: list[tuple[str, str]] = []
        for name in order:
            try:
                m = meta if meta is not None else (_checkpoint_meta(checkpoint) if name == "torch"
                                                   and checkpoint.is_file() else None)
                if m is None:
                    raise BackendUnavailable(f"{meta_path}: no metadata beside the model")
                runner = loaders[name](m)
            except BackendUnavailable as exc:
                tried.append((name, str(exc)))
                log.info("%s: backend %s not used: %s", folder, name, exc)
                continue
            except Exception as exc:  # a runtime that fails on the file: say so, try the next
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                tried.append((name, f"failed to load ({first})"))
                log.info("%s: backend %s failed: %s", folder, name, first)
                continue
            return cls(runner, m, tried).located(folder)
        why = "; ".join(f"{n}: {r}" for n, r in tried)
        raise ModelError(f"{folder}: no backend could load the {cls.kind} model ({why})")

    def located(self, folder: Path) -> _Predictor:
        self.folder = Path(folder)
        return self

    # -- inference ---------------------------------------------------------------------------------------------
    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 (N, 112, 112, 3) → RGB float32 (N, 3, S, S) in [-1, 1]."""
        import cv2

        bgr = np.asarray(bgr)
        if bgr.ndim != 4 or bgr.shape[-1] != 3:
            raise ValueError(f"expected BGR crops (N, H, W, 3), got shape {bgr.shape}")
        rgb = bgr[..., ::-1]
        if rgb.shape[1] != self.size or rgb.shape[2] != self.size:
            rgb = np.stack([cv2.resize(np.ascontiguousarray(c), (self.size, self.size),
                                       interpolation=cv2.INTER_AREA) for c in rgb])
        x = rgb.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        return np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32)

    def run(self, bgr: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
        if len(bgr) == 0:
            return []
        return self.runner(self.preprocess(bgr), *more)


class LandmarkPosePredictor(_Predictor):
    kind = "landmark-pose"
    file_stem = "landmark_pose"

    def predict_batch(self, bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Landmarks (N, 68, 2), global params (N, 6) in the input crops' pixels, local params (N, 34)."""
        bgr = np.asarray(bgr)
        if len(bgr) == 0:
            return {"landmarks": np.zeros((0, 68, 2), np.float32), "global_params": np.zeros((0, 6), np.float32),
                    "local_params": np.zeros((0, 34), np.float32)}
        lm, gp, lp = self.run(bgr)
        k = bgr.shape[1] / self.size
        gp = np.array(gp, np.float32)
        gp[:, [0, 4, 5]] *= k
        return {"landmarks": (np.asarray(lm, np.float32) * k).reshape(len(bgr), -1, 2), "global_params": gp,
                "local_params": np.asarray(lp, np.float32)}

    def predict(self, bgr_112: np.ndarray) -> dict[str, np.ndarray]:
        out = self.predict_batch(np.asarray(bgr_112)[None])
        return {k: v[0] for k, v in out.items()}


class AUPredictor(_Predictor):
    kind = "au-net"
    file_stem = "au_net"

    def get_au_names(self) -> list[str]:
        return list(self.meta.get("au_names") or AU_NAMES)

    @property
    def needs_landmarks(self) -> bool:
        """Whether the net reads FHOG aligned by the face's 68 landmarks (``train au --net fhog+fer``)."""
        from ..face._aligned_hog import reads_fhog

        return reads_fhog(self.meta)

    def _fhog(self, bgr: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        if landmarks is None:
            raise ModelError("this AU net reads FHOG of the face aligned by its 68 landmarks: give landmarks "
                             "(N, 68, 2) in the crops' pixels (in a graph: connect au.nn's landmarks input, "
                             "e.g. lm.landmarks68)")
        from ..face._aligned_hog import aligned_fhog

        return aligned_fhog(bgr, landmarks)

    @property
    def person_norm(self) -> bool:
        """Whether the net needs a person's reference (``facegraph train au --person-norm``)."""
        return bool(self.meta.get("person_norm") or (self.meta.get("model_config") or {}).get("person_norm"))

    def new_reference(self) -> Any:
        """A fresh running reference for one person (track)."""
        from .person_reference import RunningReference

        return RunningReference()

    def _head(self) -> Any:
        head = getattr(self, "_head_runner", None) or getattr(self.runner, "head", None)
        if head is None:
            name = (self.meta.get("person_norm") or {}).get("head", "au_head.onnx")
            head = OnnxHead((self.folder or Path(".")) / name)
        self._head_runner = head
        return head

    def features_batch(self, bgr: np.ndarray) -> np.ndarray:
        """Backbone features (N, F) of a person-normalised net (what its reference is the running mean of)."""
        if not self.person_norm:
            raise ModelError("features_batch: this AU net is not person-normalised (it takes no reference)")
        bgr = np.asarray(bgr)
        if len(bgr) == 0:
            return np.zeros((0, 0), np.float32)
        return np.asarray(self.run(bgr)[0], np.float32)

    def predict_features(self, features: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
        """AUs from features (N, F) and each row's person reference ((N, F), or (F,) for all rows)."""
        f = np.array(features, np.float32)
        ref = np.array(np.broadcast_to(np.asarray(reference, np.float32), f.shape))
        aus = np.asarray(self._head()(f, ref)[0], np.float32)
        return {"au_intensities": np.clip(aus, 0.0, 5.0), "au_names": self.get_au_names()}

    def predict_batch(self, bgr: np.ndarray, reference: np.ndarray | None = None,
                      landmarks: np.ndarray | None = None) -> dict[str, Any]:
        """AUs (N, 17). A person-normalised net: ``reference`` (F,) or (N, F), by default the batch's mean
        features (the batch taken as one person's frames); ``features`` come back too. A net that reads
        FHOG (``needs_landmarks``): ``landmarks`` (N, 68, 2), each crop's 68 points in its pixels."""
        bgr = np.asarray(bgr)
        if len(bgr) == 0:
            return {"au_intensities": np.zeros((0, NUM_AUS), np.float32), "au_names": self.get_au_names()}
        if self.needs_landmarks:
            hog = self._fhog(bgr, landmarks)
            return {"au_intensities": np.clip(np.asarray(self.run(bgr, hog)[0], np.float32), 0.0, 5.0),
                    "au_names": self.get_au_names()}
        if not self.person_norm:
            if reference is not None:
                raise ModelError("reference given to an AU net that is not person-normalised")
            return {"au_intensities": np.clip(np.asarray(self.run(bgr)[0], np.float32), 0.0, 5.0),
                    "au_names": self.get_au_names()}
        f = self.features_batch(bgr)
        out = self.predict_features(f, f.mean(0) if reference is None else reference)
        out["features"] = f
        return out

    def predict(self, bgr_112: np.ndarray, reference: np.ndarray | None = None,
                landmarks: np.ndarray | None = None) -> dict[str, Any]:
        points = None if landmarks is None else np.asarray(landmarks)[None]
        values = self.predict_batch(np.asarray(bgr_112)[None], reference, points)["au_intensities"][0]
        return {"au_intensities": values, "au_dict": dict(zip(self.get_au_names(), map(float, values), strict=True))}


#: the loader of each backend (tests replace one at a time to make it unavailable)
LOADERS: dict[str, Callable[..., _Runner]] = {"coreml": load_coreml, "onnx-gpu": load_onnx_gpu,
                                             "onnx-cpu": load_onnx_cpu, "torch": load_torch}


def load_predictor(folder: str | Path, backend: str | None = None, threads: int = 1) -> LandmarkPosePredictor:
    """The landmark/pose net of a run folder (or a shipped model folder) on the best backend here."""
    return LandmarkPosePredictor.from_auto(folder, threads=threads, backend=backend)  # type: ignore[return-value]


def load_au_predictor(folder: str | Path, backend: str | None = None, threads: int = 1) -> AUPredictor:
    """The AU net of a run folder (or a shipped model folder) on the best backend here."""
    return AUPredictor.from_auto(folder, threads=threads, backend=backend)  # type: ignore[return-value]


#: the nets' crop: ArcFace's template shrunk about the centre, so the jaw and chin (outside ArcFace's crop) fit
ZOOM = 0.8


def crop_template(size: int = CROP) -> np.ndarray:
    """Where the five points (eye centres, nose tip, mouth corners) sit in the nets' S×S crop."""
    from ..face._align import arcface_template

    return (arcface_template(112) - 56.0) * ZOOM * size / 112.0 + size / 2.0


def crop_matrix(kps: np.ndarray, size: int = CROP) -> np.ndarray:
    """Frame → crop similarity for the nets from five points (a detector's keypoints, ArcFace order)."""
    from ..face._align import umeyama

    return umeyama(np.asarray(kps, np.float64)[:5, :2], crop_template(size))


# ------------------------------------------------------------------------------------------------ catalogue

#: where the nets the bars were measured on live: in the repository, not in the wheel (OpenFace's licence)
BENCH_MODELS = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
OPENFACE_DERIVED = "trained to mimic OpenFace 0.2: OpenFace's academic, non-commercial licence; not in the wheel"
FER_AND_OPENFACE = ("mimics OpenFace 0.2 (academic, non-commercial licence) on the FER-2013 CNN's features "
                    "(research use only): both apply; not in the wheel")
#: (catalogue name, file in BENCH_MODELS, description, sha256, size, licence); the pixel AU nets trained on the six
#: people (plain: held-out mean r −0.06; person-normalised: −0.02) are not shipped (benchmarks/README.md)
BENCH_NETS = (
    ("facegraph/landmark_pose_w05", "landmark_pose_w05/landmark_pose.onnx",
     "UnifiedLandmarkPoseNet ×0.5: 68 landmarks + PDM pose/shape from a 112 px crop (landmarks.nn); held-out NME "
     "0.058, pose r 0.92", "54f9703d9b8f0ea697e3730f7fdf3bc4e3556dfa83dc6ad89e6f943268e1cff4", 8_326_317,
     OPENFACE_DERIVED),
    ("facegraph/au_fer_ridge", "au_fer_ridge/au_net.onnx",
     "17 AU intensities from a 112 px crop (au.nn): ridge on the FER-2013 CNN's embedding; held-out mean r 0.47",
     "cbc79a7f6f0c33f35b4f8a72d4d8e5fe2f5d5d4a1f10b2bb8bb246f727241815", 4_863_246, FER_AND_OPENFACE),
    ("facegraph/au_fhog_fer", "au_fhog_fer/au_net.onnx",
     "17 AU intensities (au.nn, needs the 68 landmarks): one linear layer on FHOG of the OpenFace-aligned face + the "
     "FER-2013 CNN's embedding; held-out mean r 0.61 after a video (each track's floor off), 0.60 per frame",
     "726da35ef60ffc6fdc284278c4b767401398a11130216c1e887e30c6caeb628a", 5_180_493, FER_AND_OPENFACE),
)


def _register_bench_nets() -> None:
    try:
        from facegraph._modelstore import ModelEntry, register_models
    except ImportError:
        return
    register_models(*(ModelEntry(name=name, filename=filename, description=desc, licence=licence,
                                 sha256=sha, size=size, search_dirs=(str(BENCH_MODELS),),
                                 aliases=(name.split("/", 1)[1],),
                                 note="in the repository's benchmarks/models/ (card: facegraph models card NAME)")
                      for name, filename, desc, sha, size, licence in BENCH_NETS))


def model_folder(spec: str | Path) -> Path:
    """A model folder by path, or by catalogue name (the folder of its ONNX file)."""
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        return path
    from facegraph._modelstore import locate, lookup

    entry = lookup(str(spec))
    found = locate(entry) if entry is not None else None
    if found is None:
        raise ModelError(f"{spec}: model folder not found (a training run's --output, a folder under "
                         f"benchmarks/models/, or one of {', '.join(n[0] for n in BENCH_NETS)})")
    return found.parent


_register_bench_nets()
