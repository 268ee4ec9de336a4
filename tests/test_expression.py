"""`expression` against the torch ExpressionNet it was exported from, and the crop preparation."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")

from facegraph.nodes.models._crops import CropSpec, prepare, to_bgr_uint8  # noqa: E402
from facegraph.nodes.models.expression import Expression  # noqa: E402
from facegraph.nodes.nets.expression import FER_LABELS, ExpressionConfig, ExpressionNet, export_onnx  # noqa: E402

from facegraph.testing import run_node  # noqa: E402


def crops(n: int, size: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "images": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        "matrices": np.zeros((n, 2, 3), np.float32),
        "track_id": np.arange(n, dtype=np.int32),
    }


@pytest.fixture(scope="module", params=[("gray", 48, 128), ("rgb", 32, 0)], ids=["fer48-emb", "rgb32"])
def tiny(request, tmp_path_factory):
    color, size, emb = request.param
    torch.manual_seed(0)
    cfg = ExpressionConfig(size=size, color=color, width=4, blocks=2, embedding_dim=emb)
    model = ExpressionNet(cfg)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    mean, std = (0.5, 0.25) if color == "gray" else ([0.4, 0.45, 0.5], [0.2, 0.25, 0.3])
    path = tmp_path_factory.mktemp("expr") / "fer.onnx"
    export_onnx(model, path, mean=mean, std=std)
    return model, path


def test_prepare_matches_manual_conversion():
    images = crops(2, 64)["images"]
    spec = CropSpec(size=48, color="gray", mean=(0.5,), std=(0.25,))
    x = prepare(images, spec)
    assert x.shape == (2, 1, 48, 48) and x.dtype == np.float32
    gray = cv2.cvtColor(cv2.resize(images[1], (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    np.testing.assert_allclose(x[1, 0], (gray / 255.0 - 0.5) / 0.25, atol=1e-5)
    rgb = prepare(images, CropSpec(size=64, color="rgb", mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_allclose(rgb[0, 0], images[0, :, :, 2] / 255.0, atol=1e-6)  # R first
    back = to_bgr_uint8(rgb, "rgb")
    np.testing.assert_array_equal(back, images)


def test_metadata_written(tiny):
    _, path = tiny
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["labels"] == FER_LABELS and meta["input_size"] in (48, 32)


@pytest.mark.parametrize("n", [0, 1, 4])
def test_matches_torch(tiny, n):
    model, path = tiny
    node = Expression(model=str(path))
    data = crops(n, 56, seed=n)
    out = run_node(node, {"crops": data})
    p = out["probs"]["p"]
    assert p.shape == (n, 7) and out["probs"]["labels"] == FER_LABELS
    assert out["probs"]["track_id"].tolist() == list(range(n))
    cfg = model.config
    has_emb = cfg.embedding_dim > 0
    assert ("embeddings" in out) == has_emb
    if has_emb:
        assert out["embeddings"]["vec"].shape == (n, 128)
    if n == 0:
        return
    meta = json.loads(path.with_suffix(".json").read_text())
    x = prepare(data["images"], CropSpec.from_metadata(meta, size=cfg.size, color=cfg.color))
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    logits = ref[0] if has_emb else ref
    np.testing.assert_allclose(p, torch.softmax(logits, -1).numpy(), atol=1e-4)
    if has_emb:
        np.testing.assert_allclose(out["embeddings"]["vec"], torch.nn.functional.normalize(ref[1]).numpy(), atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(out["embeddings"]["vec"], axis=1), 1, atol=1e-5)


def test_missing_model_is_a_requirement(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))
    assert Expression.requirements({"model": "expression_gru"}) == [
        "needs model facegraph/expression_gru (facegraph models fetch facegraph/expression_gru)"
    ]
    assert Expression.requirements({"model": "fer_cnn"}) == []  # ships inside the package
    (problem,) = Expression.requirements({"model": "fer_no_such_model"})
    assert "fer_no_such_model" in problem


def test_template_reframes_arcface_crops_to_the_training_framing():
    """A model trained on tighter faces (FER-2013) sees the keypoints of an ArcFace crop where its data had them."""
    from facegraph.nodes.face._align import arcface_template

    template = ((0.32, 0.389), (0.68, 0.389), (0.5, 0.597), (0.354, 0.768), (0.646, 0.768))
    spec = CropSpec.from_metadata({"template": template, "color": "gray"}, size=96, color="gray")
    for side in (112, 224):
        image = np.zeros((side, side, 3), np.uint8)
        for x, y in arcface_template(side):
            cv2.circle(image, (round(x), round(y)), max(2, side // 40), (255, 255, 255), -1)
        out = prepare(image[None], spec)[0, 0]
        found = []
        for x, y in np.asarray(template) * 96:
            patch = out[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7]
            yy, xx = np.mgrid[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7]
            found.append(((xx * patch).sum() / patch.sum(), (yy * patch).sum() / patch.sum()))
        m = spec.crop_matrix(side)
        expected = arcface_template(side) @ m[:, :2].T + m[:, 2]
        assert np.abs(np.array(found) - expected).max() < 0.75  # the warp does what its matrix says
        assert np.abs(np.array(found) - np.asarray(template) * 96).max() < 0.03 * 96  # a close fit to the template
    with pytest.raises(ValueError, match="template must be 5"):
        CropSpec.from_metadata({"template": [[0, 0]]}, size=48, color="gray")
