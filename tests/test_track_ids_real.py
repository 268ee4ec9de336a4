"""Track ids on real faces (../shared) that cannot pass when an id continues onto another person.

Counting distinct ids (the older test) cannot see two tracks swapping ids or an id carried
over a shot cut; these tests name every output row by who it really is and fail when one track
holds two people: two real clips cut together, two real faces crossing, unrelated photos of
a folder. The checks are shown to bite: the cut check fails on the trackers as they were (shot
cuts and the appearance gate off: the id went on across the cut), the crossing check fails on
its own rows with the ids exchanged after the crossing (the old tracker already kept these two
apart), and the folder's photos share an id when the folder is declared a sequence.
"""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.face._nms import iou_matrix
from facegraph.nodes.face.detect import Detect
from facegraph.nodes.face.landmarks import Landmarks

import facegraph
from facegraph import Packet
from facegraph.testing import collect

pytestmark = pytest.mark.shared

BEFORE_DETECT = {"shot_cut": 0.0}
BEFORE_MARKS = {"shot_cut": 0.0, "track_appearance": 1.0}


def read_frames(path, count: int, start: int = 0) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                out.append(frame.to_ndarray(format="bgr24"))
    return out


def letterbox(image: np.ndarray, w: int = 640, h: int = 360) -> np.ndarray:
    import cv2

    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = round(image.shape[1] * scale), round(image.shape[0] * scale)
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def track(frames: list[np.ndarray], every: int = 5, det: dict | None = None, mark: dict | None = None):
    """Per frame (track ids [N], boxes [N, 4]) from detect → landmarks, run in this process."""
    detect, marks = Detect(detect_every=every, **(det or {})), Landmarks(**(mark or {}))
    detect.open()
    marks.open()
    out = []
    for i, image in enumerate(frames):
        frame = Packet(i, 0, "t", {"image": image})
        faces = detect.process(frame=frame)["faces"]
        got = marks.process(frame=frame, faces=Packet(i, 0, "t", faces))["faces"]
        out.append((got["track_id"].tolist(), got["boxes"].copy()))
    detect.close()
    marks.close()
    return out


def people_per_track(rows: list[tuple[int, int]]) -> dict[int, set[int]]:
    """track id → the people (truth) its rows belong to; a pure tracker gives one each."""
    found: dict[int, set[int]] = {}
    for tid, who in rows:
        found.setdefault(tid, set()).add(who)
    return found


@pytest.fixture(scope="module")
def two_clips():
    from conftest import shared_file

    a = read_frames(shared_file("data", "videos", "openface_2015-10-15-15-14.avi"), 40)
    b = read_frames(shared_file("data", "videos", "pyfeat_single_face.mp4"), 40)
    return [letterbox(f) for f in a + b]  # one frame size, so only the pictures tell the cut


def test_a_cut_between_two_clips_ends_every_track(two_clips):
    for every in (1, 5):
        out = track(two_clips, every)
        rows = [(tid, i >= 40) for i, (ids, _) in enumerate(out) for tid in ids]
        mixed = {t: p for t, p in people_per_track(rows).items() if len(p) > 1}
        assert not mixed, f"detect_every {every}: tracks {sorted(mixed)} go on across the cut"
        assert sum(len(ids) == 1 for ids, _ in out) >= 0.9 * len(out)  # both people followed throughout
    before = track(two_clips, 5, BEFORE_DETECT, BEFORE_MARKS)  # the check bites: ids carried over the cut
    rows = [(tid, i >= 40) for i, (ids, _) in enumerate(before) for tid in ids]
    assert any(len(p) > 1 for p in people_per_track(rows).values())


def _face_cards(shared_image) -> list[np.ndarray]:
    """Two real faces, cut from a group photo with some margin, 140 px square."""
    import cv2

    photo = cv2.imread(str(shared_image("misc", "pyfeat_multi_face.jpg")))
    detect = Detect()
    detect.open()
    faces = detect.process(frame=Packet(0, 0, "t", {"image": photo}))["faces"]
    detect.close()
    boxes = faces["boxes"][np.argsort(-(faces["boxes"][:, 2] - faces["boxes"][:, 0]))][:2]
    cards = []
    for x1, y1, x2, y2 in boxes:
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, 0.8 * max(x2 - x1, y2 - y1)
        crop = photo[int(max(0, cy - half)):int(cy + half), int(max(0, cx - half)):int(cx + half)]
        cards.append(cv2.resize(crop, (140, 140), interpolation=cv2.INTER_AREA))
    return cards


def crossing(cards: list[np.ndarray], n: int = 60) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two faces walking past each other on a grey wall, the first in front; frames and true boxes [2, 4]."""
    frames, truth = [], []
    for t in range(n):
        image = np.full((360, 640, 3), 110, np.uint8)
        xs = (40 + round(460 * t / (n - 1)), 500 - round(460 * t / (n - 1)))
        boxes = []
        for card, x in reversed(list(zip(cards, xs, strict=True))):  # the second first: the first lies on top
            image[110:250, x:x + 140] = card
            boxes.append([x, 110, x + 140, 250])
        frames.append(image)
        truth.append(np.array(boxes[::-1], np.float64))
    return frames, truth


def crossing_rows(out, truth) -> list[tuple[int, int]]:
    """(track id, person) for every row the truth names: the card its box lies in, while the two
    cards overlap by less than a third (behind the other, a face is nobody's to name)."""
    rows = []
    for (ids, boxes), cards in zip(out, truth, strict=True):
        if iou_matrix(cards[:1], cards[1:])[0, 0] > 0.2 or not ids:
            continue
        overlap = iou_matrix(np.asarray(boxes, np.float64), cards)
        rows += [(tid, int(np.argmax(o))) for tid, o in zip(ids, overlap, strict=True) if o.max() > 0.1]
    return rows


def test_two_faces_crossing_never_swap_ids(shared_image):
    frames, truth = crossing(_face_cards(shared_image))
    for every in (1, 5):
        rows = crossing_rows(track(frames, every), truth)
        mixed = {t: p for t, p in people_per_track(rows).items() if len(p) > 1}
        assert not mixed, f"detect_every {every}: tracks {sorted(mixed)} hold both faces"
        assert {who for _, who in rows} == {0, 1} and len(rows) >= 0.8 * 2 * len(
            [c for c in truth if iou_matrix(c[:1], c[1:])[0, 0] <= 0.2])  # both seen, nearly always


def test_a_swap_fails_the_crossing_check(shared_image):
    """The purity check itself: the same rows with the ids exchanged after the crossing are caught."""
    frames, truth = crossing(_face_cards(shared_image))
    out = track(frames, 1)
    half = len(out) // 2
    swapped = [([{a: b, b: a}.get(t, t) for t in ids], boxes) if i > half else (ids, boxes)
               for i, (ids, boxes) in enumerate(out) for a, b in [tuple(out[0][0][:2])]]
    assert any(len(p) > 1 for p in people_per_track(crossing_rows(swapped, truth)).values())


def test_unrelated_photos_of_a_folder_never_share_a_track(tmp_path, shared_image, executor):
    import shutil

    for name in ("a.jpg", "b.jpg"):  # the same photo twice: only the folder's own streams tell them apart
        shutil.copy(shared_image("misc", "pyfeat_single_face.jpg"), tmp_path / name)
    ids = {}
    for sequence in (False, True):
        g = facegraph.Graph("folder")
        src = g.add("decode", id="src", source=str(tmp_path), sequence=sequence)
        det = g.add("detect", id="det", detect_every=5, frame=src)
        g.add("landmarks", id="mesh", frame=src, faces=det)
        ids[sequence] = [r["mesh.faces"].track_id.tolist() for r in collect(g, executor)]
    assert len(ids[False]) == 2 and all(len(i) == 1 for i in ids[False])
    assert ids[False][0] != ids[False][1]  # each photo its own stream: no id carried
    assert ids[True][0] == ids[True][1] and len(ids[True][0]) == 1  # a sequence: one face, one track
