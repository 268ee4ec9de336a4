"""Quality on real video: smiles raise AU12, open lips AU25, blinks AU45, head turns give plausible yaw and pitch.

Landmarks come from mediapipe's FaceMesh (``solutions.face_mesh``, 468 points) mapped to iBUG 68 with
the landmark node's own table. The frames named below were found by looking at the videos:

* ``pyfeat_single_face.mp4``: neutral in frames 0–15, a broad open-lipped smile (teeth showing)
  from frame 20 to 66, neutral again at 70;
* ``openface_2015-10-15-15-14.avi``: the eyes are closed from frame 130 to about 148; the head turns
  so the nose points to the image's left around frames 415–455 and to its right around 495–515,
  and tips forward (looking down) around 590–610.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from facegraph.nodes.face._au_geometry import ESTIMATED
from facegraph.nodes.face.au import AU
from facegraph.nodes.face.pose import Pose

from facegraph.testing import run_node_frames

pytestmark = pytest.mark.shared


#: the frames of the OpenFace sample the tests look at (FaceMesh runs only on these, to stay fast)
OPENFACE_FRAMES = (*range(0, 140), *range(410, 520), *range(585, 612))


@functools.lru_cache(maxsize=4)
def _landmarks(path: str, max_frames: int, keep: tuple[int, ...] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """iBUG-68 points (T, 68, 2) of the one face in each frame (NaN where none was found or the frame
    is not in ``keep``), and (W, H)."""
    av = pytest.importorskip("av")
    mp = pytest.importorskip("mediapipe")
    from facegraph.nodes.face._facemesh import to_ibug68

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)
    out = []
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= max_frames:
                break
            if keep is not None and i not in keep:
                out.append(np.full((68, 2), np.nan, np.float32))
                continue
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            found = mesh.process(rgb).multi_face_landmarks
            if found:
                pts = np.array([[p.x * w, p.y * h] for p in found[0].landmark], np.float32)
                out.append(to_ibug68(pts[None])[0])
            else:
                out.append(np.full((68, 2), np.nan, np.float32))
    mesh.close()
    return np.stack(out), (w, h)


def _run(node, points: np.ndarray, size: tuple[int, int] | None = None) -> list[dict]:
    frames = []
    for pts in points:
        item = {"landmarks": {"points": pts[None].astype(np.float32), "track_id": np.array([1], np.int32)}}
        if size is not None:
            item["frame"] = {"image": np.zeros((size[1], size[0], 3), np.uint8)}
        frames.append(item)
    return run_node_frames(node, frames)


def _aus(points: np.ndarray) -> np.ndarray:
    assert np.isfinite(points).all(), "FaceMesh lost the face"
    return np.stack([o["aus"]["intensity"][0] for o in _run(AU(), points)])


def _col(aus: np.ndarray, name: str) -> np.ndarray:
    return aus[:, list(ESTIMATED).index(name)]


def test_smile_raises_au12_and_parted_lips_au25(shared_video):
    points, _ = _landmarks(str(shared_video("pyfeat_single_face.mp4")), 100)
    aus = _aus(points)
    au12, au25 = _col(aus, "AU12"), _col(aus, "AU25")
    neutral, smile = slice(0, 15), slice(24, 61)
    assert au12[smile].mean() > 3.0 and au12[neutral].mean() < 1.0
    assert au25[smile].mean() > 2.0 and au25[neutral].mean() < 0.5
    assert _col(aus, "AU15")[smile].mean() < 0.5  # a smile is not a frown
    assert au12[70] < au12[smile].mean() - 1.5  # back towards neutral at the end


def test_blink_raises_au45(shared_video):
    points, _ = _landmarks(str(shared_video("openface_2015-10-15-15-14.avi")), 620, OPENFACE_FRAMES)
    au45 = _col(_aus(points[:140]), "AU45")
    closed, before = au45[131:136], au45[0:125]
    assert closed.mean() > 1.5
    assert closed.mean() > np.percentile(before, 95) + 1.0
    assert np.median(before) < 0.3


def test_head_turns_give_plausible_yaw_and_pitch(shared_video):
    points, size = _landmarks(str(shared_video("openface_2015-10-15-15-14.avi")), 620, OPENFACE_FRAMES)
    kept = np.array(OPENFACE_FRAMES)
    assert np.isfinite(points[kept]).all(), "FaceMesh lost the face"
    outs = _run(Pose(), points[kept], size)  # frames in order, with gaps: each track restarts cleanly
    deg = np.full((len(points), 3), np.nan)
    deg[kept] = np.degrees(np.stack([o["pose"]["rotation"][0] for o in outs]))
    pitch, yaw = deg[:, 0], deg[:, 1]
    assert np.abs(yaw[0:100]).max() < 12  # near-frontal start
    assert 15 < yaw[415:456].mean() < 45  # nose to the image's left: positive yaw (OpenFace)
    assert -45 < yaw[495:516].mean() < -15
    assert 12 < pitch[590:611].mean() < 45  # looking down: positive pitch
    tz = np.stack([o["pose"]["translation"][0] for o in outs])[:, 2]  # kept frames only
    assert 300 < np.median(tz) < 1500  # a person at a desk, in mm
