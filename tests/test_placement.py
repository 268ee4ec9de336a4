"""Cost-aware placement: heavy nodes alone, light ones fused with what feeds them, group: wins, measured costs.

The placement is checked as a plan (which worker holds which node, with how many
threads) and, where it matters, in a real run (which nodes shared a process). No
timing is asserted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _process_checks import children, nothing_left_behind  # noqa: F401 - autouse fixture

import facegraph
from facegraph import ANY, Graph, Input, Node, Output, register
from facegraph._costs import load_costs, measured_costs, save_costs
from facegraph._process._plan import HEAVY_MS, place
from facegraph.testing import collect, results_equal


@register("test.place.heavy")
class Heavy(Node):
    """Declares itself heavy and able to use threads (a model node, say)."""

    value = Input(ANY)
    out = Output(ANY)
    threads = 4
    cost = 5.0

    def process(self, value: Any) -> dict[str, Any]:
        return {"out": dict(value.fields)}


@register("test.place.light")
class Light(Node):
    """Declares a small cost; two inputs, the second optional."""

    a = Input(ANY)
    b = Input(ANY, optional=True)
    out = Output(ANY)
    cost = 0.3

    def process(self, a: Any, b: Any = None) -> dict[str, Any]:
        return {"out": {"n": a.frame_id, "b": b is not None}}


@register("test.place.modelish")
class Modelish(Node):
    """Has a parameter named ``model`` and declares nothing: no longer heavy for that."""

    value = Input(ANY)
    out = Output(ANY)
    from facegraph import Param

    model = Param(str, "weights.onnx")

    def process(self, value: Any) -> dict[str, Any]:
        return {"out": {"n": value.frame_id}}


def graph(group: str | None = None) -> Graph:
    """src → h1 (heavy) → l1 → l2 ; src → h2 (heavy) ; l3 (h1, h2) ; src → l0 → sink."""
    g = Graph("place")
    src = g.add("synthetic", id="src", frames_total=12, width=32, height=24)
    h1 = g.add("test.place.heavy", id="h1", value=src.frame)
    l1 = g.add("test.place.light", id="l1", a=h1.out, b=src.frame, group=group)
    g.add("test.place.light", id="l2", a=l1.out)
    h2 = g.add("test.place.heavy", id="h2", value=src.frame, group=group)
    g.add("test.place.light", id="l3", a=h2.out, b=h1.out)
    l0 = g.add("test.place.light", id="l0", a=src.frame)
    g.add("test.proc.count", id="sink", value=l0.out)
    return g.check()


@register("test.proc.count")
class Count(Node):
    value = Input(ANY)

    def process(self, value: Any) -> None:
        return None


def layout(workers) -> dict[str, list[str]]:
    return {w.name: w.nodes for w in workers}


def test_heavy_nodes_alone_light_nodes_with_what_feeds_them():
    workers = place(graph(), cores=2)
    assert layout(workers) == {
        "src": ["src"],  # the source always runs alone
        "h1": ["h1", "l1", "l2"],  # l1 is fed by h1 (and by the source, which takes no one in)
        "h2": ["h2", "l3"],  # l3 has one input from each heavy worker: the one placed last wins the tie
        "l0": ["l0", "sink"],  # fed only by the source: a shared worker of such nodes
    }
    assert [w.why for w in workers] == ["source", "heavy", "heavy", "light"]
    assert all(w.costs[n][1] == "declared" for w in workers for n in w.nodes)


def test_separate_placement_is_one_worker_per_node():
    workers = place(graph(), placement="separate", cores=2)
    assert [w.nodes for w in workers] == [[n] for n in graph().order()]
    with pytest.raises(ValueError, match="placement"):
        place(graph(), placement="clever")


def test_group_wins_and_takes_no_one_in():
    workers = place(graph(group="g"), cores=2)
    by = layout(workers)
    assert by["group:g"] == ["h2", "l1"]  # exactly what the graph says, heavy or not
    assert by["h1"] == ["h1", "l3"]  # l3's feeder h2 is in a group: it goes with h1
    assert by["l0"] == ["l0", "sink", "l2"]  # l2's only feeder is in the group: the shared worker takes it


def test_restartable_nodes_run_alone():
    g = graph()
    g.nodes["l1"].restart = 2
    by = layout(place(g, cores=2))
    assert by["l1"] == ["l1"] and "l2" not in by["l1"]  # its crash must restart no one else


def test_a_parameter_named_model_does_not_make_a_node_heavy():
    g = Graph("m")
    src = g.add("synthetic", id="src", frames_total=4)
    m = g.add("test.place.modelish", id="m", value=src.frame)
    g.add("test.place.light", id="after", a=m.out)
    workers = place(g.check(), cores=2)
    assert layout(workers) == {"src": ["src"], "m": ["m", "after"]}
    assert workers[1].why == "light" and workers[1].costs["m"] == (0.2, "declared")


def test_measured_costs_replace_declared_ones():
    # h2 measured light: fed by the source only, it opens the shared worker (l0 joins it, and l3, whose two
    # feeders tie, goes with the one placed last); l2 measured heavy: a worker of its own, and l1 goes with
    # it, since l1's feeder h1 (5 ms) has no room left within the fair share (9.7 ms / 2 cores)
    workers = place(graph(), costs={"h2": 0.4, "l2": 3.0}, cores=2)
    assert layout(workers) == {
        "src": ["src"],
        "h1": ["h1"],
        "l2": ["l2", "l1"],
        "h2": ["h2", "l0", "l3", "sink"],
    }
    assert [w.why for w in workers] == ["source", "heavy", "heavy", "light"]
    with_room = layout(place(graph(), costs={"h2": 0.4, "l2": 3.0}, cores=1))  # one core: all of it is the share
    assert with_room["h1"] == ["h1", "l1"] and with_room["l2"] == ["l2"]
    h2 = next(w for w in workers if "h2" in w.nodes)
    assert h2.costs["h2"] == (0.4, "measured") and h2.costs["l0"] == (0.3, "declared")


def test_threads_follow_the_load_within_what_nodes_can_use():
    workers = {w.name: w for w in place(graph(), cores=8)}
    # loads: h1 5.6, h2 5.3, l0 0.5, the source 0.2: 8 cores split by load, one at least each
    assert workers["h1"].threads == 3 and workers["h2"].threads == 3
    assert workers["l0"].threads == 1 and workers["src"].threads == 1  # they declare one thread: never more
    sixteen = {w.name: w for w in place(graph(), cores=16)}
    assert sixteen["h1"].threads == sixteen["h2"].threads == 4  # what the node declares it can use, no more
    two = {w.name: w for w in place(graph(), cores=2)}
    assert two["h1"].threads == 1 and two["h2"].threads == 1  # two cores, two heavy workers


def test_heavy_threshold():
    g = Graph("t")
    src = g.add("synthetic", id="src", frames_total=4)
    a = g.add("delay", id="a", value=src.frame, ms=HEAVY_MS)  # delay's cost is its ms
    g.add("delay", id="b", value=a.out, ms=HEAVY_MS / 2)
    assert layout(place(g.check(), cores=2)) == {"src": ["src"], "a": ["a", "b"]}


def test_fused_nodes_share_a_process_and_give_the_inline_results():
    g = graph()
    run = facegraph.run(g, executor="process")
    results = list(run)
    assert results_equal(collect(g, "inline"), results)
    pid = {nid: st.pid for nid, st in run.stats.nodes.items()}
    assert pid["h1"] == pid["l1"] == pid["l2"] and pid["h2"] == pid["l3"] and pid["l0"] == pid["sink"]
    assert len(set(pid.values())) == 4
    assert [w["nodes"] for w in run.stats.placement] == [["src"], ["h1", "l1", "l2"], ["h2", "l3"], ["l0", "sink"], []]
    assert run.stats.placement[-1]["worker"] == "supervisor"
    assert sum(w["cpu_s"] for w in run.stats.placement) == pytest.approx(run.stats.cpu_s, abs=0.01)
    assert run.stats.cpu_s > 0
    assert all(run.stats.nodes[n].calls == 12 for n in ("h1", "l1", "l2", "h2", "l3", "l0", "sink"))


def test_costs_measured_in_a_run_carry_over_to_the_next(tmp_path):
    g = graph()
    stats = facegraph.run(g, executor="process").wait()
    costs = measured_costs(stats)
    assert set(costs) == set(g.nodes) - {"src"} and all(v >= 0 for v in costs.values())
    path = save_costs(tmp_path / "costs.json", g, stats)
    assert load_costs(path, g) == costs
    assert json.loads(path.read_text())["placement"][1]["nodes"] == ["h1", "l1", "l2"]
    other = graph()
    other.set_param("src", "frames_total", 99)  # another source: the costs still apply
    assert load_costs(path, other) == costs
    other.nodes["l1"].params["nothing"] = 1  # another node: they do not
    assert load_costs(path, other) is None
    assert load_costs(tmp_path / "missing.json", g) is None
    # these nodes are cheap in fact: by measured costs every node is light and h1, h2 join the shared worker
    by = layout(place(g, costs=costs, cores=2))
    assert sorted(by["h1"]) == sorted(set(g.nodes) - {"src"}) and len(by) == 2


# ---- the face graphs' own declarations ------------------------------------------------------------


def face_graph() -> Graph:
    pytest.importorskip("facegraph.nodes")
    g = Graph.load(__import__("pathlib").Path(__file__).parent.parent / "graphs" / "webcam_au.yaml")
    # 'auto' picks OpenFace's models (a heavy au) wherever 'facegraph models fetch openface-au' ran: the layout
    # checked here is the geometric backend's, the same on every machine
    g.set_param("au", "backend", "geometric")
    return g


def test_display_without_a_screen_costs_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))  # no OpenFace models: au's auto backend is geometry
    g = face_graph()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    workers = place(g, cores=2)
    screen = next(w for w in workers if "screen" in w.nodes)
    assert screen.costs["screen"] == (0.0, "declared")
    assert screen.nodes[0] != "screen" and "view" in screen.nodes  # no worker of its own: it runs with its feeder
    by = layout(workers)
    assert "screen" not in by and len(by) == 4  # nine nodes, four workers
    monkeypatch.setenv("DISPLAY", ":0")
    assert next(w for w in place(g, cores=2) if "screen" in w.nodes).costs["screen"][0] > 0


def test_default_au_graph_places_by_declared_costs(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))  # no OpenFace models: au's auto backend is geometry
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    workers = place(face_graph(), cores=2)
    by = layout(workers)
    assert by == {
        "cam": ["cam"],
        "faces": ["faces"],  # BlazeFace every 5th frame: about 1.5 ms per frame, heavy
        "mesh": ["mesh", "pose", "au", "table"],  # light, fed by mesh: no hop
        # the overlay would take mesh's worker past its share (all costs / 2 cores): it goes next to the
        # encoder it feeds, and the screen (nothing to do here) with it
        "video": ["video", "view", "screen"],
    }
    assert [w.why for w in workers] == ["source", "heavy", "heavy", "heavy"]
    assert all(w.threads == 1 for w in workers)  # two cores, three busy workers and the source
    assert "model" in face_graph().nodes["faces"].cls.params  # the old rule's trigger, irrelevant now


def test_cli_places_the_next_run_by_what_this_one_measured(tmp_path, capsys):
    from facegraph.cli import main

    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: two\n"
        "nodes:\n"
        "  src: {type: synthetic, params: {frames_total: 30, width: 32, height: 24}}\n"
        "  slow: {type: delay, inputs: {value: src.frame}, params: {ms: 2.0}}\n"  # declared 2 ms: heavy
        "  after: {type: passthrough, inputs: {value: slow.out}}\n"
    )
    out = tmp_path / "out"
    args = ["run", str(graph), "--output", str(out), "--quiet", "--explain"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "placement by declared costs" in first and "slow 2.00 ms (declared)" in first
    saved = json.loads((out / "costs.json").read_text())
    assert set(saved["costs_ms"]) == {"slow", "after"} and saved["costs_ms"]["slow"] < HEAVY_MS  # it sleeps
    assert main([*args, "--costs", "auto"]) == 0
    second = capsys.readouterr().out
    assert f"placement by measured ({out / 'costs.json'}) costs" in second and "(measured)" in second
    assert main([*args, "--costs", "declared"]) == 0
    assert "placement by declared costs" in capsys.readouterr().out
    assert main([*args, "--costs", str(tmp_path / "nope.json")]) == 2


def test_workers_behind_the_heaviest_run_at_a_higher_niceness(monkeypatch):
    """More workers than cores: the heaviest (FaceMesh's) keeps the caller's priority, the rest run behind it."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    from facegraph._process._plan import BEHIND_NICE

    nice = {w.name: w.nice for w in place(face_graph(), cores=2)}
    assert nice == {"cam": BEHIND_NICE, "faces": BEHIND_NICE, "mesh": 0, "video": BEHIND_NICE}
    assert all(w.nice == 0 for w in place(face_graph(), cores=8))  # a core each: nothing to order
    assert all(w.nice == 0 for w in place(face_graph(), cores=2, renice=False))
    # loads within BEHIND_SHARE of the heaviest stay level with it
    g = graph()
    assert {w.name: w.nice for w in place(g, cores=1)} == {"src": BEHIND_NICE, "h1": 0, "h2": 0, "l0": BEHIND_NICE}


def test_a_run_starts_its_workers_at_the_planned_niceness():
    import os

    import psutil

    from facegraph._process._plan import BEHIND_NICE

    g = Graph("nice")
    src = g.add("synthetic", id="src", frames_total=30, width=32, height=24)
    g.add("test.place.heavy", id="h", value=src.frame)
    base = os.nice(0)
    seen: dict[str, int] = {}
    for renice in (True, False):
        run = facegraph.run(g, executor="process", extra={"cores": 1}, renice=renice)
        it = iter(run)
        next(it)
        pids = run.options.extra["workers"]
        seen = {name: psutil.Process(pid).nice() - base for name, pid in pids.items()}
        list(it)
        assert seen == ({"src": BEHIND_NICE, "h": 0} if renice else {"src": 0, "h": 0})
