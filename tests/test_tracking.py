"""The IoU tracker and the landmarks node's identity book (FaceTracks) on synthetic boxes: ids persist,
new faces get new ids, gaps, fast motion, re-identification of lost faces; shot cuts end every track and
an appearance change stops a detection from extending a face."""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.face._tracking import FaceTracks, IoUTracker, ShotCuts, hist_distance, hsv_histogram


def _box(x, y, s=50):
    return [x, y, x + s, y + s]


def test_ids_persist_and_follow_the_face_not_the_order():
    tr = IoUTracker()
    a = tr.update(np.array([_box(0, 0), _box(200, 0)]), 0)
    assert a.tolist() == [0, 1]
    b = tr.update(np.array([_box(205, 2), _box(3, 1)]), 1)  # order swapped
    assert b.tolist() == [1, 0]
    c = tr.update(np.array([_box(8, 2), _box(210, 4), _box(400, 400)]), 2)
    assert c.tolist() == [0, 1, 2]
    assert tr.update(np.zeros((0, 4)), 3).tolist() == []


def test_a_face_missing_for_a_while_keeps_its_id_then_retires():
    tr = IoUTracker(max_age=10)
    tr.update(np.array([_box(0, 0)]), 0)
    assert tr.update(np.array([_box(2, 0)]), 8).tolist() == [0]
    assert tr.update(np.array([_box(2, 0)]), 30).tolist() == [1]


def test_sparse_detection_with_steady_motion_keeps_ids():
    # two faces moving 6 px per frame, detected every 5th frame (30 px apart: IoU alone would fail late)
    tr = IoUTracker()
    switches = 0
    prev = None
    for frame in range(0, 200, 5):
        ids = tr.update(np.array([_box(6 * frame, 0, 60), _box(600 - 6 * frame, 300, 60)]), frame)
        if prev is not None:
            switches += int((ids != prev).sum())
        prev = ids
    assert switches == 0
    assert tr.next_id == 2


def test_crossing_faces_do_not_swap():
    tr = IoUTracker()
    ids = []
    for t in range(40):
        ids.append(tr.update(np.array([_box(10 * t, 0), _box(400 - 10 * t, 120)]), t).tolist())
    assert all(i == [0, 1] for i in ids)


# --- FaceTracks: the landmarks node's identity book -------------------------------------------

def _b(x, y, s=50):
    return np.array([x, y, x + s, y + s], float)


def _run(book, frame, boxes, det_ids=None, looks=None, follow=True):
    ids, followed = book.associate(np.array(boxes).reshape(-1, 4), frame, det_ids, looks)
    if follow:
        for tid, box in zip(ids.tolist(), boxes, strict=True):
            book.follow(tid, box, frame)
    return ids.tolist(), followed.tolist()


def test_facetracks_keep_followed_ids_whatever_the_detector_says():
    book = FaceTracks()
    assert _run(book, 0, [_b(0, 0), _b(200, 0)], np.array([3, 8])) == ([3, 8], [False, False])
    # followed frame by frame; the next detection, 5 frames later, comes with new detector ids
    for f in range(1, 5):
        book.follow(3, _b(10 * f, 0), f)
        book.follow(8, _b(200 - 10 * f, 0), f)
    ids, followed = _run(book, 5, [_b(150, 1), _b(50, 2)], np.array([11, 12]))
    assert ids == [8, 3] and followed == [True, True]


def test_facetracks_gate_on_size_and_distance():
    book = FaceTracks()
    _run(book, 0, [_b(0, 0)])
    assert _run(book, 1, [_b(300, 300)])[0] == [1]  # far away: another face
    assert _run(book, 2, [_b(2, 0, 150)])[0] == [2]  # three times the size: another face


def test_facetracks_reidentify_a_lost_face_nearby_not_far_away():
    book = FaceTracks(max_age=30)
    _run(book, 0, [_b(100, 100), _b(400, 100)], np.array([0, 1]))
    book.lose(0)
    # 8 frames later the face is back 80 px (1.6 sizes) away, with a fresh detector id
    ids, followed = _run(book, 8, [_b(180, 110), _b(400, 100)], np.array([5, 1]))
    assert ids == [0, 1] and followed == [False, True]
    book.lose(0)
    assert _run(book, 9, [_b(100, 400)], np.array([6]))[0] == [6]  # 6 sizes after 1 frame: new
    book.lose(6)
    assert _run(book, 60, [_b(180, 110)], np.array([7]))[0] == [7]  # too long ago: 0 retired


def test_facetracks_appearance_decides_between_lost_faces():
    red, blue, green = np.zeros(8), np.zeros(8), np.zeros(8)
    red[0], blue[5], green[3] = 1.0, 1.0, 1.0
    book = FaceTracks()
    _run(book, 0, [_b(100, 100), _b(200, 100)], looks=[red, blue])
    book.lose(0)
    book.lose(1)
    # both come back between their old places, swapped: the colours tell them apart
    ids, _ = _run(book, 5, [_b(120, 100), _b(180, 100)], looks=[blue, red])
    assert ids == [1, 0]
    book.lose(0)
    assert _run(book, 6, [_b(180, 100)], looks=[green])[0] == [2]  # where 0 was, but not 0's colours


def test_facetracks_new_ids_never_reuse_an_old_one():
    book = FaceTracks(max_age=0)
    assert _run(book, 0, [_b(0, 0)], np.array([4]))[0] == [4]
    book.lose(4)
    assert _run(book, 5, [_b(300, 300), _b(0, 300)], np.array([4, 0]))[0] == [5, 0]


def test_hsv_histogram_and_distance():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = (0, 0, 255)  # red left half (BGR)
    image[:, 50:] = (255, 0, 0)  # blue right half
    red, blue = hsv_histogram(image, _b(0, 0, 40)), hsv_histogram(image, _b(55, 0, 40))
    assert red.sum() == pytest.approx(1.0) and blue.sum() == pytest.approx(1.0)
    assert hist_distance(red, red) == pytest.approx(0.0, abs=1e-3)
    assert hist_distance(red, blue) == pytest.approx(1.0, abs=1e-3)
    assert hist_distance(red, None) == 0.5
    assert hsv_histogram(image, _b(200, 200)) is None


# --- shot cuts and appearance ----------------------------------------------------------------

def _scene(colour, shape=(120, 160)):
    rng = np.random.default_rng(0)
    image = np.empty((*shape, 3), np.uint8)
    image[:] = colour
    return np.clip(image.astype(int) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8)


def test_shot_cuts_from_colour_size_and_shot_number():
    cuts = ShotCuts()
    office, beach = _scene((60, 90, 140)), _scene((200, 180, 40))
    assert not cuts(office)  # the first frame starts the stream, it is no cut
    assert not cuts(np.roll(office, 5, axis=1))  # the same shot, moved
    assert cuts(beach)
    assert not cuts(beach)
    assert cuts(_scene((200, 180, 40), (240, 320)))  # the same colours, another size
    assert cuts(beach, shot=7) and not cuts(beach, shot=7) and cuts(beach, shot=8)
    off = ShotCuts(0.0)
    assert not off(office) and not off(beach)  # histograms off ...
    assert off(beach, shot=1)  # ... a new shot number still counts


def test_a_cut_ends_every_track_and_ids_are_never_reused():
    book = FaceTracks()
    assert _run(book, 0, [_b(100, 100), _b(300, 100)])[0] == [0, 1]
    book.cut()
    assert _run(book, 1, [_b(300, 100), _b(100, 100)])[0] == [2, 3]  # same places, other people
    tr = IoUTracker()
    assert tr.update(np.array([_box(0, 0)]), 0).tolist() == [0]
    tr.cut()
    assert tr.update(np.array([_box(0, 0)]), 1).tolist() == [1]


def test_someone_else_in_the_same_place_does_not_extend_a_followed_face():
    red, blue = np.zeros(8), np.zeros(8)
    red[0], blue[5] = 1.0, 1.0
    for gate, expect in ((0.6, [1]), (1.0, [0])):  # 1.0: the gate off, as before it came
        book = FaceTracks(follow_appearance=gate)
        _run(book, 0, [_b(100, 100)], looks=[red])
        ids, followed = _run(book, 1, [_b(102, 100)], looks=[blue])
        assert ids == expect and followed == [gate == 1.0]
    book = FaceTracks(follow_appearance=0.6)
    _run(book, 0, [_b(100, 100)], looks=[red])
    assert _run(book, 1, [_b(102, 100)], looks=[None])[0] == [0]  # no evidence never vetoes
    assert _run(book, 2, [_b(104, 100)], looks=[red * 0.9 + blue * 0.1])[0] == [0]  # a small change is fine


def test_frame_histogram_picks_the_same_pixels_on_every_size():
    """The fast path (OpenCV's nearest resize where the stride divides the frame) gives the strided copy's bits."""
    import cv2
    from facegraph.nodes.face._tracking import frame_histogram

    rng = np.random.default_rng(3)
    for h, w in ((480, 640), (720, 1280), (481, 643), (240, 320), (36, 50)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        step = max(1, min(h // 72, w // 128))
        small = cv2.resize(np.ascontiguousarray(image[::step, ::step]), (64, 36), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        assert np.array_equal(frame_histogram(image), (hist / max(float(hist.sum()), 1.0)).astype(np.float32))


def test_landmarks_take_the_shot_cut_from_detect_when_it_used_their_threshold():
    """detect's shot number decides (no histogram of its own) when detect looked with the same threshold;
    with another threshold, or without the field, landmarks look at the frame themselves."""
    from facegraph.nodes.face.landmarks import Landmarks

    from facegraph import Packet, RunContext

    office, beach = _scene((90, 60, 40), (120, 160)), _scene((200, 180, 40), (120, 160))

    def decide(node, image, shot=None, threshold=0.25):
        fields = {} if shot is None else {"shot": shot, "shot_cut": threshold}
        return node._new_shot(image, Packet(0, 0, "t", {"image": image}), Packet(0, 0, "t", fields))

    node = Landmarks("mesh", RunContext())
    node._cuts, node._shot = ShotCuts(node.shot_cut), None
    assert not decide(node, office, 0)
    assert decide(node, office, 1)  # detect counted a cut: believed, though this frame looks like the last
    assert not decide(node, beach, 1)  # no new number: no cut, whatever the picture
    node._cuts = ShotCuts(node.shot_cut)
    assert not decide(node, office, 5, threshold=0.5)  # another threshold: our own test, first frame
    assert decide(node, beach, 5, threshold=0.5)  # our histogram sees the cut
    assert not decide(node, beach) and decide(node, office)  # no field at all: our own test too
