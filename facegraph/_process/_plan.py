"""Placement: which worker runs which node, how many threads it may use, and where each output goes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .._graph import Graph, OutputRef

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


@dataclass
class WorkerPlan:
    index: int  # 1.. (0 is the supervisor)
    name: str
    nodes: list[str]
    heavy: bool = False
    threads: int = 1
    local: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    remote: dict[str, list[int]] = field(default_factory=dict)
    to_main: dict[str, str] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)


def is_heavy(cls: Any) -> bool:
    """Nodes that run a model or ask for threads share the cores; the rest get one thread."""
    return getattr(cls, "threads", 1) > 1 or "model" in getattr(cls, "params", {})


def plan(graph: Graph, wanted: list[OutputRef], cores: int | None = None) -> tuple[list[WorkerPlan], set[str]]:
    """Workers in start order (the source's first) and the ``node.port`` keys the supervisor collects.

    The source always runs alone, so reading and decoding overlap with everything else
    and the supervisor stays free to watch the workers; other nodes run one per
    process unless they share a ``group:``. ``cores`` is the run's core budget (default: the
    machine's); batch runs side by side divide the machine between them.
    """
    order = graph.order()
    source_id = graph.source().id
    units: dict[str, list[str]] = {source_id: [source_id]}
    for nid in order:
        if nid == source_id:
            continue
        group = graph.nodes[nid].group
        units.setdefault(f"group:{group}" if group else nid, []).append(nid)
    workers = [WorkerPlan(i + 1, name, nodes) for i, (name, nodes) in enumerate(units.items())]
    where = {nid: w.index for w in workers for nid in w.nodes}
    consumers = graph.consumers()
    wanted_keys = {str(r) for r in wanted}
    collected: set[str] = set()
    for w in workers:
        for nid in w.nodes:
            cls = graph.nodes[nid].cls
            w.heavy = w.heavy or is_heavy(cls)
            if not cls.outputs and not cls.is_source():
                w.sinks.append(nid)
                collected.add(f"{nid}.")
            terminal = not consumers.get(nid)
            for port in cls.outputs:
                key = f"{nid}.{port}"
                links = [(c, p) for out, c, p in consumers.get(nid, []) if out == port]
                w.local[key] = [(c, p) for c, p in links if where[c] == w.index]
                w.remote[key] = sorted({where[c] for c, _ in links if where[c] != w.index})
                if key in wanted_keys:
                    w.to_main[key] = "data"
                elif terminal:
                    w.to_main[key] = "done"
                if key in w.to_main:
                    collected.add(key)
        # inputs arriving from other workers are delivered to local consumers too
        for nid in w.nodes:
            for in_port, ref in graph.nodes[nid].inputs.items():
                if where[ref.node] != w.index:
                    w.local.setdefault(str(ref), []).append((nid, in_port))
    cores = cores or os.cpu_count() or 1
    heavy = [w for w in workers if w.heavy]
    share = max(1, cores // max(1, len(heavy)))
    for w in heavy:
        wants = max(getattr(graph.nodes[n].cls, "threads", 1) for n in w.nodes)
        w.threads = min(share, wants) if wants > 1 else share
    return workers, collected


def edge_keys(graph: Graph) -> list[str]:
    """Every ``node.port`` (and ``sink.`` for a sink's completion) in a fixed order: messages name an edge by
    its index here, so a hop unpacks and hashes no strings to route a packet."""
    keys = []
    for nid in graph.order():
        cls = graph.nodes[nid].cls
        keys += [f"{nid}.{port}" for port in cls.outputs]
        if not cls.outputs and not cls.is_source():
            keys.append(f"{nid}.")
    return keys

