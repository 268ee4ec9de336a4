"""Per-node spans as a Chrome trace (chrome://tracing, ui.perfetto.dev): where the time went, frame by frame.

Each worker process is a trace process and each node a thread track in it, so
spans that overlap in time show the pipeline's parallelism; each span is a
complete event (``ph: "X"``) with its frame id in ``args``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._stats import NodeStats


def chrome_trace(nodes: Mapping[str, NodeStats], *, label: str = "facegraph") -> dict[str, Any]:
    """The trace as a dict: ``traceEvents`` with metadata names and one ``X`` event per span.

    Times are microseconds from the earliest span of the run.
    """
    starts = [s.span_start_ns[0] for s in nodes.values() if len(s.span_start_ns)]
    t0 = min(starts) if starts else 0
    workers: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for tid, (nid, stats) in enumerate(nodes.items(), start=1):
        worker = stats.worker or "main"
        if worker not in workers:
            pid = workers[worker] = len(workers) + 1
            name = f"{label}: {worker}" + (f" (pid {stats.pid})" if stats.pid else "")
            events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}})
        pid = workers[worker]
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": nid}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
        for start, dur, frame in zip(stats.span_start_ns, stats.service_ns, stats.span_frame, strict=False):
            events.append({
                "name": nid,
                "cat": stats.type_name or "node",
                "ph": "X",
                "ts": (start - t0) / 1000.0,
                "dur": dur / 1000.0,
                "pid": pid,
                "tid": tid,
                "args": {"frame": int(frame)},
            })
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_trace(path: str | Path, nodes: Mapping[str, NodeStats], *, label: str = "facegraph") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chrome_trace(nodes, label=label)))
    return path
