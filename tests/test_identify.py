"""identify: matching, thresholds, smoothing, .npz and folder galleries, and the gallery cache (tiny models)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from facegraph.nodes.models import _gallery

from facegraph import FacegraphError, node_class
from facegraph.testing import run_node, run_node_frames


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def npz_gallery(tmp_path):
    path = tmp_path / "people.npz"
    np.savez(path, names=np.array(["ada", "ada", "bob"]), vectors=unit([[1, 0, 0, 0], [1, 0.2, 0, 0], [0, 1, 0, 0]]))
    return path


def identify(gallery, **kw):
    return node_class("identify")(gallery=str(gallery), **kw)


@pytest.mark.parametrize(
    ("vectors", "names"),
    [
        (np.zeros((0, 4)), []),
        ([[1, 0.1, 0, 0]], ["ada"]),
        ([[0, 1, 0.1, 0], [0.9, 0, 0, 0.1], [0, 0, 1, 0]], ["bob", "ada", ""]),
    ],
)
def test_npz_gallery_matches(npz_gallery, vectors, names):
    vec = unit(vectors) if len(vectors) else np.zeros((0, 4), np.float32)
    tid = np.arange(len(vec), dtype=np.int32)
    out = run_node(identify(npz_gallery), {"embeddings": {"vec": vec, "track_id": tid}})["identities"]
    assert out["names"] == names
    assert out["scores"].shape == (len(names),) and out["scores"].dtype == np.float32
    np.testing.assert_array_equal(out["track_id"], tid)
    if names:
        assert out["scores"][0] > 0.9


def test_threshold_unknown_name_and_reduce(npz_gallery):
    vec = unit([[1, 0.6, 0, 0]])
    plain = run_node(identify(npz_gallery, threshold=0.95), {"embeddings": {"vec": vec}})["identities"]
    assert plain["names"] == [""] and plain["scores"][0] < 0.95
    named = run_node(identify(npz_gallery, threshold=0.95, unknown="unknown"), {"embeddings": {"vec": vec}})
    assert named["identities"]["names"] == ["unknown"]
    best = run_node(identify(npz_gallery, reduce="max"), {"embeddings": {"vec": unit([[1, 0.2, 0, 0]])}})
    assert best["identities"]["scores"][0] == pytest.approx(1.0, abs=1e-6)


def test_smoothing_keeps_the_majority_name(npz_gallery):
    ada, bob = unit([[1, 0, 0, 0]]), unit([[0, 1, 0, 0]])
    frames = [{"embeddings": {"vec": v, "track_id": np.array([3], np.int32)}} for v in (ada, ada, bob, ada, bob, bob)]
    outs = run_node_frames(identify(npz_gallery, smooth=3), frames)
    assert [o["identities"]["names"][0] for o in outs] == ["ada", "ada", "ada", "ada", "bob", "bob"]
    raw = run_node_frames(identify(npz_gallery), frames)
    assert [o["identities"]["names"][0] for o in raw] == ["ada", "ada", "bob", "ada", "bob", "bob"]


def test_dimension_mismatch_is_one_clear_line(npz_gallery):
    with pytest.raises(FacegraphError, match="gallery vectors are 4-D but the embeddings are 3-D"):
        run_node(identify(npz_gallery), {"embeddings": {"vec": unit([[1, 0, 0]])}})


def test_requirements(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path / "models"))
    cls = node_class("identify")
    assert "needs gallery" in cls.requirements(cls.check_params({"gallery": str(tmp_path / "nobody")}))[0]
    (tmp_path / "people").mkdir()
    problems = cls.requirements(cls.check_params({"gallery": str(tmp_path / "people")}))
    assert problems == ["needs model buffalo_l/w600k_r50 (facegraph models fetch buffalo_l)"]
    np.savez(tmp_path / "g.npz", names=np.array(["a"]), vectors=np.ones((1, 4), np.float32))
    assert cls.requirements(cls.check_params({"gallery": str(tmp_path / "g.npz")})) == []


def test_bad_npz_is_a_model_error(tmp_path):
    np.savez(tmp_path / "bad.npz", people=np.array(["a"]))
    with pytest.raises(FacegraphError, match="lacks 'names'"):
        run_node(identify(tmp_path / "bad.npz"), {"embeddings": {"vec": unit([[1, 0]])}})


# --- folder galleries with a tiny exported model --------------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("onnx")
    from facegraph.nodes.nets.iresnet import export_onnx, iresnet

    torch.manual_seed(0)
    net = iresnet((1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=24).eval()
    return export_onnx(net, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def face_images(seed: int, n: int) -> list[np.ndarray]:
    """n noisy variants of one random 112×112 'face' per seed: a person the tiny net can tell apart."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (112, 112, 3)).astype(np.int16)
    return [np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.fixture
def folder_gallery(tmp_path):
    import cv2

    root = tmp_path / "gallery"
    for seed, person in ((1, "ada"), (2, "bob")):
        (root / person).mkdir(parents=True)
        for i, img in enumerate(face_images(seed, 2)):
            cv2.imwrite(str(root / person / f"{i}.png"), img)
    cv2.imwrite(str(root / "cyd.png"), face_images(3, 1)[0])  # a loose image names its person by stem
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_gallery_is_built_cached_and_rebuilt(folder_gallery, tiny_model):
    import cv2
    from facegraph.nodes.models._arcface import Embedder

    embedder = Embedder(tiny_model)
    probes = np.stack([face_images(2, 3)[2], face_images(1, 3)[2], face_images(3, 2)[1]])
    vec = embedder(probes)
    node = identify(folder_gallery, model=str(tiny_model), detector="none", threshold=0.5)
    out = run_node(node, {"embeddings": {"vec": vec}})["identities"]
    assert out["names"] == ["bob", "ada", "cyd"]
    assert node.built and node.cache_file.name.startswith(".facegraph-gallery-")
    assert node.book.people == ["ada", "bob", "cyd"] and len(node.book.vectors) == 5

    again = identify(folder_gallery, model=str(tiny_model), detector="none", threshold=0.5)
    assert run_node(again, {"embeddings": {"vec": vec}})["identities"]["names"] == ["bob", "ada", "cyd"]
    assert not again.built, "an unchanged gallery must come from the cache"

    # a changed image (new mtime) rebuilds; so does a new person
    img = folder_gallery / "ada" / "0.png"
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10_000_000))
    (folder_gallery / "dan").mkdir()
    cv2.imwrite(str(folder_gallery / "dan" / "x.png"), face_images(4, 1)[0])
    third = identify(folder_gallery, model=str(tiny_model), detector="none")
    run_node(third, {"embeddings": {"vec": vec}})
    assert third.built and third.book.people == ["ada", "bob", "cyd", "dan"]


def test_cache_is_keyed_by_model(folder_gallery, tiny_model, tmp_path):
    from facegraph.nodes.nets.iresnet import export_onnx, iresnet

    torch.manual_seed(9)
    other = export_onnx(iresnet((1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=16).eval(), tmp_path / "o.onnx")
    a = identify(folder_gallery, model=str(tiny_model), detector="none")
    b = identify(folder_gallery, model=str(other), detector="none")
    run_node(a, {"embeddings": {"vec": np.zeros((0, 24), np.float32)}})
    run_node(b, {"embeddings": {"vec": np.zeros((0, 16), np.float32)}})
    assert b.built and a.cache_file != b.cache_file and b.book.dim == 16


def test_empty_gallery_folder_fails_cleanly(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacegraphError, match="gallery folder has no images"):
        run_node(identify(tmp_path / "empty", model=str(tiny_model)), {"embeddings": {"vec": np.zeros((0, 24), "f4")}})


def test_gallery_round_trips_through_npz(tmp_path):
    g = _gallery.Gallery.from_rows(["b", "a", "b"], unit([[1, 0], [0, 1], [1, 0.1]]), ["1", "2", "3"])
    g.save(tmp_path / "g.npz", key="k")
    back = _gallery.Gallery.load(tmp_path / "g.npz")
    assert back.people == ["a", "b"] and back.files == ["1", "2", "3"]
    np.testing.assert_allclose(back.vectors, g.vectors)
