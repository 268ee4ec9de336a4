"""facegraph's built-in face-analysis nodes, installed as ``facegraph.nodes``.

Importing this package registers every node type. Each node module imports its
heavy libraries (OpenCV, PyAV, ONNX Runtime, mediapipe) inside ``open()`` or
lazily, so listing and validating graphs stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and not _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")
