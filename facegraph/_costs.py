"""Measured node costs: what a run found each node to cost, kept for the placement of the next run.

Every executor records the CPU each node spends inside ``process()`` (all threads
of its process, so a node's own thread pool counts). After a run, ``measured_costs``
turns that into milliseconds per frame; ``save_costs`` writes them with the graph's
shape to a ``costs.json`` beside the run's outputs, and ``load_costs`` hands them back
for a run of the same graph (same node ids, types and parameters; the source may
differ), so the process executor places nodes by what they cost here rather than by
what their classes declare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._graph import Graph
from ._stats import RunStats

FILE_NAME = "costs.json"


def measured_costs(stats: RunStats) -> dict[str, float]:
    """node id → CPU ms per frame it was handed (sources aside); nodes that saw no frame are left out."""
    out = {}
    for nid, st in stats.nodes.items():
        if st.packets_in > 0:
            out[nid] = round(st.cpu_ns / st.packets_in / 1e6, 4)
    return out


def graph_shape(graph: Graph) -> dict[str, list[Any]]:
    """What must match for costs to carry over: every non-source node's type and parameters."""
    source = graph.source().id
    return {
        nid: [spec.type, json.dumps(spec.params, sort_keys=True, default=str)]
        for nid, spec in graph.nodes.items()
        if nid != source
    }


def save_costs(path: str | Path, graph: Graph, stats: RunStats) -> Path | None:
    """Write the run's measured costs (and the placement it used); None when the run measured nothing."""
    costs = measured_costs(stats)
    if not costs:
        return None
    path = Path(path)
    data = {
        "graph": graph.name,
        "executor": stats.executor,
        "frames": stats.frames_out,
        "shape": graph_shape(graph),
        "costs_ms": costs,
        "placement": stats.placement,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def load_costs(path: str | Path, graph: Graph) -> dict[str, float] | None:
    """The costs a previous run of this graph measured, or None (no file, unreadable, another graph)."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("shape") != graph_shape(graph):
            return None
        costs = {str(k): float(v) for k, v in data["costs_ms"].items() if k in graph.nodes}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return costs or None
