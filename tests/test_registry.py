"""Node types come from the built-ins and from the 'facegraph.nodes' entry-point group, by name only."""

from __future__ import annotations

import importlib.metadata as md
import sys
import types

import facegraph.nodes  # noqa: F401 - register the built-ins before the tests swap the registry
import pytest

from facegraph import FRAME, Graph, GraphError, Input, Node, Output, _registry


def test_third_party_node_from_an_entry_point(monkeypatch):
    module = types.ModuleType("fg_plugin_demo")

    class Mirror(Node):
        """Flips the frame left to right."""

        frame = Input(FRAME)
        out = Output(FRAME)

        def process(self, frame):
            return {"out": {"image": frame.image[:, ::-1].copy()}}

    Mirror.__module__ = module.__name__
    module.Mirror = Mirror
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ep = md.EntryPoint(name="demo.mirror", value="fg_plugin_demo:Mirror", group="facegraph.nodes")
    monkeypatch.setattr(_registry, "entry_points", lambda group: [ep] if group == "facegraph.nodes" else [])
    monkeypatch.setattr(_registry, "_loaded", False)
    monkeypatch.setattr(_registry, "_NODES", dict(_registry._NODES))
    graph = Graph.from_yaml(
        "name: plug\nnodes:\n  cam: {type: synthetic}\n  flip: {type: demo.mirror, inputs: {frame: cam.frame}}\n"
    ).check()
    assert graph.nodes["flip"].cls is Mirror


def test_a_broken_plugin_does_not_break_the_builtins(monkeypatch, caplog):
    ep = md.EntryPoint(name="demo.broken", value="fg_no_such_module:Node", group="facegraph.nodes")
    monkeypatch.setattr(_registry, "entry_points", lambda group: [ep])
    monkeypatch.setattr(_registry, "_loaded", False)
    monkeypatch.setattr(_registry, "_NODES", dict(_registry._NODES))
    with pytest.raises(GraphError, match=r"unknown node type 'demo\.broken'"):
        _registry.node_class("demo.broken")
    assert _registry.node_class("detect").type_name == "detect"
    assert "could not load node plug-in demo.broken" in caplog.text


def test_every_builtin_face_node_is_registered():
    names = set(_registry.node_types())
    expected = {"decode", "detect", "landmarks", "pose", "align", "au", "overlay", "embed", "identify", "temporal",
                "gru", "expression", "reconstruct", "sink.video", "sink.csv", "sink.jsonl", "sink.parquet",
                "sink.display", "sink.zmq"}
    assert expected <= names
