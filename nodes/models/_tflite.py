"""Running the .tflite models bundled in the mediapipe wheel with a plain TFLite / LiteRT interpreter.

mediapipe's task APIs want ``.task`` bundles that the wheel does not ship, and
``solutions.*`` fuse detection and landmarks into one graph; a bare interpreter
keeps the two separable (landmarks from any detector's boxes) and lets us batch
all faces of a frame. Interpreters are tried in order: ``ai_edge_litert``
(``pip install ai-edge-litert``, Google's LiteRT, works with numpy<2),
``tflite_runtime``, ``tensorflow.lite``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from facegraph import ModelError

INSTALL_HINT = "pip install ai-edge-litert"


def mediapipe_model(relative: str) -> Path:
    """Path of a model file inside the installed mediapipe package (found without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"mediapipe/{relative}: mediapipe is not installed (pip install mediapipe==0.10.21)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelError(f"{path}: model file missing from the installed mediapipe (expected in 0.10.21)")
    return path


def _interpreter_class():
    for module, attr in (
        ("ai_edge_litert.interpreter", "Interpreter"),
        ("tflite_runtime.interpreter", "Interpreter"),
        ("tensorflow.lite", "Interpreter"),
    ):
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError:
            continue
    return None


def interpreter_available() -> bool:
    return any(
        importlib.util.find_spec(name) is not None for name in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    )


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (Python's own stderr is left alone)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TfliteModel:
    """One TFLite model, float input, with the batch dimension resized on demand."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        self.path = Path(path)
        interpreter = _interpreter_class()
        if interpreter is None:
            raise ModelError(f"{self.path}: no TFLite interpreter installed; {INSTALL_HINT}")
        try:
            with _quiet_native_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2
                self.interpreter = interpreter(model_path=str(self.path), num_threads=max(1, int(threads)))
                self.interpreter.allocate_tensors()
        except Exception as exc:  # the interpreters raise ValueError / RuntimeError for bad files
            raise ModelError(f"{self.path}: cannot load as a TFLite model ({str(exc).splitlines()[0]})") from None
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self._batch = self.input_shape[0]

    def _batch_of(self, n: int) -> None:
        if n != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [n, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self._outputs = self.interpreter.get_output_details()
            self._batch = n

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a float32 batch [B, ...]; returns the outputs, each with the batch as first axis."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n = batch.shape[0]
        self._batch_of(n)
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]).reshape(n, -1) for o in self._outputs]

    def run_filled(self, n: int, fill: Callable[[np.ndarray], None]) -> list[np.ndarray]:
        """``run`` on a batch of ``n`` that ``fill(tensor)`` writes straight into the interpreter's input
        tensor (float32 [n, ...]): no batch array of its own, no copy into the interpreter."""
        self._batch_of(n)
        tensor = self.interpreter.tensor(self._input["index"])()
        fill(tensor)
        del tensor  # the interpreter refuses to run while a view of its buffers is alive
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]).reshape(n, -1) for o in self._outputs]
