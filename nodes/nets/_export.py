"""Torch → ONNX export with a dynamic batch axis and a metadata.json beside the file.

Uses the TorchScript exporter (``dynamo=False``): it needs no onnxscript and handles
GRU and plain attention. Every export names its inputs and outputs, so the nodes
can find them whatever the exporter calls them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch


def export(
    model: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    opset: int = 17,
    metadata_name: str | None = None,
) -> Path:
    """Write ``model`` (in eval mode) to ``path`` with batch axis 0 dynamic on every input and output.

    ``metadata`` goes to ``<path>.json`` (``metadata_name`` None) or to that file
    name beside the model, e.g. ``metadata.json``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    modes = {m: m.training for m in model.modules()}  # a wrapper made for export must not flip the wrapped
    model.eval()
    axes = {name: {0: "N"} for name in (*input_names, *output_names)}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy-exporter and GRU batch notices say nothing about this model
            torch.onnx.export(
                model,
                args,
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
    finally:
        for module, mode in modes.items():
            module.training = mode
    if metadata is not None:
        target = path.with_suffix(".json") if metadata_name is None else path.parent / metadata_name
        target.write_text(json.dumps(dict(metadata), indent=2) + "\n")
    return path
