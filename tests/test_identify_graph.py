"""graphs/identity.yaml and graphs/extract_embeddings.yaml end to end on a real video, with a tiny recognition model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from facegraph import Graph, run

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from facegraph.nodes.nets.iresnet import export_onnx, iresnet

    torch.manual_seed(0)
    net = iresnet((1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=24).eval()
    return export_onnx(net, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_graphs_load_and_name_their_models(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path))
    for name in ("identity", "extract_embeddings"):
        graph = Graph.load(GRAPHS / f"{name}.yaml").check()
        problems = graph.requirements()
        assert any("needs model buffalo_l/w600k_r50 (facegraph models fetch buffalo_l)" in p for p in problems)


def _first_face_crop(video: Path) -> np.ndarray:
    """The ArcFace crop of the video's face on frame 0, as the graph's detect → align would cut it."""
    g = Graph("crop")
    src = g.add("decode", id="src", source=str(video))
    faces = g.add("detect", id="faces", frame=src.frame)
    g.add("align", id="crops", frame=src.frame, faces=faces.faces, size=112)
    first = next(iter(run(g, max_frames=1)))
    images = first["crops.crops"].images
    assert len(images) == 1, "pyfeat_single_face.mp4 shows one face on its first frame"
    return np.ascontiguousarray(images[0])


@pytest.mark.shared
def test_identity_graph_names_the_face_from_its_gallery(shared_video, shared_image, tiny_model, tmp_path):
    """A gallery of this video's own face, another person and noise: every row must name this video's face.

    The model is tiny and untrained, but the same face a few frames later is still far closer to its own
    gallery photo than to Tom Hanks or to noise, so a wrong name (or a swapped gallery) fails this test.
    """
    import cv2

    video = shared_video("pyfeat_single_face.mp4")
    gallery = tmp_path / "people"
    photos = {
        "ada": _first_face_crop(video),
        "tom": cv2.imread(str(shared_image("misc", "insightface_Tom_Hanks_54745.png"))),
        "bob": np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8),
    }
    for person, photo in photos.items():
        (gallery / person).mkdir(parents=True)
        cv2.imwrite(str(gallery / person / "0.png"), photo)
    params = {"emb.model": str(tiny_model), "who.model": str(tiny_model), "who.gallery": str(gallery),
              "who.detector": "none", "who.threshold": -1.0, "who.smooth": 1}
    results = list(run(GRAPHS / "identity.yaml", source=str(video), max_frames=6, output_dir=tmp_path / "out",
                       params=params))
    assert len(results) == 6
    assert (tmp_path / "out" / "identity.mp4").stat().st_size > 0
    with open(tmp_path / "out" / "identity.csv", newline="") as fh:
        rows = list(csv.DictReader(fh, skipinitialspace=True))
    assert len(rows) >= 5, "the detector should find the face of pyfeat_single_face.mp4 on (almost) every frame"
    assert [r["identity"] for r in rows] == ["ada"] * len(rows)
    scores = [float(r["identity_score"]) for r in rows]
    assert min(scores) > 0.9  # its own photo: nearly the same vector


@pytest.mark.shared
def test_extract_embeddings_graph_writes_parquet(shared_video, tiny_model, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="sink.parquet needs a pyarrow that imports here",
                             exc_type=ImportError)
    video = shared_video("pyfeat_single_face.mp4")
    list(run(GRAPHS / "extract_embeddings.yaml", source=str(video), max_frames=5, output_dir=tmp_path,
             params={"emb.model": str(tiny_model)}))
    table = pq.read_table(tmp_path / "embeddings.parquet")
    assert table.num_rows >= 4
    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert emb.shape[1] == 24
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
