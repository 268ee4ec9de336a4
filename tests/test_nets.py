"""The torch definitions: shapes, configurations, checkpoints (no ONNX here; the node tests cover export)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from facegraph.nodes.nets.expression import ExpressionNet  # noqa: E402
from facegraph.nodes.nets.gru import TemporalGRU  # noqa: E402


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_gru_shapes_and_dropout_only_in_training(layers, bidirectional):
    torch.manual_seed(0)
    model = TemporalGRU(input_dim=12, hidden=6, layers=layers, classes=5, bidirectional=bidirectional, dropout=0.5)
    x = torch.randn(3, 7, 12)
    assert model(x).shape == (3, 5)
    assert model.norm.normalized_shape == (12 if bidirectional else 6,)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_gru_default_is_the_512_d_head():
    model = TemporalGRU()
    assert model.gru.input_size == 512 and model.head.out_features == 7


@pytest.mark.parametrize(("size", "color", "emb"), [(48, "gray", 128), (64, "rgb", 0)])
def test_expression_net_outputs(size, color, emb):
    model = ExpressionNet(size=size, color=color, width=4, blocks=3, embedding_dim=emb).eval()
    out = model(torch.randn(2, 1 if color == "gray" else 3, size, size))
    if emb:
        assert out[0].shape == (2, 7) and out[1].shape == (2, emb)
    else:
        assert out.shape == (2, 7)


# the expression transformer and reconstruction model: tests/test_expression_models.py
