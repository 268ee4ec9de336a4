"""Running a graph: the public ``run()``, its results, and the inline executor."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import GraphError, RunError
from ._graph import Graph, OutputRef
from ._node import RunContext, StopRun
from ._ports import Packet
from ._results import Results
from ._runner import EOS, Emission, EndOfStream, NodeRunner, Skip, SourceRunner, open_node
from ._stats import RunStats

log = logging.getLogger(__name__)


@dataclass
class Result:
    """One frame's results: the packets of the graph's leaf outputs (or those asked for)."""

    frame_id: int
    t_capture: int
    source: str
    packets: dict[str, Packet] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Packet:
        return self.packets[key]

    def get(self, key: str) -> Packet | None:
        return self.packets.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.packets


#: frames inside the graph at once when the run does not say (``max_in_flight`` None). A live source drops
#: the frames that do not fit, so a few keep its latency low; a file's frames wait instead, so more of them keep
#: every worker busy: throughput is at most in-flight ÷ latency (the default AU graph on 2 cores: 4 in flight
#: held it near 4 ÷ 30 ms whatever the cores could do; 16 and 32 in flight ran it about 1.3× and 1.5× faster).
#: A file's limit shrinks where that many frames would hold more than FILE_IN_FLIGHT_BYTES of shared memory.
LIVE_IN_FLIGHT = 4
FILE_IN_FLIGHT = 32
FILE_IN_FLIGHT_BYTES = 256 << 20


@dataclass
class RunOptions:
    """How to run: shared by every executor."""

    context: RunContext = field(default_factory=RunContext)
    max_frames: int | None = None
    outputs: list[OutputRef] | None = None  # None: the leaf outputs; []: none (results carry no packets)
    max_in_flight: int | None = None  # None: LIVE_IN_FLIGHT for a live source, FILE_IN_FLIGHT for a file
    validate: bool = True
    on_start: Callable[[int | None], None] | None = None  # called with the source's frame count
    extra: dict[str, Any] = field(default_factory=dict)
    #: process executor: "cost" places nodes by cost (heavy alone, light fused with what feeds them),
    #: "separate" runs every node in its own worker; ``group:`` wins either way
    placement: str = "cost"
    #: measured costs (node id → ms of a core per frame) that replace the nodes' declared ones in placement
    costs: dict[str, float] | None = None
    #: process executor, more workers than cores: the workers well below the heaviest's load run behind it
    #: (a higher niceness), so the one that sets the pace is not descheduled in the middle of its frames
    renice: bool = True


EXECUTORS: dict[str, str] = {
    "inline": "facegraph._run:execute_inline",
    "process": "facegraph._process:execute_process",
}


def _executor(name: str) -> Callable[[Graph, RunOptions, RunStats], Iterator[Result]]:
    import importlib

    if name not in EXECUTORS:
        raise GraphError(f"unknown executor '{name}'; choose from {', '.join(EXECUTORS)}")
    module, attr = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def available_executors() -> list[str]:
    """Executors that load here; one that does not is logged with its reason (the bench then names the rest)."""
    names = []
    for name in EXECUTORS:
        try:
            _executor(name)
        except (ImportError, AttributeError) as exc:
            log.warning("executor '%s' cannot load: %s: %s", name, type(exc).__name__, exc)
            continue
        names.append(name)
    return names


def every_executor() -> list[str]:
    """Every executor facegraph has; RunError naming the one that cannot load (tests must not lose one silently)."""
    for name in EXECUTORS:
        try:
            _executor(name)
        except (ImportError, AttributeError) as exc:
            raise RunError(
                f"executor '{name}' cannot load ({type(exc).__name__}: {exc}); "
                "the executor fixture runs every executor and will not skip one"
            ) from None
    return list(EXECUTORS)


class Run:
    """An iterable run: yields a Result per frame; ``stats`` is filled in when it ends."""

    def __init__(self, graph: Graph, executor: str, options: RunOptions) -> None:
        self.graph = graph
        self.executor = executor
        self.options = options
        self.stats = RunStats(graph=graph.name, executor=executor)
        self._fn = _executor(executor)

    def __iter__(self) -> Iterator[Result]:
        start = time.perf_counter()
        try:
            for result in self._fn(self.graph, self.options, self.stats):
                self.stats.frames_out += 1
                yield result
        finally:
            self.stats.wall_s = time.perf_counter() - start

    def collect(self) -> Results:
        """Run to the end, keeping every frame's results; ``.to_pandas()`` on them gives the graph's table.

        Unless the run was told which outputs to hand back, the outputs the table is made
        from (for face graphs: what the CSV sink is fed) are collected beside the leaf outputs.
        """
        from ._results import Results, table_outputs

        if self.options.outputs is None:
            extra = table_outputs(self.graph)
            if extra:
                self.options.outputs = list(dict.fromkeys([*self.graph.leaf_outputs(), *extra]))
        return Results(self.graph, self)

    def wait(self) -> RunStats:
        """Run to the end, discarding per-frame results; return the statistics."""
        for _ in self:
            pass
        return self.stats


def run(
    graph: Graph | str | Path,
    source: Any = None,
    *,
    executor: str = "inline",
    max_frames: int | None = None,
    output_dir: str | Path | None = None,
    params: dict[str, Any] | None = None,
    outputs: list[str] | None = None,
    **options: Any,
) -> Run:
    """Run a graph; iterate the returned Run for per-frame results.

    ``source`` replaces the graph's source (``--source``); ``params`` maps
    ``"node.param"`` to a value (``--set``); ``outputs`` picks the ``"node.port"``
    results to hand back (default: every output no node consumes).
    """
    graph = Graph.load(graph) if isinstance(graph, (str, Path)) else graph.copy()
    if source is not None:
        set_source(graph, source)
    for key, value in (params or {}).items():
        node_id, _, name = key.partition(".")
        graph.set_param(node_id, name, value)
    graph.check()
    context = options.pop("context", None) or RunContext(graph_name=graph.name)
    if output_dir is not None:
        context.output_dir = Path(output_dir)
    refs = [OutputRef.parse(o) for o in outputs] if outputs else None
    opts = RunOptions(context=context, max_frames=max_frames, outputs=refs, **options)
    return Run(graph, executor, opts)


def set_source(graph: Graph, source: Any) -> None:
    """Point the graph's source node at ``source`` (its ``source_param``); a ``Path`` becomes its text."""
    import os

    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    spec = graph.source()
    key = getattr(spec.cls, "source_param", "source")
    if key not in spec.cls.params:
        raise GraphError(f"source node '{spec.id}' ({spec.type}) takes no '{key}' parameter", file=graph.file)
    graph.set_param(spec.id, key, source)


def execute_inline(graph: Graph, options: RunOptions, stats: RunStats) -> Iterator[Result]:
    """All nodes in this process, in topological order, one frame at a time. Deterministic."""
    order = graph.order()
    source_id = graph.source().id
    consumers = graph.consumers()
    wanted = set(graph.leaf_outputs() if options.outputs is None else options.outputs)
    nodes = {nid: graph.nodes[nid].build(options.context) for nid in order}
    src = SourceRunner(nodes[source_id])
    runners = {
        nid: NodeRunner(nodes[nid], list(graph.nodes[nid].inputs), options.validate)
        for nid in order
        if nid != source_id
    }
    opened: list[str] = []
    cpu0: float | None = None
    try:
        for nid in order:
            open_node(nodes[nid])
            opened.append(nid)
        if options.on_start:
            options.on_start(nodes[source_id].total_frames())
        cpu0 = time.process_time()
        count = 0
        stopping = False
        while not stopping and (options.max_frames is None or count < options.max_frames):
            emissions = src.next_frame()
            if emissions is None:
                break
            count += 1
            stats.frames_in += 1
            first = emissions[0][1] if emissions else None
            collected: dict[str, Packet] = {}
            try:
                _route(source_id, emissions, consumers, runners, wanted, collected)
            except StopRun:
                stopping = True
            if first is not None:
                yield Result(first.frame_id, first.t_capture, first.source, collected)
        src.close()
        try:
            _route(source_id, [(p, EOS) for p in type(nodes[source_id]).outputs], consumers, runners, wanted, {})
        except StopRun:
            pass
    finally:
        # close() always runs for every node that opened, sinks included, so partial outputs are finished
        for nid in reversed(opened):
            _quiet_close(src.close if nid == source_id else runners[nid].close)
        if cpu0 is not None:
            stats.cpu_s = time.process_time() - cpu0
        stats.nodes = {nid: src.stats if nid == source_id else runners[nid].stats for nid in order}


def _route(
    origin: str,
    emissions: list[Emission],
    consumers: dict[str, list[tuple[str, str, str]]],
    runners: dict[str, NodeRunner],
    wanted: set[OutputRef],
    collected: dict[str, Packet],
) -> None:
    queue: deque[tuple[str, list[Emission]]] = deque([(origin, emissions)])
    while queue:
        node_id, items = queue.popleft()
        for port, item in items:
            if isinstance(item, Packet) and OutputRef(node_id, port) in wanted:
                collected[f"{node_id}.{port}"] = item
            for out_port, consumer, in_port in consumers.get(node_id, []):
                if out_port != port:
                    continue
                produced = runners[consumer].feed(in_port, item)
                if produced:
                    queue.append((consumer, produced))


def _quiet_close(fn: Callable[[], None]) -> None:
    import logging

    try:
        fn()
    except Exception as exc:  # close() errors must not hide the error that ended the run; one line (--debug: more)
        log = logging.getLogger("facegraph")
        log.error("error while closing a node: %s: %s", type(exc).__name__, exc)
        log.debug("traceback of the error while closing", exc_info=True)


__all__ = ["EOS", "EndOfStream", "Result", "Results", "Run", "RunOptions", "Skip", "run"]
