"""The harness's arithmetic: warm-up cut, FPS, latency percentiles, per-node figures.

Pure functions over recorded numbers (nanoseconds on the monotonic clock), so
they can be checked against hand-computed values without running anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._stats import NodeStats, RunStats

PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99))


@dataclass(frozen=True)
class Delivery:
    """One result as the caller saw it: which frame, when it was captured, when it came back."""

    frame_id: int
    t_capture: int
    t_delivered: int


@dataclass
class Usage:
    """CPU time and peak resident memory of one process over a run."""

    name: str
    pid: int = 0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    nodes: list[str] = field(default_factory=list)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (linear interpolation, as numpy); 0.0 for no values."""
    arr = np.asarray(list(values), dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else 0.0


def mean(values: Iterable[float]) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    return float(arr.mean()) if arr.size else 0.0


def effective_warmup(delivered: int, warmup: int) -> int:
    """The warm-up actually cut: the asked-for one, or a fifth of a run too short to have it."""
    warmup = max(0, warmup)
    return warmup if delivered > warmup else delivered // 5


def fps_after_warmup(t_start_ns: int, done_ns: Sequence[int], warmup: int, drain: int = 0) -> float:
    """Frames finished after the warm-up ÷ time from the end of the last warm-up frame to the last one counted.

    ``done_ns`` are the times frames finished, in order; with no warm-up the
    clock starts at ``t_start_ns`` (the start of the run). ``drain``: the last
    frames left out, those that finish while the graph empties (the frames in
    flight when the source ran dry: nothing new competes with them for the cores,
    so counting them flatters a deep pipeline). With both ends left out, the
    window starts and ends with the graph equally full.
    """
    n = len(done_ns)
    if n <= warmup or n == 0:
        return 0.0
    last = n - 1 - drain if n - 1 - drain > warmup else n - 1
    t0 = done_ns[warmup - 1] if warmup > 0 else t_start_ns
    span = done_ns[last] - t0
    return (last + 1 - warmup) / (span / 1e9) if span > 0 else 0.0


def latency_percentiles(latency_ns: Iterable[int]) -> dict[str, float]:
    values = list(latency_ns)
    return {name: round(percentile(values, q) / 1e6, 3) for name, q in PERCENTILES}


def sink_latencies(nodes: Mapping[str, NodeStats], sinks: Iterable[str], first_frame: int) -> dict[int, int]:
    """frame_id → end-to-end latency (ns) of frames from ``first_frame`` on, the slowest sink per frame.

    Sinks record a latency on each call, alongside the span that carries its
    frame id; when the two lists disagree in length (an executor recording them
    differently) the frame ids are taken from the end of the span list.
    """
    per_frame: dict[int, int] = {}
    for nid in sinks:
        stats = nodes.get(nid)
        if stats is None or not len(stats.latency_ns):
            continue
        lat = list(stats.latency_ns)
        frames = list(stats.span_frame)[-len(lat):] if len(stats.span_frame) >= len(lat) else []
        if not frames:
            frames = list(range(first_frame, first_frame + len(lat)))
        for frame_id, ns in zip(frames, lat, strict=False):
            if frame_id >= first_frame:
                per_frame[frame_id] = max(ns, per_frame.get(frame_id, 0))
    return dict(sorted(per_frame.items()))


def delivery_latencies(deliveries: Sequence[Delivery], warmup: int) -> dict[int, int]:
    """frame_id → now − t_capture at result delivery, after the warm-up: for graphs without sinks."""
    return {d.frame_id: d.t_delivered - d.t_capture for d in deliveries[warmup:]}


def node_summary(stats: NodeStats, first_frame: int, usage: Usage | None = None) -> dict[str, Any]:
    """Service and wait times of the spans from ``first_frame`` on; counts over the whole run."""
    spans = stats.spans
    keep = [i for i in range(0, len(spans), 4) if spans[i + 3] >= first_frame]
    service = [spans[i + 1] for i in keep]
    wait = [spans[i + 2] for i in keep]
    is_source = stats.packets_in == 0 and stats.packets_out > 0
    cpu_s = stats.cpu_s or (usage.cpu_s if usage else 0.0)
    rss = stats.peak_rss_mb or (usage.peak_rss_mb if usage else 0.0)
    return {
        "type": stats.type_name,
        "service_ms_mean": round(mean(service) / 1e6, 4),
        "service_ms_p95": round(percentile(service, 95) / 1e6, 4),
        "wait_ms_mean": round(mean(wait) / 1e6, 4),
        "drops": int(stats.drops),
        "packets": int(stats.packets_out if is_source else stats.packets_in),
        "skipped": int(stats.skipped),
        "cpu_s": round(float(cpu_s), 3),
        "peak_rss_mb": round(float(rss), 1),
        "worker": stats.worker or (usage.name if usage else ""),
    }


def worker_usage(nodes: Mapping[str, NodeStats], main: Usage) -> dict[str, Usage]:
    """Group nodes by the worker that ran them; nodes with no worker ran in this (the main) process.

    An executor reports a worker's CPU and peak memory on each of its nodes, so
    the largest figure among them is the worker's.
    """
    workers: dict[str, Usage] = {main.name: Usage(main.name, main.pid, main.cpu_s, main.peak_rss_mb)}
    for nid, stats in nodes.items():
        name = stats.worker or main.name
        usage = workers.setdefault(name, Usage(name, stats.pid))
        usage.nodes.append(nid)
        if name != main.name or stats.cpu_s or stats.peak_rss_mb:
            usage.cpu_s = max(usage.cpu_s, stats.cpu_s)
            usage.peak_rss_mb = max(usage.peak_rss_mb, stats.peak_rss_mb)
            usage.pid = usage.pid or stats.pid
    return workers


def summarise(
    stats: RunStats,
    deliveries: Sequence[Delivery],
    *,
    t_start_ns: int,
    warmup: int,
    sinks: Iterable[str],
    main: Usage,
    drain: int = 0,
) -> dict[str, Any]:
    """One run's figures, JSON-ready, plus ``latency_series`` (frame_id, ms) for the plot."""
    warm = effective_warmup(len(deliveries), warmup)
    first_frame = deliveries[warm].frame_id if len(deliveries) > warm else 1 << 62
    sinks = [s for s in sinks if s in stats.nodes]
    per_frame = sink_latencies(stats.nodes, sinks, first_frame) if sinks else {}
    latency_from = "sinks"
    if not per_frame:
        per_frame = delivery_latencies(deliveries, warm)
        latency_from = "delivery"
    workers = worker_usage(stats.nodes, main)
    by_node = {nid: workers[s.worker or main.name] for nid, s in stats.nodes.items()}
    dropped = max(int(stats.dropped), sum(int(s.drops) for s in stats.nodes.values()))
    wall = (deliveries[-1].t_delivered - t_start_ns) / 1e9 if deliveries else stats.wall_s
    return {
        "executor": stats.executor,
        "fps": round(fps_after_warmup(t_start_ns, [d.t_delivered for d in deliveries], warm, drain), 2),
        "latency_ms": latency_percentiles(per_frame.values()),
        "latency_from": latency_from,
        "frames": len(deliveries),
        "warmup": warm,
        "dropped": dropped,
        "wall_s": round(wall, 3),
        "nodes": {nid: node_summary(s, first_frame, by_node[nid]) for nid, s in stats.nodes.items()},
        "workers": {
            w.name: {"pid": w.pid, "cpu_s": round(w.cpu_s, 3), "peak_rss_mb": round(w.peak_rss_mb, 1), "nodes": w.nodes}
            for w in workers.values()
        },
        "latency_series": [(fid, round(ns / 1e6, 3)) for fid, ns in per_frame.items()],
    }
