"""Helpers for testing nodes and graphs: ``run_node``, a synthetic video, a list sink, an executor fixture.

def test_my_node():
    out = run_node(MyNode(scale=2), {"frame": {"image": img}})
    assert out["frame"]["image"].shape == (2 * h, 2 * w, 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._builtin import SyntheticVideo
from ._graph import Graph
from ._node import Node, RunContext
from ._ports import Packet
from ._run import Result, every_executor, run
from ._runner import NodeRunner, Skip, open_node

__all__ = ["SyntheticVideo", "collect", "executors", "run_node", "run_node_frames", "synthetic_graph"]


def run_node(
    node: Node,
    inputs: Mapping[str, Mapping[str, Any] | None],
    *,
    frame_id: int = 0,
    t_capture: int = 0,
    source: str = "test",
    context: RunContext | None = None,
) -> dict[str, dict[str, Any]]:
    """Open ``node``, feed it one frame of ``inputs`` (port → fields; None = nothing), close it.

    Returns the output port → fields it emitted (ports it skipped are absent).
    Outputs are validated against their port types, as in a real run.
    """
    return run_node_frames(node, [inputs], frame_id=frame_id, t_capture=t_capture, source=source, context=context)[0]


def run_node_frames(
    node: Node,
    frames: Iterable[Mapping[str, Mapping[str, Any] | None]],
    *,
    frame_id: int = 0,
    t_capture: int = 0,
    source: str = "test",
    context: RunContext | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """Like run_node, for a sequence of frames through one opened node (stateful nodes)."""
    if context is not None:
        node.context = context
    open_node(node)
    results: list[dict[str, dict[str, Any]]] = []
    try:
        frames = list(frames)
        ports = sorted({p for frame in frames for p in frame}) or list(type(node).inputs)
        runner = NodeRunner(node, ports)
        for i, frame in enumerate(frames):
            fid = frame_id + i
            emitted: list[Any] = []
            for port in ports:
                fields = frame.get(port)
                item = Skip(fid, t_capture, source) if fields is None else Packet(fid, t_capture, source, dict(fields))
                if fields is not None and port in type(node).inputs:
                    item.fields = type(node).inputs[port].type.validate(fields, where=f"input '{port}'")
                emitted.extend(runner.feed(port, item))
            results.append({p: item.fields for p, item in emitted if isinstance(item, Packet)})
        node.flush()
    finally:
        node.close()
    return results


def synthetic_graph(*chain: str, frames: int = 10, width: int = 64, height: int = 48, **params: Any) -> Graph:
    """A synthetic source followed by a chain of single-input nodes (``"passthrough"``, ...)."""
    g = Graph("synthetic")
    prev = g.add("synthetic", id="src", frames_total=frames, width=width, height=height, **params).frame
    for i, type_name in enumerate(chain):
        prev = g.add(type_name, id=f"n{i}", value=prev).out
    return g


def collect(graph: Graph, executor: str = "inline", **kwargs: Any) -> list[Result]:
    """Run a graph to the end and return every frame's Result (the list sink)."""
    return list(run(graph, executor=executor, **kwargs))


def executors() -> list[str]:
    """The executors a graph test runs under: every one; RunError when one cannot load, never a silent skip."""
    return every_executor()


def results_equal(a: list[Result], b: list[Result]) -> bool:
    """Same frames, same ports, identical values: what executor equivalence means."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.frame_id != y.frame_id or x.packets.keys() != y.packets.keys():
            return False
        if not all(x.packets[k].same_as(y.packets[k]) for k in x.packets):
            return False
    return True
