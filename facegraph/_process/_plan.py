"""Placement: which worker runs which node, how many threads it may use, and where each output goes.

Nodes are placed by what they cost, in milliseconds of one core per frame: what the
node class declares (``Node.cost``, or ``Node.estimate_cost(params)`` where it depends
on the parameters or the machine), or what a previous run measured (``costs``).

* The source runs alone, so reading and decoding overlap with everything else.
* A ``group:`` is kept exactly as written, and a node with ``restart:`` runs alone (a
  crash restarts only it); neither takes in other nodes.
* A heavy node (``HEAVY_MS`` or more) gets a worker of its own.
* A light node joins the worker that feeds it most of its inputs (the one placed last
  among equals): it runs right after what it needs, without a hop. When that worker
  would go beyond its fair share (the graph's total cost ÷ the cores), the node goes to
  the worker of a heavy node it feeds instead, if that one has room (an overlay next to
  the video encoder it feeds, say). A light node fed only by the source or by a closed
  worker joins one shared worker of such nodes.
* A node that costs nothing (``sink.display`` without a screen) is a light node like the
  others: it runs as a no-op call inside its feeder's worker, with no process of its own.
* Threads: each worker gets the share of the cores its load is of the graph's, at least
  1 and at most what its nodes can use (``Node.threads``). numpy's BLAS pool is one
  thread in every worker: the nodes' matrix products are tiny, and OpenBLAS's idle
  threads spin (on the 2-core VM its second thread alone burnt about 7 ms of CPU per
  frame of the default AU graph).

* Priority: when there are more workers than cores, the workers whose load is at most ``BEHIND_SHARE`` of the
  heaviest one's run at ``BEHIND_NICE`` (the heaviest, and any near it, at the normal priority). The heaviest
  worker sets the pace of the pipeline; at equal priority the scheduler splits the cores evenly among the
  runnable workers, so it was descheduled in the middle of its frames (default AU graph, 2 cores: FaceMesh's
  worker busy 85 % of the time in its nodes, frames queuing 40 ms in front of it, 129-134 FPS; with the others
  at nice 4-8, 147-172 FPS in the same minutes). The others run ahead while frames are in flight and take the
  cores whenever the heaviest waits. Under Linux's autogroups niceness only orders the run's own processes
  against each other; ``renice=False`` (``--no-renice``) keeps every worker at the caller's priority.

``placement="separate"`` gives the old layout, one worker per node (groups aside):
for transport tests and benchmarks, or to isolate a node that may crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .._graph import Graph, OutputRef

#: a node needing this many milliseconds of a core per frame or more gets a worker of its own
HEAVY_MS = 1.0
PLACEMENTS = ("cost", "separate")

#: workers at most this share of the heaviest worker's load run behind it, at this niceness (more workers than cores)
BEHIND_SHARE = 0.75
BEHIND_NICE = 4

#: thread pools sized to the worker's budget before its first import
POOL_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
#: BLAS pools: one thread everywhere (see the module docstring)
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
THREAD_ENV = POOL_ENV + BLAS_ENV


@dataclass
class WorkerPlan:
    index: int  # 1.. (0 is the supervisor)
    name: str
    nodes: list[str]
    heavy: bool = False
    threads: int = 1
    why: str = ""  # source, group, restart, heavy, light, separate
    load_ms: float = 0.0  # the sum of its nodes' costs
    nice: int = 0  # added to the worker's niceness: BEHIND_NICE for a worker behind the heaviest
    local: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    remote: dict[str, list[int]] = field(default_factory=dict)
    to_main: dict[str, str] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)
    costs: dict[str, tuple[float, str]] = field(default_factory=dict)  # node → (ms per frame, where from)

    def describe(self) -> dict[str, Any]:
        """The worker as the bench and the run's statistics report it."""
        return {
            "worker": self.name,
            "nodes": list(self.nodes),
            "why": self.why,
            "threads": self.threads,
            "load_ms": round(self.load_ms, 3),
            "nice": self.nice,
            "costs": {n: {"ms": round(c, 3), "from": src} for n, (c, src) in self.costs.items()},
        }


def node_costs(graph: Graph, measured: dict[str, float] | None = None) -> dict[str, tuple[float, str]]:
    """Every node's cost (ms of a core per frame) and where it comes from: ``measured`` or ``declared``."""
    out: dict[str, tuple[float, str]] = {}
    for nid, spec in graph.nodes.items():
        if measured and nid in measured:
            out[nid] = (max(0.0, float(measured[nid])), "measured")
            continue
        cls = spec.cls
        try:
            values = cls.check_params(spec.params)
        except Exception:  # the graph was checked before; a node that cannot say keeps its class figure
            values = dict(spec.params)
        out[nid] = (max(0.0, float(cls.estimate_cost(values))), "declared")
    return out


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def place(
    graph: Graph,
    *,
    placement: str = "cost",
    costs: dict[str, float] | None = None,
    cores: int | None = None,
    renice: bool = True,
) -> list[WorkerPlan]:
    """The workers (start order, the source's first) with their nodes, costs, loads and threads."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    cores = cores or usable_cores()
    cost = node_costs(graph, costs)
    order = graph.order()
    source_id = graph.source().id
    consumers = graph.consumers()
    workers: list[WorkerPlan] = [WorkerPlan(1, source_id, [source_id], why="source")]
    where: dict[str, WorkerPlan] = {source_id: workers[0]}
    groups: dict[str, WorkerPlan] = {}
    closed = {1}  # workers that take in no other node: the source's, groups, restartable nodes

    def new(name: str, why: str) -> WorkerPlan:
        w = WorkerPlan(len(workers) + 1, name, [], why=why)
        workers.append(w)
        return w

    def put(nid: str, w: WorkerPlan) -> None:
        w.nodes.append(nid)
        w.costs[nid] = cost[nid]
        w.load_ms += cost[nid][0]
        where[nid] = w

    # first what has a place of its own: groups, restartable nodes, heavy nodes (everything, if separate)
    light = []
    for nid in order:
        if nid == source_id:
            continue
        spec = graph.nodes[nid]
        if spec.group:
            w = groups.get(spec.group)
            if w is None:
                w = groups[spec.group] = new(f"group:{spec.group}", "group")
                closed.add(w.index)
        elif spec.restart:
            w = new(nid, "restart")
            closed.add(w.index)
        elif placement == "separate":
            w = new(nid, "separate")
        elif cost[nid][0] >= HEAVY_MS:
            w = new(nid, "heavy")
        else:
            light.append(nid)
            continue
        put(nid, w)

    # then the light nodes, in order: with what feeds them, unless that worker would go beyond its share of
    # the cores; then with a heavy node they feed, where that one has room
    fair = sum(c for c, _ in cost.values()) / cores
    shared: WorkerPlan | None = None
    for nid in light:
        ms = cost[nid][0]
        feeders: dict[int, int] = {}
        for ref in graph.nodes[nid].inputs.values():
            fw = where[ref.node]
            if fw.index not in closed:
                feeders[fw.index] = feeders.get(fw.index, 0) + 1
        best = workers[max(feeders, key=lambda i: (feeders[i], i)) - 1] if feeders else None
        if best is None or best.load_ms + ms > fair:
            fed = [where[c] for _, c, _ in consumers.get(nid, []) if c in where]
            fed = [w for w in fed if w.why == "heavy" and w.load_ms + ms <= fair]
            if fed:
                best = min(fed, key=lambda w: (w.load_ms, w.index))
        if best is None:
            if shared is None:
                shared = new(nid, "light")
            best = shared
        put(nid, best)

    workers[0].costs[source_id] = cost[source_id]
    workers[0].load_ms = cost[source_id][0]
    _share_threads(graph, workers, cores)
    if renice:
        _order_priorities(workers, cores)
    return workers


def _order_priorities(workers: list[WorkerPlan], cores: int) -> None:
    """More workers than cores: those well below the heaviest's load run behind it (see the module docstring)."""
    if len(workers) <= cores:
        return
    top = max(w.load_ms for w in workers)
    for w in workers:
        if top > 0 and w.load_ms <= BEHIND_SHARE * top:
            w.nice = BEHIND_NICE


def _share_threads(graph: Graph, workers: list[WorkerPlan], cores: int) -> None:
    """Each worker its share of the cores by load (at least 1, at most what its nodes can use); cores left
    over go to the workers that can use them, largest remainder first."""
    total = sum(w.load_ms for w in workers) or 1.0
    raw: dict[int, float] = {}
    wants: dict[int, int] = {}
    for w in workers:
        w.heavy = w.why == "heavy" or w.load_ms >= HEAVY_MS
        wants[w.index] = min(cores, max(max(1, int(getattr(graph.nodes[n].cls, "threads", 1))) for n in w.nodes))
        raw[w.index] = cores * w.load_ms / total
        w.threads = min(wants[w.index], max(1, int(raw[w.index])))
    left = cores - sum(w.threads for w in workers)
    while left > 0:
        more = [w for w in workers if w.threads < wants[w.index]]
        if not more:
            return
        best = max(more, key=lambda w: (raw[w.index] - w.threads, -w.index))
        best.threads += 1
        left -= 1


def plan(
    graph: Graph,
    wanted: list[OutputRef],
    *,
    placement: str = "cost",
    costs: dict[str, float] | None = None,
    cores: int | None = None,
    renice: bool = True,
) -> tuple[list[WorkerPlan], set[str]]:
    """Workers in start order (the source's first), with their routes, and the ``node.port`` keys the
    supervisor collects (see the module docstring for where nodes go)."""
    workers = place(graph, placement=placement, costs=costs, cores=cores, renice=renice)
    where = {nid: w.index for w in workers for nid in w.nodes}
    consumers = graph.consumers()
    wanted_keys = {str(r) for r in wanted}
    collected: set[str] = set()
    for w in workers:
        for nid in w.nodes:
            cls = graph.nodes[nid].cls
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
    return workers, collected


def format_placement(workers: list[dict[str, Any]], frames: int = 0) -> str:
    """The placement as lines for people: one per worker, its nodes with their costs (and, after a run of
    ``frames`` frames, the CPU each process spent per frame)."""
    lines = []
    for w in workers:
        parts = [f"{n} {c['ms']:.2f} ms ({c['from']})" for n, c in w.get("costs", {}).items()]
        used = f"  [used {1000 * w['cpu_s'] / frames:.2f} ms CPU/frame]" if frames and "cpu_s" in w else ""
        nice = f" (nice +{w['nice']})" if w.get("nice") else ""
        if w["why"] == "supervisor":
            lines.append(f"  {'supervisor':<14} {'':<8} {'':<10} {'':<13}{used}")
            continue
        lines.append(
            f"  {w['worker']:<14} {w['why']:<8} {w['threads']} thread{'s' if w['threads'] != 1 else ' '}  "
            f"load {w['load_ms']:5.2f} ms{nice}: {', '.join(parts) or ', '.join(w['nodes'])}{used}"
        )
    return "\n".join(lines)


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
