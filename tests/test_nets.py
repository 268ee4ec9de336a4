"""The torch definitions: shapes, configurations, checkpoints (no ONNX here; the node tests cover export)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from facegraph.nodes.nets.expression import ExpressionNet  # noqa: E402
from facegraph.nodes.nets.gru import TemporalGRU  # noqa: E402
from facegraph.nodes.nets.reconstruction import (  # noqa: E402
    ExpressionEncoder,
    ReconstructionDecoder,
    load_checkpoint,
    save_checkpoint,
)


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


def test_encoder_tokens_and_decoder_image():
    enc = ExpressionEncoder(image_size=32, patch=8, dim=16, depth=1, heads=4, tokens=3).eval()
    tokens = enc(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 3, 16)
    dec = ReconstructionDecoder(tokens=3, token_dim=16, subject_dim=8, image_size=32, base=32).eval()
    img = dec(tokens, torch.randn(2, 8))
    assert img.shape == (2, 3, 32, 32) and float(img.detach().min()) >= 0 and float(img.detach().max()) <= 1
    by_id = ReconstructionDecoder(tokens=3, token_dim=16, subject_dim=8, subjects=4, image_size=32).eval()
    a = by_id(tokens, torch.tensor([0, 0]))
    b = by_id(tokens, torch.tensor([0, 3]))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])  # the subject changes the rendering


@pytest.mark.parametrize("kwargs", [{"image_size": 30, "patch": 8}, {"dim": 10, "heads": 4}])
def test_encoder_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        ExpressionEncoder(**kwargs)


def test_decoder_rejects_bad_size():
    with pytest.raises(ValueError, match="power of two"):
        ReconstructionDecoder(image_size=48)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = ExpressionEncoder(image_size=16, patch=8, dim=8, depth=1, heads=2, tokens=2).eval()
    path = save_checkpoint(enc, tmp_path / "enc.pt", {"note": "test"})
    loaded, meta = load_checkpoint(path)
    x = torch.randn(1, 3, 16, 16)
    assert isinstance(loaded, ExpressionEncoder) and torch.equal(loaded(x), enc(x))
    assert meta["kind"] == "expression_encoder" and meta["note"] == "test" and meta["tokens"] == 2
    torch.save({"kind": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a reconstruction checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
