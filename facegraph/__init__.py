"""facegraph: a streaming dataflow graph engine for real-time face analysis.

The engine (this package) knows packets, typed ports, nodes, graphs, executors
and the tools around them, and of port types only ``Frame`` and ``Any``. It
imports nothing of the face stack: the built-in face-analysis nodes and the face
port types are a node package that the registry loads
like any plug-in, the way a third party's nodes are loaded.
"""

from __future__ import annotations

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
    "run",
    "value",
]
