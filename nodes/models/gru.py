"""``gru``: the GRU temporal head over per-track windows → class probabilities per track.

Loads an ONNX export of ``nets/gru.py::TemporalGRU`` (or any model taking
[N, T, D] windows) with its metadata.json (labels, T, input_dim, output kind);
all due tracks of a frame go through the model in one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegraph import Input, ModelError, Node, Output, Param, register

from ..types import PROBS, WINDOW
from ._modelparams import as_probs, labels_for, missing_models


def _trainable(problem: str) -> str:
    """A GRU file that is not there yet is one the user trains: a note for ``validate``, with the way to make it."""
    if ": file not found" not in problem:
        return problem
    spec = problem.split(": file not found")[0].split(" ", 2)[-1]
    return f"needs model {spec} (not found; make it with facegraph train gru, as in the README's worked example)"


@register("gru")
class GRU(Node):
    """Per-track expression (or any class) probabilities from a window of embeddings."""

    window = Input(WINDOW, doc="seq [N, T, D] per track, from `temporal`")
    probs = Output(PROBS, doc="softmax per track, labels from metadata.json")

    model = Param(str, doc="ONNX export of the GRU head (path or catalogue name), metadata.json beside it")
    providers = Param(str, "auto", doc="ONNX Runtime provider: auto, cpu, cuda, coreml, tensorrt")

    threads = 2
    cost = 1.0  # a GRU over one window per track

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        return [_trainable(line) for line in missing_models(values, ["model"])]

    @classmethod
    def link_requirements(cls, values: dict[str, Any], upstream: dict[str, dict[str, Any]]) -> list[str]:
        """A ``temporal`` feeding this model must cut windows of the model's T, z-scored as in training:
        a mismatch is found when the graph is built, not as wrong numbers later."""
        src = upstream.get("window")
        if src is None or src["type"] != "temporal" or missing_models(values, ["model"]):
            return []
        from ._onnx import load_metadata, resolve_model

        try:
            path = resolve_model(values["model"], what="GRU model")
            meta = load_metadata(path)
        except (ModelError, OSError, ValueError):
            return []  # open() reports an unreadable model in full
        params, node = src["params"], src["id"]
        T = meta.get("T")  # noqa: N806 - the window length is T everywhere in the project
        if T is not None and int(params["length"]) != int(T):
            return [f"{path.parent / 'metadata.json'}: the model takes windows of T={T}, but '{node}' (temporal) "
                    f"has length {params['length']}; set {node}.length to {T}"]
        problems = []
        dim = meta.get("input_dim")
        stats = params.get("stats")
        if meta.get("feature_stats") and not stats:
            problems.append(f"{path}: trained on z-scored windows, but '{node}' (temporal) has no stats; "
                            f"set {node}.stats to {values['model']}")
        elif stats and str(stats).endswith(".npz") and dim is not None:
            from ._windows import load_stats

            try:
                mean, _ = load_stats(stats)
            except ModelError:
                return problems
            if mean.size != int(dim):
                problems.append(f"{stats}: {mean.size}-D feature stats for a model of input_dim {dim} ({path})")
        return problems

    def open(self) -> None:
        from ._onnx import OnnxModel

        self.net = OnnxModel(self.model, providers=self.providers, threads=self.context.threads, what="GRU model")
        meta = self.net.metadata
        shape = self.net.input_shape
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape[1:3]] if len(shape) == 3 else []
        if len(shape) != 3:
            raise ModelError(f"{self.net.path}: a GRU model takes [N, T, D] windows, its input has shape {shape}")
        self.T = meta.get("T", fixed[0])
        self.D = meta.get("input_dim", fixed[1])
        out_shape = self.net.outputs[0].shape
        classes = out_shape[-1] if isinstance(out_shape[-1], int) else len(meta.get("labels", []))
        self.labels = labels_for(meta, classes)
        self.output_kind = meta.get("output")

    def process(self, window: Any) -> dict[str, Any]:
        seq = np.asarray(window.seq, dtype=np.float32)
        n, t, d = seq.shape
        if (self.T is not None and t != self.T) or (self.D is not None and d != self.D):
            raise ModelError(
                f"window has T={t}, D={d} but model {self.net.path} expects T={self.T}, D={self.D}; "
                f"set temporal.length to {self.T} and feed {self.D}-D vectors"
            )
        if n == 0:  # ONNX Runtime aborts on an empty GRU batch
            p = np.zeros((0, len(self.labels)), np.float32)
        else:
            p = as_probs(self.net.run(np.ascontiguousarray(seq))[0], self.output_kind)
        return {"probs": {"p": p, "labels": list(self.labels), "track_id": np.asarray(window.track_id, np.int32)}}
