"""Loading ONNX models for every model node: path or name, best provider, thread budget, warm-up, metadata.

Providers are tried in the order CoreML > TensorRT > CUDA > CPU, restricted to
what the installed ONNX Runtime build offers, unless a node names its own.
``provider_facts`` tells the bench's machine report what ONNX Runtime offers here
(the engine itself imports no model runtime).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

PREFERENCE = ("CoreMLExecutionProvider", "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ALIASES = {
    "coreml": "CoreMLExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

#: packages whose versions set the built-in nodes' speed, for the bench's machine report
SPEED_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "opencv-contrib-python", "mediapipe", "ai-edge-litert", "av",
                  "pyarrow", "insightface", "torch")

#: ONNX input element types → numpy dtypes for the warm-up's zeros
_WARMUP_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def resolve_model(spec: str | Path, *, what: str = "model") -> Path:
    """A path that exists, or a known model name from the catalogue; ModelError naming the file otherwise."""
    path = Path(str(spec)).expanduser()
    if path.exists():
        return path
    try:
        from ._catalogue import known, resolve
    except ImportError:
        known = resolve = None
    if resolve is not None and known(str(spec)):
        return resolve(str(spec))
    if resolve is not None and not any(sep in str(spec) for sep in ("/", "\\")) and not path.suffix:
        return resolve(str(spec))
    raise ModelError(
        f"{spec}: {what} file not found; pass the path of an existing file, "
        "or a model name listed by 'facegraph models' (then 'facegraph models fetch NAME')"
    )


def choose_providers(wanted: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The providers to ask for, best first. ``wanted`` is 'auto', one name/alias, or a list."""
    if wanted in (None, "auto"):
        return [p for p in PREFERENCE if p in available] or ["CPUExecutionProvider"]
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    chosen = [ALIASES.get(n.lower(), n) for n in names]
    missing = [p for p in chosen if p not in available]
    if missing:
        raise ModelError(f"ONNX Runtime here has no {', '.join(missing)}; available: {', '.join(available)}")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def with_options(chosen: Sequence[str], *, fp16: bool = True, cache: str | Path | None = None) -> list[Any]:
    """ONNX Runtime's provider list with options: TensorRT builds FP16 engines and keeps them in a cache
    folder (``$FACEGRAPH_TRT_CACHE``, default ``~/.cache/facegraph/trt``), so only the first start pays the
    engine build. Other providers go as they are. Unverified here: this machine has no NVIDIA GPU."""
    import os

    out: list[Any] = []
    for name in chosen:
        if name == "TensorrtExecutionProvider":
            folder = Path(cache or os.environ.get("FACEGRAPH_TRT_CACHE", "~/.cache/facegraph/trt")).expanduser()
            out.append((name, {"trt_fp16_enable": bool(fp16), "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": str(folder)}))
        else:
            out.append(name)
    return out


def provider_facts(graph: Any = None) -> dict[str, dict[str, Any]]:
    """ONNX Runtime's providers here, and per node the one its ``providers`` parameter picks.

    Models load inside worker processes, so this is what the node's setting
    resolves to here (``auto`` = best available), not read back from a session.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return {"ONNX Runtime": {"available": [], "used": {}}}
    available = list(ort.get_available_providers())
    used: dict[str, str] = {}
    for nid, spec in (graph.nodes.items() if graph is not None else ()):
        if "providers" not in spec.cls.params:
            continue
        wanted = spec.params.get("providers", spec.cls.params["providers"].default)
        try:
            used[nid] = choose_providers(wanted, available)[0]
        except ModelError as exc:  # a provider not available here: say so instead of failing
            used[nid] = f"unavailable ({exc})"
    return {"ONNX Runtime": {"available": available, "used": used}}


def load_metadata(model_path: Path) -> dict[str, Any]:
    """``<model>.json`` or ``metadata.json`` beside the model; {} when neither exists."""
    for candidate in (model_path.with_suffix(".json"), model_path.parent / "metadata.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ModelError(f"{candidate}: unreadable model metadata ({exc})") from None
    return {}


class OnnxModel:
    """An ONNX Runtime session sized for one worker, with the model's metadata."""

    def __init__(
        self,
        spec: str | Path,
        *,
        providers: str | Sequence[str] | None = "auto",
        threads: int = 1,
        what: str = "model",
        warmup: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.path = resolve_model(spec, what=what)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        chosen = choose_providers(providers, ort.get_available_providers())
        if "TensorrtExecutionProvider" in chosen:
            folder = Path(with_options(["TensorrtExecutionProvider"])[0][1]["trt_engine_cache_path"])
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=with_options(chosen))
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ModelError(f"{self.path}: cannot load as an ONNX model ({str(exc).splitlines()[0]})") from None
        self.providers = self.session.get_providers()
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        self.input_name = self.inputs[0].name
        self.output_names = [o.name for o in self.outputs]
        self.metadata = load_metadata(self.path)
        if warmup:
            self.warmup()

    @property
    def input_shape(self) -> list[int | str | None]:
        return list(self.inputs[0].shape)

    def fixed_hw(self, default: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of an NCHW/NHWC image input when the model fixes them, else ``default``."""
        shape = self.input_shape
        if len(shape) == 4:
            dims = shape[2:4] if shape[1] in (1, 3) else shape[1:3]
            if all(isinstance(d, int) and d > 0 for d in dims):
                return int(dims[0]), int(dims[1])
        return default

    def warmup(self) -> None:
        """One run on zeros, so the first real frame does not pay for lazy initialisation.

        It is also the check that the model can run at all: a file that loads but
        fails here (a missing operator, inconsistent shapes) would fail on every
        frame, so it is reported now as one line naming the file. A free batch is 1;
        a 4-D image's free sides are 64 (which strided detectors accept, where 1 is not).
        """
        feeds = {}
        for inp in self.inputs:
            shape = [
                d if isinstance(d, int) and d > 0 else (64 if len(inp.shape) == 4 and i > 0 else 1)
                for i, d in enumerate(inp.shape)
            ]
            dtype = _WARMUP_DTYPES.get(inp.type)
            if dtype is None:
                raise ModelError(f"{self.path}: input '{inp.name}' has type {inp.type}, which no node can feed")
            feeds[inp.name] = np.zeros(shape, dtype=dtype)
        try:
            self.session.run(None, feeds)
        except Exception as exc:  # onnxruntime raises several unrelated types
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{self.path}: the model loads but cannot run ({detail})") from None

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {self.input_name: inputs} if isinstance(inputs, np.ndarray) else dict(inputs)
        return self.session.run(self.output_names, feeds)
