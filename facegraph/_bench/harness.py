"""Run a graph under an executor the way the bench measures it: results timed at delivery,
this process's CPU and memory taken around the run, the figures summarised after warm-up."""

from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._graph import Graph
from .._node import RunContext
from .._run import Run, RunOptions, available_executors
from .._stats import RunStats
from .summary import Delivery, Usage, summarise


@dataclass
class BenchOptions:
    """What ``facegraph bench`` was asked for."""

    frames: int | None = None
    warmup: int = 20
    executors: list[str] = field(default_factory=lambda: ["process"])
    realtime: float | None = None
    sequential: bool = False
    output_dir: Path = field(default_factory=lambda: Path("facegraph-out") / "bench")
    max_in_flight: int | None = None
    threads: int | None = None  # thread budget of the inline executor's nodes; None: every usable core
    placement: str = "cost"  # process executor: "cost" or "separate" (one worker per node)
    costs: dict[str, float] | None = None  # measured costs for placement (None: the nodes' declared ones)
    renice: bool = True  # process executor: workers well below the heaviest's load run behind it
    costs_from: str = "declared"  # where ``costs`` came from, for the report


@dataclass
class BenchRun:
    """One executor's run: the raw statistics and deliveries, and their summary."""

    executor: str
    stats: RunStats
    deliveries: list[Delivery]
    t_start_ns: int
    summary: dict[str, Any]


def sink_ids(graph: Graph) -> list[str]:
    """Nodes without outputs: they record end-to-end latency."""
    return [nid for nid, spec in graph.nodes.items() if not spec.cls.outputs]


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    t = os.times()
    return t.user + t.system


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / (1024 * 1024)


def resolve_executors(asked: str) -> list[str]:
    """``all`` → every executor importable here, process first; else the one asked for."""
    if asked != "all":
        return [asked]
    names = available_executors()
    return sorted(names, key=lambda n: (n != "process", n))


def run_once(graph: Graph, executor: str, options: BenchOptions, output_dir: Path) -> BenchRun:
    """Run ``graph`` once under ``executor``; time each result as it comes back."""
    extra: dict[str, Any] = {}
    if options.realtime:
        extra["pace_fps"] = float(options.realtime)
        extra["pace_warmup"] = options.warmup  # frames lost while warming up are not counted
    from .machine import usable_cores

    threads = options.threads or usable_cores() or 1  # the process executor sets each worker's own budget
    context = RunContext(output_dir=output_dir, graph_name=graph.name, threads=threads, extra=dict(extra))
    # no data handed back (outputs=[]): like ``facegraph run``, the bench takes only each frame's completion
    run_options = RunOptions(context=context, max_frames=options.frames, extra=dict(extra), outputs=[],
                             placement=options.placement, costs=options.costs, renice=options.renice)
    if options.max_in_flight:
        run_options.max_in_flight = options.max_in_flight
    run = Run(graph.copy(), executor, run_options)
    deliveries: list[Delivery] = []
    cpu0 = cpu_seconds()
    t_start = time.monotonic_ns()
    for result in run:
        deliveries.append(Delivery(result.frame_id, result.t_capture, time.monotonic_ns()))
    main = Usage(f"main ({executor})" if executor != "inline" else "main", os.getpid(), cpu_seconds() - cpu0,
                 peak_rss_mb())
    in_flight = int(run.options.extra.get("max_in_flight") or 0)  # the process executor's, as its source admitted
    summary = summarise(
        run.stats, deliveries, t_start_ns=t_start, warmup=options.warmup, sinks=sink_ids(graph), main=main,
        drain=in_flight,
    )
    if in_flight:
        summary["max_in_flight"] = in_flight
    summary["cpu_ms_per_frame"] = round(1000.0 * run.stats.cpu_s / len(deliveries), 3) if deliveries else 0.0
    if run.stats.placement:
        summary["placement"] = run.stats.placement
        summary["costs_from"] = options.costs_from
    if options.realtime:
        summary["realtime_fps"] = float(options.realtime)
        offered = summary["frames"] - summary["warmup"] + summary["dropped"]
        summary["dropped_pct"] = round(100.0 * summary["dropped"] / offered, 2) if offered else 0.0
    return BenchRun(executor, run.stats, deliveries, t_start, summary)


def bench(graph: Graph, options: BenchOptions) -> dict[str, Any]:
    """Every asked-for executor, then (if asked) the sequential loop; the report's dict.

    The top level holds the process executor's figures when it ran (else the
    first executor's); ``runs`` lists all of them when there were several.
    """
    from .machine import describe_machine, package_versions
    from .sequential import run_sequential

    runs: list[BenchRun] = []
    several = len(options.executors) > 1
    for name in options.executors:
        out = options.output_dir / name if several else options.output_dir
        out.mkdir(parents=True, exist_ok=True)
        runs.append(run_once(graph, name, options, out))
    main_run = next((r for r in runs if r.executor == "process"), runs[0])
    report: dict[str, Any] = {"graph": graph.name, **copy.deepcopy(main_run.summary)}
    if options.sequential:
        out = options.output_dir / "sequential"
        out.mkdir(parents=True, exist_ok=True)
        seq = run_sequential(graph, replace(options, output_dir=out))
        report["sequential_fps"] = seq["fps"]
        report["sequential_cpu_ms_per_frame"] = seq["cpu_ms_per_frame"]
        report["sequential"] = seq
        report["speedup"] = round(report["fps"] / seq["fps"], 3) if seq["fps"] else 0.0
        for r in runs:
            r.summary["speedup"] = round(r.summary["fps"] / seq["fps"], 3) if seq["fps"] else 0.0
    report["machine"] = describe_machine(graph)
    report["versions"] = package_versions()
    if several:
        report["runs"] = [r.summary for r in runs]
    report["_runs"] = runs  # raw figures for the plot and the trace; dropped from the JSON
    return report


def to_json_ready(report: dict[str, Any]) -> dict[str, Any]:
    """The report without raw figures and per-frame series."""
    out = {k: v for k, v in report.items() if not k.startswith("_")}
    out.pop("latency_series", None)
    if "runs" in out:
        out["runs"] = [{k: v for k, v in r.items() if k != "latency_series"} for r in out["runs"]]
    if "sequential" in out:
        out["sequential"] = {k: v for k, v in out["sequential"].items() if k != "latency_series"}
    return out
