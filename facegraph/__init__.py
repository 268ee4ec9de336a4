"""facegraph: a streaming dataflow graph engine for real-time face analysis.

The engine (this package) knows packets, typed ports, nodes, graphs, executors
and the tools around them, and of port types only ``Frame`` and ``Any``. It
imports nothing of the face stack: the built-in face-analysis nodes and the face
port types are a node package that the registry loads
like any plug-in, the way a third party's nodes are loaded.
"""

from __future__ import annotations

from typing import Any

from . import _builtin  # noqa: F401  - registers the engine's own nodes
from ._errors import (
    FacegraphError,
    GraphError,
    ModelError,
    NodeFailure,
    ParamError,
    PortValueError,
    RunError,
    SinkError,
    SourceError,
)
from ._graph import Graph, NodeHandle, NodeSpec, OutputRef
from ._node import Input, Node, Output, Param, RunContext, Source, StopRun
from ._ports import (
    ANY,
    FRAME,
    Field,
    Packet,
    PortType,
    array,
    port_type,
    value,
)
from ._registry import node_class, node_types, register
from ._results import Results, register_table
from ._run import Result, Run, RunOptions, run
from ._stats import NodeStats, RunStats

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "FRAME",
    "FacegraphError",
    "Field",
    "Graph",
    "GraphError",
    "Input",
    "ModelError",
    "Node",
    "NodeFailure",
    "NodeHandle",
    "NodeSpec",
    "NodeStats",
    "Output",
    "OutputRef",
    "Packet",
    "Param",
    "ParamError",
    "PortType",
    "PortValueError",
    "Result",
    "Results",
    "Run",
    "RunContext",
    "RunError",
    "RunOptions",
    "RunStats",
    "SinkError",
    "Source",
    "SourceError",
    "StopRun",
    "array",
    "node_class",
    "node_types",
    "port_type",
    "register",
    "register_table",
    "run",
    "value",
]


def __getattr__(name: str) -> Any:
    """Functions node packages add to ``facegraph`` (``facegraph.analyze``), found in the ``facegraph.api``
    entry-point group on first use: the engine names no package that provides them (see the README's design)."""
    if not name.startswith("_"):
        from importlib.metadata import entry_points

        for ep in entry_points(group="facegraph.api"):
            if ep.name == name:
                value = ep.load()
                globals()[name] = value
                return value
    raise AttributeError(f"module 'facegraph' has no attribute '{name}'")
