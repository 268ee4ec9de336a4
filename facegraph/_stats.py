"""Per-node statistics, recorded the same way by every executor and merged at the end."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_SPANS = 200_000  # bounds memory on long runs; percentiles use what was kept


@dataclass
class NodeStats:
    """Counts and timings of one node. Times are nanoseconds (monotonic clock)."""

    node: str
    type_name: str = ""
    packets_in: int = 0
    packets_out: int = 0
    skipped: int = 0
    drops: int = 0
    latency_ns: array = field(default_factory=lambda: array("q"))
    # per process() call: start, service time, time waited for input, frame id, flat; one array so that
    # recording a call touches one object (it runs at every node for every frame)
    spans: array = field(default_factory=lambda: array("q"))
    worker: str = ""
    pid: int = 0
    cpu_s: float = 0.0  # the CPU of the node's whole process (a worker's figure, on each of its nodes)
    peak_rss_mb: float = 0.0
    #: CPU of this process (all its threads) inside the node's process() calls: what placement calls its cost
    cpu_ns: int = 0
    calls: int = 0

    def record(self, start: int, end: int, waited: int, frame_id: int) -> None:
        if len(self.spans) < 4 * MAX_SPANS:
            self.spans.extend((start, end - start, waited if waited > 0 else 0, frame_id))

    @property
    def span_start_ns(self) -> array:
        return self.spans[0::4]

    @property
    def service_ns(self) -> array:
        return self.spans[1::4]

    @property
    def wait_ns(self) -> array:
        return self.spans[2::4]

    @property
    def span_frame(self) -> array:
        return self.spans[3::4]

    def record_latency(self, ns: int) -> None:
        if len(self.latency_ns) < MAX_SPANS:
            self.latency_ns.append(ns)

    def to_dict(self) -> dict[str, Any]:
        """Raw figures, msgpack/JSON-friendly, for shipping between processes."""
        return {
            "node": self.node,
            "type_name": self.type_name,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "skipped": self.skipped,
            "drops": self.drops,
            "latency_ns": self.latency_ns.tobytes(),
            "spans": self.spans.tobytes(),
            "worker": self.worker,
            "pid": self.pid,
            "cpu_s": self.cpu_s,
            "peak_rss_mb": self.peak_rss_mb,
            "cpu_ns": self.cpu_ns,
            "calls": self.calls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeStats:
        arrays = {}
        for key in ("latency_ns", "spans"):
            arr = array("q")
            arr.frombytes(data[key])
            arrays[key] = arr
        plain = {k: v for k, v in data.items() if k not in arrays}
        return cls(**plain, **arrays)

    @property
    def cpu_ms_per_call(self) -> float:
        """Mean CPU milliseconds per process() call (0 when it was never called)."""
        return self.cpu_ns / self.calls / 1e6 if self.calls else 0.0

    def summary(self) -> dict[str, Any]:
        """Means and percentiles in milliseconds."""
        out: dict[str, Any] = {
            "type": self.type_name,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "skipped": self.skipped,
            "drops": self.drops,
            "service_ms_mean": _ms(self.service_ns, "mean"),
            "service_ms_p95": _ms(self.service_ns, 95),
            "wait_ms_mean": _ms(self.wait_ns, "mean"),
            "worker": self.worker,
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }
        if len(self.latency_ns):
            out["latency_ms"] = {p: _ms(self.latency_ns, q) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        return out


def _ms(values: array, how: Any) -> float:
    if not len(values):
        return 0.0
    arr = np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(1)
    ns = float(arr.mean()) if how == "mean" else float(np.percentile(arr, how))
    return round(ns / 1e6, 4)


@dataclass
class RunStats:
    """Everything measured in one run."""

    graph: str = ""
    executor: str = ""
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    #: CPU seconds of every process of the run while frames flowed (workers from their start signal to their
    #: end, the supervisor or inline loop likewise); model loading and imports are left out
    cpu_s: float = 0.0
    #: where the nodes ran: one dict per worker (name, nodes, threads, load_ms, why), in start order
    placement: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = array("q")
        for stats in self.nodes.values():
            lat.extend(stats.latency_ns)
        return {
            "graph": self.graph,
            "executor": self.executor,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.frames_out / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "latency_ms": {p: _ms(lat, q) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
            "nodes": {n: s.summary() for n, s in self.nodes.items()},
        }
