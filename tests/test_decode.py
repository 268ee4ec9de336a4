"""The decode source: containers, images, options, the sample clip, HTTP streams and every bad input."""

from __future__ import annotations

import functools
import http.server
import itertools
import logging
import socket
import threading
import time
from pathlib import Path

import facegraph.nodes
import numpy as np
import pytest
from facegraph.nodes.io import _video
from facegraph.nodes.io.decode import Decode

import facegraph
from facegraph import NodeFailure, SourceError
from facegraph.testing import collect


def run_frames(source, max_frames=None, **params) -> list:
    g = facegraph.Graph("t")
    g.add("decode", id="src", source=str(source) if isinstance(source, Path) else source, **params)
    return [r["src.frame"] for r in collect(g, max_frames=max_frames)]


def make_clip(path: Path, n: int = 12, size=(64, 48), fps: float = 25.0, **kw) -> Path:
    w = _video.VideoWriter(path, **kw)
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), (i * 20) % 256, np.uint8), fps)
    w.close()
    return path


def make_av(path: Path, codec: str, pix_fmt: str, sizes: list[tuple[int, int]], fps: int = 10, fmt=None) -> Path:
    """A clip written straight with PyAV: pixel formats and sizes the VideoWriter would normalise."""
    import av

    c = av.open(str(path), "w", format=fmt)
    s = c.add_stream(codec, rate=fps)
    s.width, s.height = sizes[0]
    s.pix_fmt = pix_fmt
    for i, (w, h) in enumerate(sizes):
        shape = (h, w) if pix_fmt == "gray" else (h, w, 4) if pix_fmt == "rgba" else (h, w, 3)
        src_fmt = pix_fmt if pix_fmt in ("gray", "rgba") else "bgr24"
        frame = av.VideoFrame.from_ndarray(np.full(shape, 40 + i * 10, np.uint8), format=src_fmt)
        frame.pts = i
        for p in s.encode(frame):
            c.mux(p)
    for p in s.encode(None):
        c.mux(p)
    c.close()
    return path


# ---------------------------------------------------------------- files of three containers


@pytest.mark.parametrize(
    "name, count, fps, shape",
    [
        ("pyfeat_single_face.mp4", 72, 30.0, (360, 640, 3)),  # MP4 / h264
        ("ytf_1461_01_021_noam_chomsky.avi", 197, 25.0, (240, 320, 3)),  # AVI / mpeg4
        ("pyfeat_face_noface.mov", 169, 26.4, (540, 960, 3)),  # MOV / HEVC, variable rate
    ],
)
def test_decodes_real_videos(shared_video, name, count, fps, shape):
    path = shared_video(name)
    frames = run_frames(path)
    assert len(frames) == count
    assert frames[0].image.shape == shape and frames[0].image.dtype == np.uint8
    assert frames[0].fps == pytest.approx(fps, abs=0.05)
    ts = [f.timestamp for f in frames]
    assert all(b > a for a, b in itertools.pairwise(ts))
    node = Decode(source=str(path))
    node.open()
    try:
        assert node.total_frames() == count and node.live is False
    finally:
        node.close()


def test_generated_clip_round_trip(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", n=15)
    frames = run_frames(clip)
    assert len(frames) == 15
    assert [round(f.timestamp * 25) for f in frames] == list(range(15))
    assert abs(int(frames[5].image.mean()) - 100) <= 8  # yuv420p limited range round trip


# ---------------------------------------------------------------- images, folders, globs


def test_image_folder_and_glob_sorted_with_gray_and_alpha(tmp_path):
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "b.png"), np.full((30, 40), 200, np.uint8))  # grayscale
    cv2.imwrite(str(folder / "a.png"), np.full((20, 40, 4), 50, np.uint8))  # with alpha
    cv2.imwrite(str(folder / "c.jpg"), np.full((25, 35, 3), 120, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    frames = run_frames(folder)
    assert [f.image.shape for f in frames] == [(20, 40, 3), (30, 40, 3), (25, 35, 3)]  # sorted, own shapes
    assert frames[1].image[0, 0].tolist() == [200, 200, 200]
    globbed = run_frames(str(folder / "*.png"))
    assert [f.image.shape for f in globbed] == [(20, 40, 3), (30, 40, 3)]
    single = run_frames(folder / "c.jpg")
    assert len(single) == 1 and single[0].fps == 30.0


def test_each_image_of_a_folder_is_its_own_shot_unless_a_sequence(tmp_path):
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in "abc":
        cv2.imwrite(str(folder / f"{name}.png"), np.full((20, 30, 3), 90, np.uint8))
    assert [f.get("shot") for f in run_frames(folder)] == [0, 1, 2]
    assert [f.get("shot") for f in run_frames(folder, max_frames=5, loop=True)] == [0, 1, 2, 3, 4]  # never repeats
    assert [f.get("shot") for f in run_frames(folder, sequence=True)] == [None, None, None]
    clip = make_clip(tmp_path / "c.mkv", n=3)
    assert [f.get("shot") for f in run_frames(clip, sequence=False)] == [None, None, None]  # a video is one scene


def test_options_every_max_side_color_start_duration(tmp_path):
    import cv2

    clip = tmp_path / "c.mkv"
    w = _video.VideoWriter(clip)
    for i in range(30):
        img = np.zeros((120, 160, 3), np.uint8)
        img[:, :, 2] = 200  # red in BGR
        img[:, :, 0] = i * 5
        w.write(img, 10)
    w.close()
    every = run_frames(clip, every=3)
    assert len(every) == 10 and every[0].fps == pytest.approx(10 / 3)
    small = run_frames(clip, max_side=80)
    assert small[0].image.shape == (60, 80, 3)
    rgb = run_frames(clip, color="rgb", max_frames=1)[0].image
    bgr = run_frames(clip, max_frames=1)[0].image
    assert rgb[..., 0].mean() > 150 and bgr[..., 2].mean() > 150
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    part = run_frames(clip, start=1.0, duration=1.0)
    assert len(part) == 10 and part[0].timestamp == pytest.approx(1.0)
    del cv2


def test_loop_keeps_timestamps_increasing(tmp_path):
    clip = make_clip(tmp_path / "l.mkv", n=5, fps=10)
    frames = run_frames(clip, loop=True, max_frames=12)
    assert len(frames) == 12
    ts = [f.timestamp for f in frames]
    assert all(b > a for a, b in itertools.pairwise(ts))
    assert ts[5] == pytest.approx(0.5)


def test_realtime_paces_at_native_rate(tmp_path):
    clip = make_clip(tmp_path / "r.mkv", n=6, fps=20)
    start = time.monotonic()
    frames = run_frames(clip, realtime=True)
    assert len(frames) == 6
    assert time.monotonic() - start >= 0.2  # 5 intervals of 50 ms; lower bound only


def test_resolution_change_mid_stream(tmp_path):
    a = make_av(tmp_path / "a.ts", "mpeg2video", "yuv420p", [(64, 48)] * 5, fmt="mpegts")
    b = make_av(tmp_path / "b.ts", "mpeg2video", "yuv420p", [(96, 64)] * 5, fmt="mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    frames = run_frames(joined)
    shapes = [f.image.shape for f in frames]
    assert (48, 64, 3) in shapes and (64, 96, 3) in shapes
    assert shapes.index((64, 96, 3)) > shapes.index((48, 64, 3))


@pytest.mark.parametrize("codec, pix_fmt, ext", [("ffv1", "gray", "mkv"), ("png", "rgba", "mov")])
def test_gray_and_alpha_video_become_three_channels(tmp_path, codec, pix_fmt, ext):
    path = make_av(tmp_path / f"v.{ext}", codec, pix_fmt, [(32, 24)] * 4)
    frames = run_frames(path)
    assert len(frames) == 4 and frames[0].image.shape == (24, 32, 3)


# ---------------------------------------------------------------- sample clip


def test_sample_clip_is_deterministic():
    pytest.importorskip("insightface")
    a = run_frames("sample")
    assert len(a) == 90 and a[0].image.shape == (480, 640, 3) and a[0].fps == 30.0
    b = run_frames("sample", max_frames=61)
    np.testing.assert_array_equal(a[60].image, b[60].image)
    assert a[0].image.std() > 20 and not np.array_equal(a[0].image, a[30].image)


# ---------------------------------------------------------------- network streams


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server (a thread of this test process) serving tmp_path."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_http_stream(tmp_path, http_dir):
    make_clip(tmp_path / "s.mp4", n=20, fps=25)
    frames = run_frames(f"{http_dir}/s.mp4", timeout=5.0)
    assert len(frames) == 20 and frames[0].image.shape == (48, 64, 3)
    node = Decode(source=f"{http_dir}/s.mp4")
    node.open()
    try:
        assert node.live is False  # a finite file over HTTP is read whole, never dropped
    finally:
        node.close()
    assert Decode(source="rtsp://127.0.0.1:1/x").live is True


@pytest.fixture
def silent_server():
    """A TCP server that accepts, sends half a response, then stops answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()
    conns = []

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conns.append(conn)
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n\r\n\x00\x00\x00\x18ftyp")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/live.mp4"
    stop.set()
    thread.join(2)
    for c in conns:
        c.close()
    listener.close()


def test_stream_that_stops_answering_is_a_clear_error(silent_server):
    node = Decode(source=silent_server, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        node.open()
        list(node.frames())
    node.close()
    assert silent_server in str(err.value)
    assert time.monotonic() - start < 20
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- bad input


def _open_error(source) -> str:
    g = facegraph.Graph("t")
    g.add("decode", id="src", source=str(source))
    with pytest.raises(NodeFailure) as err:
        collect(g)
    message = str(err.value)
    assert "\n" not in message
    assert isinstance(err.value.__cause__, SourceError)
    return message


def test_missing_file(tmp_path):
    msg = _open_error(tmp_path / "nope.mp4")
    assert "nope.mp4" in msg and "no such file" in msg


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    msg = _open_error(tmp_path / "empty.mp4")
    assert "empty.mp4" in msg and "empty (0 bytes)" in msg


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    msg = _open_error(tmp_path / "text.mp4")
    assert "text.mp4" in msg and "not a readable video" in msg


def test_unsupported_codec(tmp_path):
    avi = make_clip(tmp_path / "m.avi", n=5, codec="mpeg4")
    data = avi.read_bytes()
    assert b"FMP4" in data
    (tmp_path / "odd.avi").write_bytes(data.replace(b"FMP4", b"ZZZZ"))
    msg = _open_error(tmp_path / "odd.avi")
    assert "odd.avi" in msg and "unsupported codec" in msg


def test_empty_folder_and_unmatched_glob(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no images" in _open_error(tmp_path / "empty")
    assert "no images" in _open_error(str(tmp_path / "*.png"))


def test_damaged_image_in_folder(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"garbage")
    g = facegraph.Graph("t")
    g.add("decode", id="src", source=str(tmp_path))
    with pytest.raises(NodeFailure, match=r"b\.png: not a readable image"):
        collect(g)


@pytest.mark.parametrize("ext", ["mkv", "ts"])
def test_truncated_file_keeps_frames_before_damage(tmp_path, caplog, ext):
    clip = make_clip(tmp_path / f"full.{ext}", n=40, size=(64, 48), codec="mpeg4")
    data = clip.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="facegraph"):
        frames = run_frames(cut)
    assert 5 <= len(frames) < 40
    if ext == "mkv":  # MKV states its duration, so the shortfall is noticed; MPEG-TS cannot know
        assert any("truncated" in r.getMessage() or "stopped" in r.getMessage() for r in caplog.records)


def test_truncated_real_avi(shared_video, tmp_path):
    data = shared_video("ytf_1461_01_021_noam_chomsky.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    frames = run_frames(cut)
    assert 50 < len(frames) < 197


def test_camera_that_does_not_exist():
    node = Decode(source=97)
    with pytest.raises(SourceError, match="camera 97"):
        node.open()
    node.close()
    assert node.live is True


def test_close_stops_the_decode_thread(tmp_path):
    clip = make_clip(tmp_path / "t.mkv", n=60)
    node = Decode(source=str(clip), queue_size=2)
    node.open()
    it = node.frames()
    next(it)
    reader = node._reader
    assert reader is not None and reader.thread.is_alive()
    node.close()
    assert not reader.thread.is_alive()
