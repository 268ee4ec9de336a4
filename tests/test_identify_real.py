"""embed + identify with the real MobileFaceNet (128-D) on the OpenFace sample videos.

Faces are found with SCRFD-500M (../shared/models) through insightface's SCRFD
class, used here in the test only, and aligned to the ArcFace template. In
openface_multi_face.avi the three people keep their left-to-right order in
frames 0, 100 and 300 (all three fully in frame and well apart; later on they
cross, or one is cut by the frame edge), so sorting the boxes by x names them. The man near the camera in
that video scores 0.44–0.58 against the man of the single-person video, between
the same-person and different-person ranges (it may be the same person), so
the tests leave that pair out.
"""

from __future__ import annotations

import numpy as np
import pytest

from facegraph import node_class
from facegraph.testing import run_node

pytestmark = pytest.mark.shared

SINGLE = "openface_2015-10-15-15-14.avi"
MULTI = "openface_multi_face.avi"
PEOPLE = ("blond", "glasses", "asian")  # left to right in MULTI frames 0, 100, 300


def read_frames(path, wanted: set[int]) -> dict[int, np.ndarray]:
    import av

    out = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="bgr24")
            if i >= max(wanted):
                break
    return out


@pytest.fixture(scope="module")
def faces(request):
    """{'man': [crops...], 'blond': [...], ...} plus the raw frames, from the two videos."""
    pytest.importorskip("av")
    scrfd_mod = pytest.importorskip("insightface.model_zoo.scrfd")
    from conftest import shared_file
    from facegraph.nodes.face._align import align

    det = scrfd_mod.SCRFD(str(shared_file("models", "scrfd_500m_det_500m.onnx")))
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    crops: dict[str, list[np.ndarray]] = {"man": [], **{p: [] for p in PEOPLE}}
    single = read_frames(shared_file("data", "videos", SINGLE), {0, 200, 400, 800})
    for img in single.values():
        _, kps = det.detect(img)
        assert len(kps) == 1
        crops["man"].append(align(img, kps[0])[0])
    multi = read_frames(shared_file("data", "videos", MULTI), {0, 100, 300})
    for img in multi.values():
        boxes, kps = det.detect(img)
        assert len(boxes) == 3
        for person, j in zip(PEOPLE, np.argsort(boxes[:, 0]), strict=True):
            crops[person].append(align(img, kps[j])[0])
    return crops, single


@pytest.fixture(scope="module")
def model_path():
    from conftest import shared_file

    return shared_file("models", "mobilefacenet_128d.onnx")


def embed_all(model_path, crops: list[np.ndarray]) -> np.ndarray:
    images = np.stack(crops)
    out = run_node(node_class("embed")(model=str(model_path)), {
        "crops": {"images": images, "matrices": np.zeros((len(images), 2, 3), np.float32)}
    })
    return out["embeddings"]["vec"]


def test_embed_real_model_same_people_match(faces, model_path):
    crops, _ = faces
    names = [n for n, cs in crops.items() for _ in cs]
    vec = embed_all(model_path, [c for cs in crops.values() for c in cs])
    assert vec.shape == (len(names), 128), "D must come from the model (128 for MobileFaceNet)"
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    sim = vec @ vec.T
    same = {p: [] for p in crops}
    different = {p: [] for p in crops}
    skip = {("man", "glasses"), ("glasses", "man")}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i < j and a == b:
                same[a].append(sim[i, j])
            elif a != b and (a, b) not in skip:
                different[a].append(sim[i, j])
    for person in crops:
        # every same-person pair beats every different-person pair of that person, with room to spare
        assert min(same[person]) > max(different[person]) + 0.1, (person, min(same[person]), max(different[person]))
    assert np.mean([s for v in same.values() for s in v]) > 0.6
    assert max(s for v in different.values() for s in v) < 0.45


def test_identify_real_gallery_of_crops(faces, model_path, tmp_path):
    """A folder of aligned crops (first frame of each person) names the other frames of the same people."""
    import cv2

    crops, _ = faces
    root = tmp_path / "gallery"
    for person in ("man", "blond", "asian"):
        (root / person).mkdir(parents=True)
        cv2.imwrite(str(root / person / "0.png"), crops[person][0])
    probes = [(p, c) for p in ("man", "blond", "asian") for c in crops[p][1:]]
    vec = embed_all(model_path, [c for _, c in probes])
    node = node_class("identify")(gallery=str(root), model=str(model_path), threshold=0.35)
    out = run_node(node, {"embeddings": {"vec": vec}})["identities"]
    assert out["names"] == [p for p, _ in probes]
    assert (out["scores"] > 0.35).all()


def test_identify_real_gallery_of_photos_via_mediapipe(faces, model_path, tmp_path):
    """Whole video frames as gallery photos: faces found by BlazeFace and aligned by the gallery builder."""
    import cv2

    crops, single = faces
    root = tmp_path / "photos"
    (root / "man").mkdir(parents=True)
    for i in (0, 400):
        cv2.imwrite(str(root / "man" / f"frame{i}.jpg"), single[i])
    vec = embed_all(model_path, [crops["man"][1], crops["man"][3], crops["blond"][0], crops["asian"][1]])
    node = node_class("identify")(gallery=str(root), model=str(model_path), threshold=0.35)
    out = run_node(node, {"embeddings": {"vec": vec}})["identities"]
    assert out["names"] == ["man", "man", "", ""]
    assert out["scores"][:2].min() > 0.6 and out["scores"][2:].max() < 0.35
