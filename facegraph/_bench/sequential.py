"""The baseline the engine must beat: the same nodes called one after another in a plain loop.

This is what a user writes by hand without the engine: build the nodes, open
them, and for each frame call ``process()`` of each in topological order,
handing outputs on dict by dict. No runners, no validation, no statistics, one
thread of control; so ``fps / sequential_fps`` is what the engine buys.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._graph import Graph
from .._node import RunContext, StopRun
from .._ports import Packet
from .machine import usable_cores
from .summary import effective_warmup, fps_after_warmup

if TYPE_CHECKING:
    from .harness import BenchOptions


def run_sequential(graph: Graph, options: BenchOptions) -> dict[str, Any]:
    """Run the loop over ``options.frames`` frames (all if None); return fps and frame count.

    The loop is alone in its process, so its nodes get every usable core as
    their thread budget, as a hand-written loop's libraries would take them;
    numpy's BLAS pool is held to one thread, as in the process executor's
    workers (an idle OpenBLAS thread spins: left at two threads on the 2-core VM,
    it doubled the loop's CPU per frame, which would flatter the engine).
    ``cpu_ms_per_frame`` is this process's CPU (all threads) from the first frame
    to the last node closed, per frame.
    """
    threads = options.threads or usable_cores() or 1
    context = RunContext(output_dir=options.output_dir, graph_name=graph.name, threads=threads)
    order = graph.order()
    source_id = graph.source().id
    nodes = {nid: graph.nodes[nid].build(context) for nid in order}
    opened = []
    done: list[int] = []
    cpu0: float | None = None
    blas = None
    try:
        for nid in order:
            nodes[nid].open()
            opened.append(nid)
        source = nodes[source_id]
        name = source.source_name
        blas = _one_blas_thread()
        cpu0 = time.process_time()
        t_start = time.monotonic_ns()
        for frame_id, produced in enumerate(source.frames()):
            if options.frames is not None and frame_id >= options.frames:
                break
            t_capture = time.monotonic_ns()
            outputs: dict[str, dict[str, Any]] = {source_id: produced}
            try:
                for nid in order:
                    if nid != source_id:
                        outputs[nid] = _call(nodes[nid], graph, nid, outputs, frame_id, t_capture, name)
            except StopRun:
                break
            done.append(time.monotonic_ns())
        for nid in order:
            if nid != source_id:
                nodes[nid].flush()
    finally:
        for nid in reversed(opened):
            try:
                nodes[nid].close()
            except Exception:  # a close() error must not hide the one that ended the loop
                pass
        cpu = time.process_time() - cpu0 if cpu0 is not None else 0.0
        if blas is not None:
            blas.restore_original_limits()
    warm = effective_warmup(len(done), options.warmup)
    fps = fps_after_warmup(t_start, done, warm)
    return {
        "fps": round(fps, 2),
        "frames": len(done),
        "warmup": warm,
        "threads": threads,
        "cpu_ms_per_frame": round(1000.0 * cpu / len(done), 3) if done else 0.0,
        "blas_one_thread": blas is not None,
    }


def _one_blas_thread() -> Any:
    """Hold numpy's BLAS to one thread for the loop (threadpoolctl, when installed); the limiter, or None."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


def _call(
    node: Any, graph: Graph, nid: str, outputs: dict[str, dict[str, Any]], frame_id: int, t_capture: int, name: str
) -> dict[str, Any]:
    """One node's process() with its inputs wrapped in Packets; {} when a required input is missing."""
    cls = type(node)
    kwargs: dict[str, Any] = {port: None for port in cls.inputs}
    for port, ref in graph.nodes[nid].inputs.items():
        fields = outputs.get(ref.node, {}).get(ref.port)
        if fields is None:
            if not cls.inputs[port].optional:
                return {}
            continue
        kwargs[port] = Packet(frame_id, t_capture, name, fields)
    return node.process(**kwargs) or {}
