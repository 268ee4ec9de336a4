"""Parameters are typed and validated when a node is built."""

from __future__ import annotations

import pytest

from facegraph import FRAME, Node, Output, Param, ParamError


class Knobs(Node):
    out = Output(FRAME)
    scale = Param(float, 1.0, ge=0.1, le=10, doc="zoom")
    mode = Param(str, "fast", choices=("fast", "slow"))
    count = Param(int, doc="how many")
    source = Param((int, str), 0)
    post = Param(str, "auto", choices=("auto", "on", "off"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing required parameter 'count' (int: how many)"),
        ({"count": 1, "scal": 2}, "unknown parameter 'scal'; did you mean 'scale'?"),
        ({"count": "3"}, "parameter 'count' must be int, got str '3'"),
        ({"count": True}, "parameter 'count' must be int, got bool True"),
        ({"count": 1, "scale": 20}, "parameter 'scale' must be <= 10, got 20.0"),
        ({"count": 1, "scale": 0}, "parameter 'scale' must be >= 0.1, got 0.0"),
        ({"count": 1, "mode": "medium"}, "parameter 'mode' must be one of 'fast', 'slow', got 'medium'"),
        ({"count": 1, "source": 1.5}, "parameter 'source' must be int or str, got float 1.5"),
        ({"count": 1, "mode": False}, "parameter 'mode' must be str, got bool False"),  # no yes/no word to mean
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ParamError) as err:
        Knobs("k", **params)
    assert str(err.value) == message


def test_good_parameters_fill_defaults_and_widen_ints():
    node = Knobs("k", count=2, scale=3)
    assert (node.count, node.scale, node.mode, node.source) == (2, 3.0, "fast", 0)
    assert isinstance(node.scale, float)
    assert Knobs("k", count=1, source="cam.mp4").source == "cam.mp4"


def test_yaml_booleans_are_the_words_a_choice_names():
    """YAML 1.1 reads `off` / `on` as booleans: `--set k.post=off` and `post: off` in a graph file mean the word."""
    assert (Knobs("k", count=1, post=False).post, Knobs("k", count=1, post=True).post) == ("off", "on")


def test_declarations_are_collected_and_removed_from_the_class():
    assert list(Knobs.params) == ["scale", "mode", "count", "source", "post"]
    assert list(Knobs.outputs) == ["out"]
    assert Knobs.params["scale"].name == "scale"
