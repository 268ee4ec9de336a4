"""The bench end to end on graphs of known synthetic cost: runs, the sequential loop, pacing, the CLI.

Assertions are on counts, keys and structure, never on how fast this machine is.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from facegraph import ANY, Graph, Input, Node, Output, register
from facegraph._bench.harness import BenchOptions, bench, run_once, to_json_ready
from facegraph._bench.sequential import run_sequential
from facegraph._builtin import SyntheticVideo
from facegraph._node import RunContext
from facegraph._runner import SourceRunner
from facegraph.cli import main

TOP_KEYS = {"fps", "latency_ms", "nodes", "machine", "versions", "executor", "frames", "dropped"}
NODE_KEYS = {"service_ms_mean", "service_ms_p95", "wait_ms_mean", "drops", "packets", "cpu_s", "peak_rss_mb"}


@register("test.bench_sink")
class CountingSink(Node):
    """A sink (no outputs): records end-to-end latency in the runner; counts what it got."""

    value = Input(ANY)
    seen: list[int] = []  # noqa: RUF012 - shared on purpose, inspected by the tests

    def process(self, value: Any) -> None:
        CountingSink.seen.append(value.frame_id)


@register("test.bench_odd")
class OddOnly(Node):
    """Emits only on odd frames: downstream nodes must be skipped on even ones."""

    value = Input(ANY)
    out = Output(ANY)

    def process(self, value: Any) -> dict[str, Any] | None:
        return {"out": value.fields} if value.frame_id % 2 else None


def chain(frames: int = 30, *, sink: bool = False, odd: bool = False, ms: float = 0.0) -> Graph:
    g = Graph("bench-test")
    prev = g.add("synthetic", id="src", frames_total=frames, width=32, height=24).frame
    prev = g.add("delay", id="work", value=prev, ms=ms).out
    if odd:
        prev = g.add("test.bench_odd", id="odd", value=prev).out
    if sink:
        g.add("test.bench_sink", id="sink", value=prev)
    return g.check()


def test_inline_run_counts_frames_and_cuts_warmup(tmp_path):
    result = run_once(chain(30, sink=True), "inline", BenchOptions(warmup=5, output_dir=tmp_path), tmp_path)
    s = result.summary
    assert s["frames"] == 30 and s["warmup"] == 5 and s["dropped"] == 0
    assert s["latency_from"] == "sinks"
    assert [f for f, _ in s["latency_series"]] == list(range(5, 30))
    assert s["nodes"]["work"]["packets"] == 30 and s["nodes"]["sink"]["packets"] == 30
    assert NODE_KEYS <= set(s["nodes"]["work"])
    assert s["fps"] > 0 and s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["p99"]


def test_max_frames_limits_the_run(tmp_path):
    result = run_once(chain(50), "inline", BenchOptions(frames=12, warmup=2, output_dir=tmp_path), tmp_path)
    assert result.summary["frames"] == 12
    assert result.summary["latency_from"] == "delivery"


def test_sequential_loop_skips_nodes_whose_input_is_missing(tmp_path):
    CountingSink.seen.clear()
    out = run_sequential(chain(10, sink=True, odd=True), BenchOptions(warmup=2, output_dir=tmp_path))
    assert out["frames"] == 10 and out["warmup"] == 2 and out["fps"] > 0
    assert CountingSink.seen == [1, 3, 5, 7, 9]


def test_sequential_loop_honours_frames(tmp_path):
    out = run_sequential(chain(40), BenchOptions(frames=7, warmup=0, output_dir=tmp_path))
    assert out["frames"] == 7


class FakeClock:
    """Stands in for the time module inside the runner: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.now = 0

    def monotonic_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += round(seconds * 1e9)


def test_paced_source_sleeps_to_ticks_and_drops_missed_frames(monkeypatch):
    import facegraph._runner as runner_mod

    clock = FakeClock()
    monkeypatch.setattr(runner_mod, "time", clock)
    node = SyntheticVideo("src", RunContext(extra={"pace_fps": 100}), frames_total=10, width=16, height=16, fps=10)
    src = SourceRunner(node)
    assert src.live and not SourceRunner(SyntheticVideo("s")).live

    def source_index(emissions):  # which source frame came out: timestamp = i / fps
        return round(emissions[0][1].fields["timestamp"] * 10)

    first = src.next_frame()
    assert source_index(first) == 0 and clock.now == 0
    clock.now = 25_000_000  # the graph took 25 ms: ticks at 10 and 20 ms passed; frame 1 is lost
    assert source_index(src.next_frame()) == 2 and src.stats.drops == 1 and clock.now == 25_000_000
    clock.now = 30_000_000  # on time for tick 30 ms
    assert source_index(src.next_frame()) == 3 and clock.now == 30_000_000
    second = src.next_frame()  # early: sleeps to the 40 ms tick
    assert source_index(second) == 4 and clock.now == 40_000_000
    assert [e[0][1].frame_id for e in (first, second)] == [0, 3]
    assert src.stats.drops == 1 and src.stats.packets_out == 4


def test_every_executor_reports_every_node(executor, tmp_path):  # executor: every one available (plugin)
    s = run_once(chain(15), executor, BenchOptions(warmup=3, output_dir=tmp_path), tmp_path).summary
    assert s["executor"] == executor and s["frames"] == 15 and s["warmup"] == 3
    assert set(s["nodes"]) == {"src", "work"} and s["nodes"]["work"]["packets"] == 15
    assert sorted(n for w in s["workers"].values() for n in w["nodes"]) == ["src", "work"]


def test_realtime_reports_drop_share(executor, tmp_path):
    """A 5 ms node behind a 1000 FPS paced source cannot keep up: frames must be dropped and counted."""
    options = BenchOptions(warmup=0, realtime=1000.0, output_dir=tmp_path)
    s = run_once(chain(20, ms=5.0), executor, options, tmp_path).summary
    assert s["realtime_fps"] == 1000.0
    assert s["dropped"] > 0 and s["frames"] >= 1
    assert s["frames"] + s["dropped"] == 20
    assert s["dropped_pct"] == pytest.approx(100 * s["dropped"] / 20, abs=0.01)


def test_realtime_does_not_count_drops_while_warming_up(executor, tmp_path):
    """Frames lost before the warm-up frames have entered are not counted, whichever rule lost them (the pace's
    ticks, or the process executor's in-flight limit, which turned away 13 warm-up frames of webcam_au before)."""
    options = BenchOptions(warmup=40, realtime=1000.0, output_dir=tmp_path)
    s = run_once(chain(40, ms=5.0), executor, options, tmp_path).summary
    assert s["dropped"] == 0 and s["frames"] < 40  # frames were lost, all of them during the warm-up


def test_bench_report_with_sequential_has_speedup(tmp_path):
    report = bench(chain(20), BenchOptions(warmup=2, executors=["inline"], sequential=True, output_dir=tmp_path))
    out = to_json_ready(report)
    assert TOP_KEYS | {"sequential_fps", "speedup"} <= set(out)
    # speedup is rounded to 3 decimals
    assert out["speedup"] == pytest.approx(out["fps"] / out["sequential_fps"], rel=1e-2, abs=1e-3)
    assert "latency_series" not in out and not any(k.startswith("_") for k in out)
    json.dumps(out)


def test_cli_bench_writes_json_trace_and_plot(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: synth\n"
        "nodes:\n"
        "  src: {type: synthetic, params: {frames_total: 40, width: 32, height: 24}}\n"
        "  slow: {type: delay, inputs: {value: src.frame}, params: {ms: 0.2}}\n"
    )
    out, trace = tmp_path / "out.json", tmp_path / "trace.json"
    rc = main(["bench", str(graph), "--frames", "20", "--warmup", "4", "--executor", "inline", "--json", str(out),
               "--trace", str(trace), "--output", str(tmp_path / "o"), "--sequential", "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert TOP_KEYS | {"sequential_fps", "speedup"} <= set(data)
    assert set(data["latency_ms"]) == {"p50", "p95", "p99"}
    assert set(data["nodes"]) == {"src", "slow"} and NODE_KEYS <= set(data["nodes"]["slow"])
    assert data["frames"] == 20 and data["executor"] == "inline"
    events = json.loads(trace.read_text())["traceEvents"]
    assert sum(e["ph"] == "X" and e["name"] == "slow" for e in events) == 20


def test_cli_bench_all_executors_lists_runs(tmp_path):
    pytest.importorskip("matplotlib")
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: synth\nnodes:\n  src: {type: synthetic, params: {frames_total: 12, width: 32, height: 24}}\n"
        "  p: {type: passthrough, inputs: {value: src.frame}}\n"
    )
    out, png = tmp_path / "out.json", tmp_path / "plot.png"
    rc = main(["bench", str(graph), "--executor", "all", "--warmup", "2", "--json", str(out), "--plot", str(png),
               "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from facegraph._run import available_executors

    if len(available_executors()) > 1:
        assert data["runs"][0]["executor"] == "process" == data["executor"]
    else:
        assert data["executor"] == "inline"


def test_cli_bench_rejects_bad_numbers(tmp_path, capsys):
    graph = tmp_path / "g.yaml"
    graph.write_text("name: s\nnodes:\n  src: {type: synthetic}\n")
    assert main(["bench", str(graph), "--frames", "0"]) == 2
    assert "--frames" in capsys.readouterr().err


def test_frames_lost_during_warmup_are_not_counted(monkeypatch):
    import facegraph._runner as runner_mod

    clock = FakeClock()
    monkeypatch.setattr(runner_mod, "time", clock)
    context = RunContext(extra={"pace_fps": 100, "pace_warmup": 2})
    src = SourceRunner(SyntheticVideo("src", context, frames_total=20, width=16, height=16))
    src.next_frame()  # frame 0 at 0 ms
    clock.now = 35_000_000  # two frames lost before frame 1 entered: warm-up, not counted
    src.next_frame()
    assert src.stats.drops == 0
    clock.now = 65_000_000  # ticks at 40, 50 and 60 ms: two more lost before frame 2, counted
    src.next_frame()
    assert src.stats.drops == 2 and src.stats.packets_out == 3
