"""Verification scores (numbers checked against scikit-learn), and dlib's descriptor as a backbone and in `embed`."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from facegraph.nodes.training import verify

SHARED = SHARED_DATA / "identities" / "glint24"


def _has_dlib() -> bool:
    """Installed, judged without the code under test (so a loader that cannot find its weights fails)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


needs_dlib = pytest.mark.skipif(not _has_dlib(), reason="needs the [dlib] extra (pip install 'facegraph[dlib]')")
needs_glint = pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs {SHARED} (shared data)")


def test_scores_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    centres = rng.normal(size=(6, 8))
    vec = centres[labels] + 0.8 * rng.normal(size=(30, 8))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    scores, genuine = verify.pair_scores(vec, labels)
    assert len(scores) == 30 * 29 // 2 and genuine.sum() == 6 * 10
    assert verify.roc_auc(scores, genuine) == pytest.approx(metrics.roc_auc_score(genuine, scores), abs=1e-12)
    tar, threshold = verify.tar_at_far(scores, genuine, far=0.1)
    impostor = scores[~genuine]
    assert (impostor > threshold).mean() <= 0.1 and tar == pytest.approx((scores[genuine] > threshold).mean())
    sim = vec @ vec.T
    np.fill_diagonal(sim, -9)
    assert verify.rank1(vec, labels) == pytest.approx((labels[sim.argmax(1)] == labels).mean())
    same = np.repeat(np.eye(3), 2, axis=0)  # three people, two identical images each: perfect
    assert verify.rank1(same, np.repeat(np.arange(3), 2)) == 1.0


@needs_dlib
@needs_glint
def test_dlib_tells_people_apart_and_runs_in_embed():
    import cv2
    from facegraph.nodes.models._dlib import DlibEmbedder
    from facegraph.nodes.models.embed import Embed

    from facegraph.testing import run_node

    people = sorted(p for p in SHARED.iterdir() if p.is_dir())[:3]
    crops = np.stack([cv2.imread(str(f)) for p in people for f in sorted(p.glob("*.png"))[:2]])
    labels = np.repeat(np.arange(3), 2)
    vec = DlibEmbedder()(crops)
    assert vec.shape == (6, 128) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    scores, genuine = verify.pair_scores(vec, labels)
    assert scores[genuine].min() > scores[~genuine].max()
    out = run_node(Embed(model="dlib"), {"crops": {"images": crops, "matrices": np.zeros((6, 2, 3), np.float32),
                                                   "track_id": np.arange(6, dtype=np.int32)}})
    np.testing.assert_allclose(out["embeddings"]["vec"], vec, atol=1e-5)
    assert out["embeddings"]["track_id"].tolist() == list(range(6))
    both = DlibEmbedder(shape68=True)(crops[:2])
    assert both.shape == (2, 128 + 136) and np.allclose(np.linalg.norm(both, axis=1), 1, atol=1e-5)


def test_dlib_requirement_is_one_line(monkeypatch):
    from facegraph.nodes.models import _dlib
    from facegraph.nodes.models.embed import Embed

    monkeypatch.setattr(_dlib, "missing", lambda: [f"backbone dlib needs dlib and face-recognition-models: "
                                                   f"{_dlib.INSTALL}"])
    (line,) = Embed.requirements({"model": "dlib"})
    assert "pip install 'facegraph[dlib]'" in line


@needs_dlib
def test_dlib_loads_without_pkg_resources(monkeypatch):
    """face-recognition-models' __init__ imports pkg_resources, which new setuptools no longer ships: a fresh
    `pip install -e ".[dlib]"` could not import it. The weights are found without importing the package."""
    import sys

    from facegraph.nodes.models import _dlib

    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # `import pkg_resources` now raises ImportError
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    assert _dlib.missing() == []
    embedder = _dlib.DlibEmbedder()
    assert embedder.dim == 128
