"""`reconstruct` (ONNX and torch checkpoints) against the torch encoder/decoder it was made from."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facegraph.nodes.models._crops import CropSpec, prepare, to_bgr_uint8  # noqa: E402
from facegraph.nodes.models.reconstruct import Reconstruct  # noqa: E402
from facegraph.nodes.nets.reconstruction import (  # noqa: E402
    DecoderConfig,
    EncoderConfig,
    ExpressionEncoder,
    ReconstructionDecoder,
    encoder_metadata,
    export_decoder_onnx,
    export_encoder_onnx,
    save_checkpoint,
)

from facegraph import NodeFailure  # noqa: E402
from facegraph.testing import run_node, run_node_frames  # noqa: E402

SIZE, K, E, SUBJ = 32, 3, 16, 8


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    enc = ExpressionEncoder(EncoderConfig(image_size=SIZE, patch=8, dim=E, depth=2, heads=2, tokens=K)).eval()
    dec_emb = ReconstructionDecoder(DecoderConfig(tokens=K, token_dim=E, subject_dim=SUBJ, image_size=SIZE, base=32))
    dec_id = ReconstructionDecoder(DecoderConfig(tokens=K, token_dim=E, subject_dim=SUBJ, subjects=5, image_size=SIZE,
                                                 base=32))
    root = tmp_path_factory.mktemp("recon")
    paths = {
        "enc": export_encoder_onnx(enc, root / "enc.onnx"),
        "dec_emb": export_decoder_onnx(dec_emb.eval(), root / "dec_emb.onnx"),
        "dec_id": export_decoder_onnx(dec_id.eval(), root / "dec_id.onnx"),
        "enc_pt": save_checkpoint(enc, root / "enc.pt"),
        "dec_id_pt": save_checkpoint(dec_id, root / "dec_id.pt"),
    }
    return enc, dec_emb.eval(), dec_id.eval(), paths


def crops(n: int, seed: int = 0, ids: list[int] | None = None) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "images": rng.integers(0, 256, (n, 48, 48, 3), dtype=np.uint8),
        "matrices": np.zeros((n, 2, 3), np.float32),
        "track_id": np.asarray(ids if ids is not None else range(n), np.int32),
    }


def embeddings(n: int, seed: int = 1, ids: list[int] | None = None) -> dict:
    vec = np.random.default_rng(seed).normal(size=(n, SUBJ)).astype(np.float32)
    return {"vec": vec, "track_id": np.asarray(ids if ids is not None else range(n), np.int32)}


def reference(enc, dec, images, subject):
    x = prepare(images, CropSpec.from_metadata(encoder_metadata(enc), size=SIZE, color="rgb"))
    with torch.no_grad():
        tokens = enc(torch.from_numpy(x))
        return tokens.numpy(), dec(tokens, torch.from_numpy(subject)).numpy()


@pytest.mark.parametrize("n", [0, 1, 3])
def test_embedding_decoder_matches_torch(models, n):
    enc, dec, _, paths = models
    node = Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec_emb"]), faces=2)
    data, emb = crops(n, seed=n), embeddings(n)
    out = run_node(node, {"crops": data, "embeddings": emb})
    assert out["image"]["image"].shape == (SIZE, 2 * SIZE, 3) and out["image"]["image"].dtype == np.uint8
    assert out["tokens"]["tokens"].shape == (n, K, E)
    if n == 0:
        assert not out["image"]["image"].any()
        return
    tokens, images = reference(enc, dec, data["images"], emb["vec"])
    np.testing.assert_allclose(out["tokens"]["tokens"], tokens, atol=1e-4)
    expected = to_bgr_uint8(images[:2])
    tiles = out["image"]["image"].reshape(SIZE, 2, SIZE, 3).transpose(1, 0, 2, 3)
    for i in range(min(n, 2)):  # uint8 rounding of values within 1e-4 can differ by one level
        assert np.abs(tiles[i].astype(int) - expected[i]).max() <= 1
    if n == 1:
        assert not tiles[1].any()


def test_embeddings_follow_track_ids_and_first_swaps(models):
    enc, dec, _, paths = models
    data = crops(2, ids=[4, 9])
    emb = embeddings(2, ids=[9, 4])
    base = {"encoder": str(paths["enc"]), "decoder": str(paths["dec_emb"]), "faces": 2}
    own = run_node(Reconstruct(**base), {"crops": data, "embeddings": emb})["image"]["image"]
    _, ref = reference(enc, dec, data["images"], emb["vec"][[1, 0]])
    assert np.abs(own.astype(int) - np.concatenate(list(to_bgr_uint8(ref)), axis=1)).max() <= 1
    swapped = run_node(Reconstruct(**base, subject="first"), {"crops": data, "embeddings": emb})["image"]["image"]
    _, ref = reference(enc, dec, data["images"], emb["vec"][[0, 0]])
    assert np.abs(swapped.astype(int) - np.concatenate(list(to_bgr_uint8(ref)), axis=1)).max() <= 1


@pytest.mark.parametrize(("encoder", "decoder"), [("enc", "dec_id"), ("enc_pt", "dec_id_pt"), ("enc", "dec_id_pt")])
def test_id_decoder_onnx_and_torch(models, encoder, decoder):
    enc, _, dec, paths = models
    node = Reconstruct(encoder=str(paths[encoder]), decoder=str(paths[decoder]), subject_id=3, size=40)
    data = crops(2)
    out = run_node(node, {"crops": data})
    tokens, images = reference(enc, dec, data["images"], np.full(2, 3, np.int64))
    np.testing.assert_allclose(out["tokens"]["tokens"], tokens, atol=1e-4)
    assert out["image"]["image"].shape == (40, 40, 3)
    import cv2

    want = cv2.resize(to_bgr_uint8(images[:1])[0], (40, 40), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["image"]["image"].astype(int) - want).max() <= 1


def test_id_decoder_needs_subject_id(models):
    paths = models[3]
    with pytest.raises(NodeFailure, match="set subject_id"):
        run_node(Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec_id"])), {"crops": crops(1)})
    with pytest.raises(NodeFailure, match="knows 5 subjects"):
        run_node(Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec_id"]), subject_id=7),
                 {"crops": crops(1)})


def test_embedding_decoder_errors(models):
    paths = models[3]
    node = Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec_emb"]))
    with pytest.raises(NodeFailure, match="connect the 'embeddings' input"):
        run_node_frames(node, [{"crops": crops(1)}])
    bad = {"vec": np.zeros((1, SUBJ + 1), np.float32), "track_id": np.zeros(1, np.int32)}
    node = Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec_emb"]))
    with pytest.raises(NodeFailure, match=f"{SUBJ + 1}-D but decoder .* takes {SUBJ}-D"):
        run_node_frames(node, [{"crops": crops(1), "embeddings": bad}])


def test_requirements(models, tmp_path):
    paths = models[3]
    assert Reconstruct.requirements({"encoder": str(paths["enc"]), "decoder": str(paths["dec_emb"])}) == []
    missing = str(tmp_path / "dec.onnx")
    (problem,) = Reconstruct.requirements({"encoder": str(paths["enc"]), "decoder": missing})
    assert problem.startswith(f"decoder model {missing}") and "not found" in problem
