"""embed: a tiny exported iResNet agrees with torch; the arcface maths; the real MobileFaceNet on real faces."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from facegraph import FacegraphError, ModelError, node_class
from facegraph.testing import run_node, run_node_frames

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facegraph.nodes.models import _arcface  # noqa: E402
from facegraph.nodes.nets.iresnet import export_onnx, iresnet  # noqa: E402


def tiny_net(seed: int = 0, dim: int = 32, **kw):
    torch.manual_seed(seed)
    net = iresnet((1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=dim, **kw)
    # non-trivial BN statistics, so the export is checked on more than identities
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("embed") / "tiny_iresnet.onnx"
    net = tiny_net()
    export_onnx(net, path)
    return net, path


def reference(net, crops: np.ndarray) -> np.ndarray:
    x = (crops[..., ::-1].astype(np.float32) - 127.5) / 127.5
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def crops_of(n: int, seed: int = 1, size: int = 112) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "images": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        "matrices": np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)),
        "track_id": np.arange(n, dtype=np.int32) + 7,
    }


@pytest.mark.parametrize("n", [0, 1, 5])
def test_tiny_model_matches_torch(tiny, n):
    net, path = tiny
    crops = crops_of(n)
    out = run_node(node_class("embed")(model=str(path)), {"crops": crops})["embeddings"]
    assert out["vec"].shape == (n, 32) and out["vec"].dtype == np.float32
    np.testing.assert_allclose(out["vec"], reference(net, crops["images"]), atol=1e-4)
    np.testing.assert_array_equal(out["track_id"], crops["track_id"])
    if n:
        np.testing.assert_allclose(np.linalg.norm(out["vec"], axis=1), 1.0, atol=1e-5)


def test_fixed_batch_one_model_is_looped(tmp_path):
    """A model exported with a fixed batch of 1 still embeds several faces per call, in order."""
    net = tiny_net(seed=3, dim=16)
    path = tmp_path / "fixed.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False)
    crops = crops_of(3, seed=4)
    node = node_class("embed")(model=str(path))
    out = run_node(node, {"crops": crops})["embeddings"]
    assert node.embedder.batch == 1
    np.testing.assert_allclose(out["vec"], reference(net, crops["images"]), atol=1e-4)


def test_metadata_normalisation_and_resize(tmp_path):
    """metadata.json's mean/std/colour are applied; crops of another size are resized to the model's."""
    net = tiny_net(seed=5, dim=8)
    path = tmp_path / "bgr.onnx"
    export_onnx(net, path, metadata={"mean": 0.0, "std": 255.0, "color": "bgr"})
    crops = crops_of(2, seed=6)
    out = run_node(node_class("embed")(model=str(path)), {"crops": crops})["embeddings"]
    x = crops["images"].astype(np.float32) / 255.0
    with torch.no_grad():
        ref = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    np.testing.assert_allclose(out["vec"], ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-4)
    big = crops_of(2, seed=6, size=224)
    resized = run_node(node_class("embed")(model=str(path)), {"crops": big})["embeddings"]
    assert resized["vec"].shape == (2, 8)


def test_several_frames_without_track_ids(tiny):
    _, path = tiny
    frames = [{"crops": {k: v for k, v in crops_of(n).items() if k != "track_id"}} for n in (2, 0, 3)]
    outs = run_node_frames(node_class("embed")(model=str(path)), frames)
    assert [o["embeddings"]["vec"].shape[0] for o in outs] == [2, 0, 3]
    assert all("track_id" not in o["embeddings"] for o in outs)


def test_missing_model_is_a_requirement_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))
    cls = node_class("embed")
    problems = cls.requirements(cls.check_params({"model": "buffalo_l/w600k_r50"}))
    assert problems == ["needs model buffalo_l/w600k_r50 (facegraph models fetch buffalo_l)"]
    with pytest.raises(FacegraphError, match=r"needs model buffalo_l/w600k_r50 \(facegraph models fetch buffalo_l\)"):
        run_node(cls(model="buffalo_l/w600k_r50"), {"crops": crops_of(1)})
    assert "not found" in cls.requirements(cls.check_params({"model": str(tmp_path / "nope.onnx")}))[0]


def test_found_in_models_folder_by_name(tiny, tmp_path, monkeypatch):
    _, path = tiny
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))
    (tmp_path / "buffalo_s").mkdir()
    (tmp_path / "buffalo_s" / "w600k_mbf.onnx").write_bytes(path.read_bytes())
    cls = node_class("embed")
    assert cls.requirements(cls.check_params({"model": "w600k_mbf"})) == []
    out = run_node(cls(model="buffalo_s/w600k_mbf"), {"crops": crops_of(2)})["embeddings"]
    assert out["vec"].shape == (2, 32)


def test_bad_metadata_is_a_model_error():
    with pytest.raises(ModelError, match="color"):
        _arcface.normalisation({"color": "hsv"})
    assert json.dumps(_arcface.normalisation({})[2]) == "true"
