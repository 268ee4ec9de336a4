"""`reconstruct` (ONNX exports and part checkpoints) against the torch models it was made from."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facegraph.nodes.models._crops import CropSpec, prepare, to_bgr_uint8  # noqa: E402
from facegraph.nodes.models._subjects import SubjectStore  # noqa: E402
from facegraph.nodes.models.reconstruct import Reconstruct  # noqa: E402
from facegraph.nodes.nets.reconstruction import (  # noqa: E402
    ExpressionTransformer,
    ReconstructionConfig,
    ReconstructionModel,
    TransformerConfig,
    export_reconstruction_onnx,
    export_transformer_onnx,
    save_checkpoint,
    transformer_metadata,
)

from facegraph import NodeFailure  # noqa: E402
from facegraph.testing import run_node  # noqa: E402

SIZE, K, E = 16, 3, 16


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    t = ExpressionTransformer(TransformerConfig(image_size=SIZE, patch=8, embed_dim=E, heads=2, layers=1, ff=32,
                                                tokens=K, subjects=4)).eval()
    r = ReconstructionModel(ReconstructionConfig(image_size=SIZE, patch=8, embed_dim=E, token_dim=E, tokens=K,
                                                 heads=2, ff=32, cross_layers=1, self_layers=1)).eval()
    root = tmp_path_factory.mktemp("recon")
    with torch.no_grad():
        table = t.subject_table.weight.numpy().copy()
    store = SubjectStore(["alice", "bob"], table[[1, 2]], [1, 2])
    store.set("mean", table[[1, 2]].mean(0))
    store.write(root / "subjects.npz")
    paths = {"enc": export_transformer_onnx(t, root / "t.onnx"), "dec": export_reconstruction_onnx(r, root / "r.onnx"),
             "enc_pt": save_checkpoint(t, root / "t.pt"), "dec_pt": save_checkpoint(r, root / "r.pt"),
             "subjects": root / "subjects.npz"}
    return t, r, store, paths


def crops(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (n, 48, 48, 3), dtype=np.uint8),
            "matrices": np.zeros((n, 2, 3), np.float32), "track_id": np.arange(n, dtype=np.int32)}


def reference(t, r, images, source, target):
    x = prepare(images, CropSpec.from_metadata(transformer_metadata(t), size=SIZE, color="rgb"))
    with torch.no_grad():
        s = torch.from_numpy(np.repeat(source[None], len(x), 0))
        tokens = t(torch.from_numpy(x), s)
        g = torch.from_numpy(np.repeat(target[None], len(x), 0))
        return tokens.numpy(), r(g, tokens).numpy()


@pytest.mark.parametrize(("enc", "dec"), [("enc", "dec"), ("enc_pt", "dec_pt"), ("enc", "dec_pt")])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_matches_torch(models, enc, dec, n):
    t, r, store, paths = models
    node = Reconstruct(encoder=str(paths[enc]), decoder=str(paths[dec]), subjects=str(paths["subjects"]), faces=2)
    data = crops(n, seed=n)
    out = run_node(node, {"crops": data})
    assert out["image"]["image"].shape == (SIZE, 2 * SIZE, 3) and out["image"]["image"].dtype == np.uint8
    assert out["tokens"]["tokens"].shape == (n, K, E) and out["vectors"]["vec"].shape == (n, K * E)
    if n == 0:
        assert not out["image"]["image"].any()
        return
    mean = store.get("mean")
    tokens, images = reference(t, r, data["images"], mean, mean)
    np.testing.assert_allclose(out["tokens"]["tokens"], tokens, atol=1e-4)
    tiles = out["image"]["image"].reshape(SIZE, 2, SIZE, 3).transpose(1, 0, 2, 3)
    expected = to_bgr_uint8(images[:2])
    for i in range(min(n, 2)):  # uint8 rounding of values within 1e-4 can differ by one level
        assert np.abs(tiles[i].astype(int) - expected[i]).max() <= 1
    if n == 1:
        assert not tiles[1].any()


def test_subjects_beside_the_decoder_and_identity_swap(models):
    t, r, store, paths = models
    data = crops(2)
    node = Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec"]), subject="alice", target_subject="2",
                       size=24)
    out = run_node(node, {"crops": data})
    tokens, images = reference(t, r, data["images"], store.get("alice"), store.get("bob"))
    np.testing.assert_allclose(out["tokens"]["tokens"], tokens, atol=1e-4)
    import cv2

    want = cv2.resize(to_bgr_uint8(images[:1])[0], (24, 24), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["image"]["image"].astype(int) - want).max() <= 1
    same = run_node(Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec"]), subject="alice"),
                    {"crops": data})["image"]["image"]
    assert not np.array_equal(same, cv2.resize(out["image"]["image"], (SIZE, SIZE)))
    # `--set swap.target_subject=2` arrives as YAML's integer 2: the same training id
    by_int = run_node(Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec"]), subject="alice",
                                  target_subject=2, size=24), {"crops": data})
    np.testing.assert_array_equal(by_int["image"]["image"], out["image"]["image"])


def test_unknown_subject_and_missing_store(models, tmp_path):
    paths = models[3]
    with pytest.raises(NodeFailure, match="target_subject 'carol': not in"):
        run_node(Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec"]), target_subject="carol"),
                 {"crops": crops(1)})
    with pytest.raises(NodeFailure, match="no subjects file"):
        run_node(Reconstruct(encoder=str(paths["enc"]), decoder=str(paths["dec"]),
                             subjects=str(tmp_path / "none.npz")), {"crops": crops(1)})


def test_requirements(models, tmp_path):
    paths = models[3]
    assert Reconstruct.requirements({"encoder": str(paths["enc"]), "decoder": str(paths["dec"])}) == []
    missing = str(tmp_path / "dec.onnx")
    (problem,) = Reconstruct.requirements({"encoder": str(paths["enc"]), "decoder": missing})
    assert problem.startswith(f"decoder model {missing}") and "not found" in problem
