"""facegraph's built-in face-analysis nodes, installed as ``facegraph.nodes``.

Rooms: ``types`` (the face port types, public), ``io`` (sources and sinks),
``face`` (detection, landmarks, tracking, pose, alignment, AUs, overlay),
``models`` (nodes that run a trained network, and their loaders), ``nets``
(torch definitions) and ``training`` (trainers, data preparation, evaluation).

Importing this package registers every node type: each module of ``io``,
``face`` and ``models`` whose name has no leading underscore is imported.
``nets`` and ``training`` need torch and define no nodes, so they are skipped.
Node modules import their heavy libraries (OpenCV, PyAV, ONNX Runtime,
mediapipe) inside ``open()`` or lazily, so listing and validating graphs stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

from facegraph._bench.machine import register_provider_facts
from facegraph._results import register_table

from . import types  # noqa: F401  - the face port types register their names first
from .io import _dataframe
from .models import _onnx

NODE_ROOMS = ("io", "face", "models")

for _room in NODE_ROOMS:
    _package = importlib.import_module(f"{__name__}.{_room}")
    for _module in pkgutil.iter_modules(_package.__path__):
        if not _module.name.startswith("_") and not _module.ispkg:
            importlib.import_module(f"{_package.__name__}.{_module.name}")

register_provider_facts(_onnx.provider_facts, packages=_onnx.SPEED_PACKAGES)
register_table(_dataframe.FaceTable())  # Results.to_pandas() of face graphs: the CSV sink's rows

from ._analyze import analyze, analyze_images  # noqa: E402  - also facegraph.analyze (the facegraph.api group)

__all__ = ["analyze", "analyze_images"]
