"""Graphs from Python and YAML: equal, round-trippable, drawable."""

from __future__ import annotations

import pytest

from facegraph import Graph, GraphError
from facegraph._render import to_dot, to_mermaid

YAML = """\
name: chain
nodes:
  src: {type: synthetic, params: {frames_total: 5, width: 32, height: 24}}
  a: {type: passthrough, inputs: {value: src.frame}}
  b:
    type: delay
    params: {ms: 0.0}
    inputs: {value: a.out}
    group: light
"""


def python_graph() -> Graph:
    g = Graph("chain")
    src = g.add("synthetic", id="src", frames_total=5, width=32, height=24)
    a = g.add("passthrough", id="a", value=src.frame)
    g.add("delay", id="b", value=a.out, ms=0.0, group="light")
    return g


def test_python_and_yaml_build_equal_graphs():
    assert Graph.from_yaml(YAML).check() == python_graph()


def test_yaml_round_trip(tmp_path):
    g = Graph.from_yaml(YAML)
    path = tmp_path / "g.yaml"
    g.save(path)
    again = Graph.load(path)
    assert again == g
    assert Graph.from_yaml(again.to_yaml()) == g


def test_ids_are_generated_and_handles_give_ports():
    g = Graph("auto")
    src = g.add("synthetic")
    one = g.add("passthrough", value=src.frame)
    two = g.add("passthrough", value=one.out)
    assert (src.id, one.id, two.id) == ("synthetic", "passthrough", "passthrough_2")
    assert g.order() == ["synthetic", "passthrough", "passthrough_2"]
    with pytest.raises(GraphError, match="no output 'outt'; did you mean 'out'"):
        _ = one.outt


def test_python_errors_name_the_node():
    g = Graph("bad")
    src = g.add("synthetic", id="src")
    with pytest.raises(GraphError) as err:
        g.add("delay", id="d", value=src.frame, ms=-1)
    assert str(err.value) == "node 'd' (delay): parameter 'ms' must be >= 0, got -1.0"
    assert "d" not in g.nodes
    with pytest.raises(GraphError, match="duplicate node id 'src'"):
        g.add("synthetic", id="src")


def test_leaf_outputs_and_consumers():
    g = python_graph()
    assert [str(r) for r in g.leaf_outputs()] == ["b.out"]
    assert g.consumers()["src"] == [("frame", "a", "value")]


def test_mermaid_and_dot_name_every_node_and_edge():
    g = python_graph()
    mermaid = to_mermaid(g)
    assert mermaid.startswith("flowchart LR")
    assert 'n_src -->|"frame → value: Any"| n_a' in mermaid
    dot = to_dot(g)
    assert '"a" -> "b"' in dot and dot.strip().endswith("}")
