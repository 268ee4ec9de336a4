"""The bench harness's arithmetic: percentiles, warm-up cut, FPS, per-node and per-worker figures.

Everything here is fed hand-made statistics with known numbers; nothing depends on wall-clock speed.
"""

from __future__ import annotations

import json
from array import array

import pytest

from facegraph import NodeStats, RunStats
from facegraph._bench.summary import (
    Delivery,
    Usage,
    effective_warmup,
    fps_after_warmup,
    latency_percentiles,
    node_summary,
    percentile,
    sink_latencies,
    summarise,
    worker_usage,
)
from facegraph._bench.trace import chrome_trace

MS = 1_000_000  # ns


def make_stats(node: str, frames: list[int], service_ms: list[float], *, wait_ms: float = 0.0, start_ms: float = 0.0,
               latency_ms: list[float] | None = None, source: bool = False, worker: str = "", pid: int = 0,
               cpu_s: float = 0.0, rss: float = 0.0) -> NodeStats:
    stats = NodeStats(node, "fake", worker=worker, pid=pid, cpu_s=cpu_s, peak_rss_mb=rss)
    t = int(start_ms * MS)
    for frame, ms in zip(frames, service_ms, strict=True):
        stats.record(t, t + int(ms * MS), int(wait_ms * MS), frame)
        t += int(10 * MS)
    for ms in latency_ms or []:
        stats.record_latency(int(ms * MS))
    if source:
        stats.packets_out = len(frames)
    else:
        stats.packets_in = len(frames)
    return stats


def test_percentile_of_known_list():
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([], 50) == 0.0
    lat = latency_percentiles([v * MS for v in values])
    assert lat == {"p50": 50.5, "p95": 95.05, "p99": 99.01}


def test_fps_from_known_timestamps():
    done = [k * 1_000_000_000 for k in range(1, 11)]  # one frame per second
    assert fps_after_warmup(0, done, 0) == pytest.approx(1.0)
    assert fps_after_warmup(0, done, 2) == pytest.approx(1.0)
    # warm-up frames are slow: 2 frames in 5 s, then 4 frames in 1 s
    done = [2_500_000_000, 5_000_000_000, 5_250_000_000, 5_500_000_000, 5_750_000_000, 6_000_000_000]
    assert fps_after_warmup(0, done, 2) == pytest.approx(4.0)
    assert fps_after_warmup(0, done, 0) == pytest.approx(1.0)
    assert fps_after_warmup(0, done[:2], 2) == 0.0
    # a deep pipeline drains fast at the end: 4 frames in 4 s, then the 3 left in flight within 0.3 s
    done = [1e9, 2e9, 3e9, 4e9, 4.1e9, 4.2e9, 4.3e9]
    assert fps_after_warmup(0, done, 1, drain=3) == pytest.approx(1.0)
    assert fps_after_warmup(0, done, 1) == pytest.approx(6 / 3.3)  # what counting the drain would claim
    assert fps_after_warmup(0, done, 1, drain=10) == pytest.approx(6 / 3.3)  # too short to leave it out


def test_warmup_is_shortened_for_short_runs():
    assert effective_warmup(100, 20) == 20
    assert effective_warmup(20, 20) == 4
    assert effective_warmup(3, 0) == 0


def test_node_summary_leaves_warmup_frames_out():
    # frames 0, 1 cost 100 ms (warm-up); frames 2..5 cost 2, 4, 6, 8 ms
    stats = make_stats("n", [0, 1, 2, 3, 4, 5], [100, 100, 2, 4, 6, 8], wait_ms=1.5)
    out = node_summary(stats, first_frame=2)
    assert out["service_ms_mean"] == pytest.approx(5.0)
    assert out["service_ms_p95"] == pytest.approx(7.7)
    assert out["wait_ms_mean"] == pytest.approx(1.5)
    assert out["packets"] == 6
    everything = node_summary(stats, first_frame=0)
    assert everything["service_ms_mean"] == pytest.approx(220 / 6, rel=1e-3)


def test_sink_latency_takes_slowest_sink_per_frame_after_warmup():
    a = make_stats("a", [0, 1, 2, 3], [1, 1, 1, 1], latency_ms=[50, 10, 20, 30])
    b = make_stats("b", [0, 1, 2, 3], [1, 1, 1, 1], latency_ms=[60, 15, 18, 40])
    per_frame = sink_latencies({"a": a, "b": b}, ["a", "b"], first_frame=1)
    assert per_frame == {1: 15 * MS, 2: 20 * MS, 3: 40 * MS}


def test_summarise_a_known_run():
    deliveries = [Delivery(i, i * 100 * MS, (i * 100 + 30) * MS) for i in range(10)]
    src = make_stats("src", list(range(10)), [1.0] * 10, source=True)
    mid = make_stats("mid", list(range(10)), [50, 50] + [10] * 8, wait_ms=2)
    sink = make_stats("sink", list(range(10)), [5] * 10, latency_ms=[900, 800] + [20, 40] * 4)
    stats = RunStats(graph="g", executor="inline", frames_in=10, frames_out=10,
                     nodes={"src": src, "mid": mid, "sink": sink})
    main = Usage("main", 123, cpu_s=0.5, peak_rss_mb=80.0)
    out = summarise(stats, deliveries, t_start_ns=0, warmup=2, sinks=["sink"], main=main)
    # 8 frames delivered after frame 1's delivery at 130 ms, the last at 930 ms
    assert out["fps"] == pytest.approx(8 / 0.8)
    assert out["frames"] == 10 and out["warmup"] == 2 and out["dropped"] == 0
    assert out["latency_from"] == "sinks"
    assert out["latency_ms"]["p50"] == pytest.approx(30.0)
    assert out["latency_ms"]["p99"] == pytest.approx(40.0)
    assert out["nodes"]["mid"]["service_ms_mean"] == pytest.approx(10.0)
    assert out["nodes"]["mid"]["wait_ms_mean"] == pytest.approx(2.0)
    assert out["nodes"]["src"]["packets"] == 10
    assert out["nodes"]["sink"]["cpu_s"] == 0.5 and out["nodes"]["sink"]["peak_rss_mb"] == 80.0
    assert out["workers"]["main"]["nodes"] == ["src", "mid", "sink"]
    assert [f for f, _ in out["latency_series"]] == list(range(2, 10))
    for key in ("service_ms_mean", "service_ms_p95", "wait_ms_mean", "drops", "packets", "cpu_s", "peak_rss_mb"):
        assert key in out["nodes"]["mid"]


def test_summarise_without_sinks_measures_at_delivery():
    deliveries = [Delivery(i, i * 10 * MS, (i * 10 + 3 + i) * MS) for i in range(6)]
    src = make_stats("src", list(range(6)), [1.0] * 6, source=True)
    stats = RunStats(executor="inline", nodes={"src": src})
    out = summarise(stats, deliveries, t_start_ns=0, warmup=1, sinks=[], main=Usage("main"))
    assert out["latency_from"] == "delivery"
    # latencies after warm-up: 4, 5, 6, 7, 8 ms
    assert out["latency_ms"]["p50"] == pytest.approx(6.0)


def test_drops_are_counted_once():
    src = make_stats("src", [0, 1], [1, 1], source=True)
    src.drops = 3
    stats = RunStats(executor="process", dropped=3, nodes={"src": src})
    out = summarise(stats, [Delivery(0, 0, 1), Delivery(1, 1, 2)], t_start_ns=0, warmup=0, sinks=[],
                    main=Usage("main"))
    assert out["dropped"] == 3
    assert out["nodes"]["src"]["drops"] == 3


def test_workers_group_nodes_and_keep_their_figures():
    nodes = {
        "src": make_stats("src", [0], [1], source=True),
        "det": make_stats("det", [0], [1], worker="w1", pid=11, cpu_s=2.0, rss=300.0),
        "lmk": make_stats("lmk", [0], [1], worker="w1", pid=11, cpu_s=2.0, rss=300.0),
        "au": make_stats("au", [0], [1], worker="w2", pid=12, cpu_s=1.25, rss=200.0),
    }
    workers = worker_usage(nodes, Usage("main", 10, cpu_s=0.25, peak_rss_mb=90.0))
    assert set(workers) == {"main", "w1", "w2"}
    assert workers["w1"].nodes == ["det", "lmk"] and workers["w1"].cpu_s == 2.0 and workers["w1"].pid == 11
    assert workers["w2"].peak_rss_mb == 200.0
    assert workers["main"].nodes == ["src"] and workers["main"].cpu_s == 0.25
    assert node_summary(nodes["au"], 0, workers["w2"])["cpu_s"] == 1.25


def test_chrome_trace_structure():
    nodes = {
        "src": make_stats("src", [0, 1], [1, 1], start_ms=5, source=True),
        "det": make_stats("det", [0, 1], [4, 3], start_ms=6.5, worker="w1", pid=11),
    }
    trace = chrome_trace(nodes)
    json.dumps(trace)  # writable as is
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == 4
    first = spans[0]
    assert first["name"] == "src" and first["ts"] == 0.0 and first["dur"] == pytest.approx(1000.0)
    det = [e for e in spans if e["name"] == "det"]
    assert det[0]["ts"] == pytest.approx(1500.0) and det[0]["dur"] == pytest.approx(4000.0)
    assert det[1]["ts"] == pytest.approx(11500.0) and det[1]["args"] == {"frame": 1}
    assert det[0]["pid"] != first["pid"] and det[0]["tid"] != first["tid"]  # one track per node and worker
    meta = [e for e in trace["traceEvents"] if e["ph"] == "M"]
    names = {e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert names == {"src", "det"}
    assert all({"ts", "dur", "pid", "tid", "name", "ph"} <= set(e) for e in spans)


def test_empty_arrays_do_not_break_the_summary():
    stats = NodeStats("n", "fake", spans=array("q"))
    assert node_summary(stats, 0)["service_ms_mean"] == 0.0
    assert chrome_trace({"n": stats})["traceEvents"][0]["ph"] == "M"
