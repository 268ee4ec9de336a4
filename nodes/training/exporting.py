"""Checked exports: every ONNX file is run on real inputs and compared with torch before it is called done.

The max absolute difference goes into the metadata, so a node (or a person) can see
how faithful the file is. CoreML (``.mlpackage``; coremltools converts on Linux too)
and TensorRT FP16 engines are further targets of the same ``facegraph export`` family.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError

ONNX_TOLERANCE = 1e-3


def onnx_parity(path: Path, torch_fn: Callable[..., Any], inputs: Sequence[np.ndarray],
                tolerance: float = ONNX_TOLERANCE) -> float:
    """Run ``path`` with ONNX Runtime and ``torch_fn`` on the same inputs; the max abs difference (raises above)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ascontiguousarray(x) for i, x in zip(session.get_inputs(), inputs, strict=True)}
    got = session.run(None, feeds)
    with torch.no_grad():
        want = torch_fn(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    diff = max(float(np.max(np.abs(g - w.numpy()))) if g.size else 0.0 for g, w in zip(got, want, strict=True))
    if not diff <= tolerance:
        raise TrainingError(f"{path}: ONNX output differs from torch by {diff:.3g} (> {tolerance}); export rejected")
    return diff


def export_onnx_checked(export_fn: Callable[[], Path], torch_fn: Callable[..., Any],
                        inputs: Sequence[np.ndarray], what: str) -> tuple[Path, float]:
    """Call ``export_fn`` (which writes the file and its metadata), then check parity and record it."""
    try:
        path = export_fn()
    except TrainingError:
        raise
    except Exception as exc:  # the exporter's own errors are long: keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"--export onnx: {what} cannot be exported to ONNX ({first})") from None
    diff = onnx_parity(path, torch_fn, inputs)
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["onnx_max_abs_diff"] = diff
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return path, diff


def export_coreml(module: Any, example: np.ndarray | tuple[np.ndarray, ...], path: Path,
                  input_name: str | tuple[str, ...] = "image", metadata: dict[str, Any] | None = None,
                  fp16: bool = True) -> Path:
    """A traced torch module → ``.mlpackage`` (needs coremltools: the ``[coreml]`` extra).

    ``example`` and ``input_name`` are one array and name, or a tuple of each for a module
    with several inputs (the FHOG AU net: image and fhog). ``metadata`` (labels, input size,
    normalisation) goes into the package's user-defined metadata as JSON strings, so the file
    alone tells a node how to feed it. ``fp16`` is CoreML's default compute precision; ``False``
    keeps float32 (the FHOG AU net: one 4592-wide dot product per AU, unmeasurable here in fp16).
    """
    examples = example if isinstance(example, tuple) else (example,)
    names = input_name if isinstance(input_name, tuple) else (input_name,)
    if len(examples) != len(names):
        raise ValueError(f"{len(examples)} example inputs for {len(names)} input names")
    try:
        import coremltools as ct
    except ImportError:
        raise TrainingError("--export coreml needs coremltools: pip install 'facegraph[coreml]'") from None
    import torch

    module.eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, tuple(torch.from_numpy(e) for e in examples))
    try:
        model = ct.convert(traced, inputs=[ct.TensorType(name=n, shape=e.shape) for n, e in zip(names, examples,
                                                                                                strict=True)],
                           convert_to="mlprogram",
                           compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"--export coreml: conversion failed ({first})") from None
    for key, value in (metadata or {}).items():
        model.user_defined_metadata[str(key)] = json.dumps(value)
    path = path.with_suffix(".mlpackage")
    model.save(str(path))
    return path


def export_tensorrt(onnx_path: Path, out: Path | None = None, fp16: bool = True) -> Path:
    """An ONNX file → a serialised TensorRT engine (needs an NVIDIA GPU and the ``[tensorrt]`` extra)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TrainingError("facegraph export trt needs TensorRT and an NVIDIA GPU: "
                            "pip install 'facegraph[tensorrt]'") from None
    if not onnx_path.is_file():
        raise TrainingError(f"{onnx_path}: no such ONNX file")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        raise TrainingError(f"{onnx_path}: TensorRT cannot parse it ({parser.get_error(0)})")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        fixed = [d if d > 0 else 1 for d in shape]
        profile.set_shape(tensor.name, fixed, [8 if j == 0 and shape[0] < 0 else d for j, d in enumerate(fixed)],
                          [32 if j == 0 and shape[0] < 0 else d for j, d in enumerate(fixed)])
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise TrainingError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    out = out or onnx_path.with_suffix(".engine")
    out.write_bytes(bytes(engine))
    return out
