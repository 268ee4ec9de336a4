"""The sinks, read back: MP4 (frame count, rate, early stop), OpenFace CSV, JSONL, Parquet, ZMQ, display."""

from __future__ import annotations

import csv
import json
import logging
import socket
import threading
from pathlib import Path

import facegraph.nodes
import numpy as np
import pytest
from facegraph.nodes.io import _openface, _video
from facegraph.nodes.types import AUS, EMBEDDINGS, FACES, IDENTITIES, LANDMARKS, POSE, PROBS

import facegraph
from facegraph import FRAME, Input, Node, NodeFailure, Output, Param, SinkError, register
from facegraph.testing import collect

AU_NAMES = ["AU12", "AU01", "AU45", "AU25"]  # deliberately not in OpenFace order


@register("test.fakefaces")
class FakeFaces(Node):
    """Frame i holds i % 3 faces with made-up but exactly known results of every per-face type."""

    frame = Input(FRAME)
    faces = Output(FACES)
    landmarks = Output(LANDMARKS)
    pose = Output(POSE)
    aus = Output(AUS)
    embeddings = Output(EMBEDDINGS)
    identities = Output(IDENTITIES)
    probs = Output(PROBS)
    points = Param(int, 68)
    name = Param(str, "ann")
    label = Param(str, "happy")

    def process(self, frame):
        n = frame.frame_id % 3
        i = np.arange(n, dtype=np.float32)
        tid = (np.arange(n) + 7).astype(np.int32)
        boxes = np.stack([10 + i, 20 + i, 50 + i, 70 + i], 1).reshape(n, 4).astype(np.float32)
        pts = (np.arange(self.points * 2, dtype=np.float32).reshape(1, self.points, 2) + 100 * i[:, None, None])
        return {
            "faces": {"boxes": boxes, "scores": np.full(n, 0.9, np.float32), "kps": np.zeros((n, 5, 2), np.float32),
                      "track_id": tid},
            "landmarks": {"points": pts.astype(np.float32), "scores": np.full(n, 0.97, np.float32), "track_id": tid},
            "pose": {"rotation": np.tile(np.float32([0.1, -0.2, 0.3]), (n, 1)),
                     "translation": np.tile(np.float32([12.5, -3.25, 500.0]), (n, 1)), "track_id": tid},
            "aus": {"intensity": np.tile(np.float32([1.5, 0.25, 4.0, 2.0]), (n, 1)), "names": list(AU_NAMES),
                    "track_id": tid},
            "embeddings": {"vec": np.tile(np.float32([0.6, 0.8, 0.0]), (n, 1)), "track_id": tid},
            "identities": {"names": [self.name] * n, "scores": np.full(n, 0.75, np.float32), "track_id": tid},
            "probs": {"p": np.tile(np.float32([0.25, 0.75]), (n, 1)), "labels": ["neutral", self.label],
                      "track_id": tid},
        }


def result_graph(sink: str, frames: int = 9, points: int = 68, name: str = "ann", label: str = "happy",
                 **params) -> facegraph.Graph:
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=frames, width=64, height=48)
    fake = g.add("test.fakefaces", id="fake", frame=src.frame, points=points, name=name, label=label)
    g.add(sink, id="out", frame=src.frame, faces=fake.faces, landmarks=fake.landmarks, pose=fake.pose,
          aus=fake.aus, embeddings=fake.embeddings, identities=fake.identities, probs=fake.probs, **params)
    return g


def decode_all(path: Path):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(stream)]
        return frames, stream.average_rate, stream.codec_context.name


# ---------------------------------------------------------------- sink.video


def test_video_sink_frame_count_and_rate(tmp_path):
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=20, width=64, height=48, fps=25.0)
    g.add("sink.video", id="out", frame=src.frame, path="v/out.mp4")
    facegraph.run(g, output_dir=tmp_path).wait()
    frames, rate, codec = decode_all(tmp_path / "v" / "out.mp4")
    assert len(frames) == 20 and rate == 25 and codec == "h264"
    assert frames[0].shape == (48, 64, 3)


def test_video_sink_real_video_keeps_source_rate(shared_video, tmp_path):
    g = facegraph.Graph("t")
    src = g.add("decode", id="src", source=str(shared_video("pyfeat_WolfgangLanger_Pexels.mp4")), duration=1.5)
    g.add("sink.video", id="out", frame=src.frame, path="o.mp4")
    n = len(collect(g, output_dir=tmp_path))
    frames, rate, _ = decode_all(tmp_path / "o.mp4")
    assert len(frames) == n == 36 and float(rate) == pytest.approx(23.976, abs=1e-3)


@register("test.sizes")
class Sizes(facegraph.Source):
    """Frames of changing and odd sizes."""

    frame = Output(FRAME)
    source = Param(str, "x")

    def frames(self):
        for w, h in [(65, 49), (65, 49), (100, 80), (65, 49)]:
            yield {"frame": {"image": np.full((h, w, 3), 90, np.uint8), "fps": 10}}


def test_video_sink_odd_and_changing_sizes(tmp_path):
    g = facegraph.Graph("t")
    src = g.add("test.sizes", id="src")
    g.add("sink.video", id="out", frame=src.frame, path="o.mp4")
    facegraph.run(g, output_dir=tmp_path).wait()
    frames, rate, _ = decode_all(tmp_path / "o.mp4")
    assert len(frames) == 4 and rate == 10
    assert {f.shape for f in frames} == {(50, 66, 3)}  # first size, padded to even sides


def test_video_sink_playable_after_a_failure(tmp_path):
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=30, width=64, height=48)
    bad = g.add("delay", id="bad", value=src.frame, ms=0, fail_at=6)
    g.add("sink.video", id="out", frame=bad.out, path="o.mp4")
    with pytest.raises(NodeFailure):
        facegraph.run(g, output_dir=tmp_path).wait()
    frames, rate, _ = decode_all(tmp_path / "o.mp4")
    assert len(frames) == 6 and rate == 30


def test_encoder_fallback_when_libx264_is_missing(tmp_path, monkeypatch, caplog):
    import av

    real = av.codec.Codec

    def no_x264(name, mode="r"):
        if name in ("libx264", "libopenh264", "h264_videotoolbox"):
            raise av.codec.codec.UnknownCodecError(name) if hasattr(av.codec.codec, "UnknownCodecError") else \
                ValueError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", no_x264)
    monkeypatch.setattr(_video, "_fallback_logged", set())
    with caplog.at_level(logging.WARNING, logger="facegraph"):
        assert _video.pick_encoder() == "mpeg4"
        assert _video.pick_encoder() == "mpeg4"
    assert sum("libx264 is not in this FFmpeg build" in r.getMessage() for r in caplog.records) == 1
    w = _video.VideoWriter(tmp_path / "f.mp4")
    for i in range(5):
        w.write(np.full((48, 64, 3), i * 30, np.uint8), 15)
    w.close()
    frames, rate, codec = decode_all(tmp_path / "f.mp4")
    assert codec == "mpeg4" and len(frames) == 5 and rate == 15


def test_truncated_input_gives_playable_mp4_and_complete_rows(shared_video, tmp_path):
    data = shared_video("ytf_1461_01_021_noam_chomsky.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 3])
    g = facegraph.Graph("t")
    src = g.add("decode", id="src", source=str(cut))
    fake = g.add("test.fakefaces", id="fake", frame=src.frame)
    g.add("sink.video", id="vid", frame=src.frame, path="o.mp4")
    g.add("sink.csv", id="csv", frame=src.frame, faces=fake.faces, path="o.csv")
    n = len(collect(g, output_dir=tmp_path))
    assert 30 < n < 197
    frames, rate, _ = decode_all(tmp_path / "o.mp4")
    assert len(frames) == n and rate == 25
    rows = list(csv.reader(open(tmp_path / "o.csv"), skipinitialspace=True))
    assert len(rows) - 1 == sum(i % 3 for i in range(n))
    assert all(len(r) == len(rows[0]) for r in rows)


# ---------------------------------------------------------------- sink.csv


def official_order() -> list[str]:
    """OpenFace 2.2's 714 columns from ../shared (skips with the reason when it is absent)."""
    from conftest import shared_file

    lines = shared_file("data", "openface_columns.txt").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def test_embedded_openface_names_match_the_official_list():
    order = official_order()
    assert len(order) == 714
    ours = [*_openface.BASE, *_openface.POSE, *_openface.LANDMARKS_68, *(f"{a}_r" for a in _openface.AU_INTENSITY),
            *(f"{a}_c" for a in _openface.AU_PRESENCE)]
    assert [c for c in order if c in ours] == ours


def test_csv_has_openface_header_and_rows(tmp_path):
    facegraph.run(result_graph("sink.csv", path="r.csv"), output_dir=tmp_path).wait()
    text = (tmp_path / "r.csv").read_text()
    assert text.startswith("frame, face_id, timestamp, confidence, success, pose_Tx")
    rows = list(csv.reader(text.splitlines(), skipinitialspace=True))
    header, body = rows[0], rows[1:]
    of_cols = [c for c in header if c in set(official_order())]
    expected = [c for c in official_order() if c in of_cols]
    assert of_cols == expected  # OpenFace's exact names in OpenFace's order
    assert header[: len(of_cols)] == of_cols  # extras only after
    assert of_cols[-4:] == ["AU01_r", "AU12_r", "AU25_r", "AU45_r"]
    assert "gaze_0_x" not in header and "AU01_c" not in header and "X_0" not in header  # never invented
    assert header[len(of_cols):] == ["track_id", "box_x1", "box_y1", "box_x2", "box_y2", "identity",
                                     "identity_score", "prob_neutral", "prob_happy", "emb_0", "emb_1", "emb_2"]
    assert len(body) == sum(i % 3 for i in range(9))
    row = dict(zip(header, body[0], strict=True))
    assert row["frame"] == "2" and row["face_id"] == "7" and row["timestamp"] == "0.033"
    assert row["confidence"] == "0.97" and row["success"] == "1"
    assert (row["pose_Tx"], row["pose_Ty"], row["pose_Rx"], row["pose_Rz"]) == ("12.5", "-3.2", "0.100", "0.300")
    assert (row["x_0"], row["y_0"], row["x_67"], row["y_67"]) == ("0.0", "1.0", "134.0", "135.0")
    assert (row["AU01_r"], row["AU12_r"], row["AU45_r"]) == ("0.25", "1.50", "4.00")
    assert row["identity"] == "ann" and row["prob_happy"] == "0.7500"
    second = dict(zip(header, body[2], strict=True))  # frame 3 has two faces: ids 7 and 8
    assert (second["frame"], second["face_id"], second["x_0"]) == ("3", "8", "100.0")


def test_csv_reads_with_pandas_names(tmp_path):
    pd = pytest.importorskip("pandas")
    facegraph.run(result_graph("sink.csv", path="r.csv", separator=","), output_dir=tmp_path).wait()
    df = pd.read_csv(tmp_path / "r.csv")
    assert list(df.columns[:6]) == ["frame", "face_id", "timestamp", "confidence", "success", "pose_Tx"]
    assert len(df) == 9 and df["AU12_r"].iloc[0] == 1.5


@pytest.mark.parametrize("separator", [", ", ","])
def test_csv_quotes_an_identity_with_a_comma(tmp_path, separator):
    """An identity 'Smith, "Jo"' and a label with a comma stay one field each, with either separator."""
    name, label = 'Smith, "Jo"', "happy, a bit"
    g = result_graph("sink.csv", path="r.csv", separator=separator, name=name, label=label)
    facegraph.run(g, output_dir=tmp_path).wait()
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.reader(fh, skipinitialspace=True))
    header, body = rows[0], rows[1:]
    assert {len(r) for r in body} == {len(header)}
    assert f"prob_{label}" in header
    row = dict(zip(header, body[0], strict=True))
    assert row["identity"] == name and row[f"prob_{label}"] == "0.7500" and row["identity_score"] == "0.7500"
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(tmp_path / "r.csv", skipinitialspace=True)
    assert list(df.columns) == header and (df["identity"] == name).all()


def test_csv_without_text_to_quote_is_written_as_before(tmp_path):
    """Quoting changes only cells that need it: a plain row is OpenFace's ', '-joined cells."""
    facegraph.run(result_graph("sink.csv", path="r.csv"), output_dir=tmp_path).wait()
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert '"' not in "".join(lines)
    assert lines[1].startswith("2, 7, 0.033, 0.97, 1, 12.5, -3.2, 500.0, 0.100, -0.200, 0.300, 0.0, ")


def test_csv_only_what_is_computed_and_other_landmarks(tmp_path):
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=4, width=64, height=48)
    fake = g.add("test.fakefaces", id="fake", frame=src.frame, points=468)
    g.add("sink.csv", id="a", faces=fake.faces, landmarks=fake.landmarks, path="a.csv")
    g.add("sink.csv", id="b", faces=fake.faces, landmarks=fake.landmarks, path="b.csv", other_landmarks=True)
    facegraph.run(g, output_dir=tmp_path).wait()
    a = list(csv.reader(open(tmp_path / "a.csv"), skipinitialspace=True))
    assert a[0] == ["frame", "face_id", "timestamp", "confidence", "success", "track_id", "box_x1", "box_y1",
                    "box_x2", "box_y2"]
    assert a[1][2] == ""  # no frame input: no timestamp, rather than a made-up one
    b = list(csv.reader(open(tmp_path / "b.csv"), skipinitialspace=True))
    assert b[0][-936] == "lmk_x_0" and b[0][-1] == "lmk_y_467" and "x_0" not in b[0]


def test_csv_header_without_any_face(tmp_path):
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=1, width=64, height=48)  # frame 0: no faces
    fake = g.add("test.fakefaces", id="fake", frame=src.frame)
    g.add("sink.csv", id="out", frame=src.frame, faces=fake.faces, pose=fake.pose, aus=fake.aus, path="e.csv")
    facegraph.run(g, output_dir=tmp_path).wait()
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert len(lines) == 1 and "pose_Tx" in lines[0] and "AU45_r" in lines[0]


# ---------------------------------------------------------------- sink.jsonl / sink.parquet


def test_jsonl_records(tmp_path):
    facegraph.run(result_graph("sink.jsonl", points=5, path="r.jsonl"), output_dir=tmp_path).wait()
    recs = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(recs) == 9
    r = recs[0]
    assert list(r)[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert r["pose_Rx"] == pytest.approx(0.1) and r["AU12_r"] == 1.5 and r["embedding"] == [0.6, 0.8, 0.0]
    assert len(r["landmarks"]) == 5 and r["landmarks"][1] == [2.0, 3.0] and r["identity"] == "ann"


def test_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    facegraph.run(result_graph("sink.parquet", frames=30, path="r.parquet", row_group=4), output_dir=tmp_path).wait()
    pf = pq.ParquetFile(tmp_path / "r.parquet")
    assert pf.metadata.num_row_groups > 1  # written incrementally
    table = pf.read()
    assert table.num_rows == sum(i % 3 for i in range(30))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 3)
    assert table.column_names[:6] == ["frame", "face_id", "timestamp", "confidence", "success", "pose_Tx"]
    rows = table.to_pylist()
    assert rows[0]["frame"] == 2 and rows[0]["face_id"] == 7 and rows[0]["x_67"] == 134.0
    np.testing.assert_allclose(rows[0]["embedding"], [0.6, 0.8, 0.0], rtol=1e-6)
    assert rows[0]["AU25_r"] == 2.0 and rows[0]["identity"] == "ann"


def test_parquet_keeps_rows_after_a_failure(tmp_path):
    import pyarrow.parquet as pq

    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=30, width=64, height=48)
    bad = g.add("delay", id="bad", value=src.frame, ms=0, fail_at=10)
    fake = g.add("test.fakefaces", id="fake", frame=bad.out)
    g.add("sink.parquet", id="out", faces=fake.faces, path="p.parquet")
    with pytest.raises(NodeFailure):
        facegraph.run(g, output_dir=tmp_path).wait()
    assert pq.read_table(tmp_path / "p.parquet").num_rows == sum(i % 3 for i in range(10))


# ---------------------------------------------------------------- unwritable outputs


@pytest.mark.parametrize("sink", ["sink.video", "sink.csv", "sink.jsonl", "sink.parquet"])
def test_unwritable_output_folder(tmp_path, sink):
    (tmp_path / "file").write_text("a file, not a folder")
    target = tmp_path / "file" / "sub" / "out.dat"
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=2, width=64, height=48)
    if sink == "sink.video":
        g.add(sink, id="out", frame=src.frame, path=str(target))
    else:
        fake = g.add("test.fakefaces", id="fake", frame=src.frame)
        g.add(sink, id="out", faces=fake.faces, path=str(target))
    with pytest.raises(NodeFailure) as err:
        facegraph.run(g, output_dir=tmp_path).wait()
    assert isinstance(err.value.__cause__, SinkError)
    assert str(target) in str(err.value) and "cannot write" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- sink.zmq


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zmq_publishes_msgpack_per_frame():
    import msgpack
    import zmq

    address = f"tcp://127.0.0.1:{_free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(address)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    received: list[dict] = []

    def listen():
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        while len(received) < 12 and poller.poll(5000):
            received.append(msgpack.unpackb(sub.recv(), raw=False))

    thread = threading.Thread(target=listen)
    thread.start()
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=12, width=64, height=48, realtime=True, fps=100.0)
    fake = g.add("test.fakefaces", id="fake", frame=src.frame)
    g.add("sink.zmq", id="out", frame=src.frame, faces=fake.faces, landmarks=fake.landmarks, aus=fake.aus,
          pose=fake.pose, probs=fake.probs, address=address, settle=0.5)
    try:
        facegraph.run(g).wait()
        thread.join(10)
    finally:  # a context left open with a live socket would block interpreter exit in Context.__del__
        sub.close(0)
        ctx.term()
    assert received, "the subscriber got no message"
    assert [m["frame_id"] for m in received] == sorted(m["frame_id"] for m in received)
    msg = next(m for m in received if len(m["faces"]) == 2)
    face = msg["faces"][1]
    assert face["track_id"] == 8 and face["box"] == [11.0, 21.0, 51.0, 71.0]
    assert len(face["landmarks"]) == 68 and face["aus"]["AU12"] == 1.5 and face["probs"]["happy"] == 0.75
    assert face["pose"]["T"] == pytest.approx([12.5, -3.25, 500.0]) and isinstance(msg["timestamp"], float)


def test_zmq_address_in_use_is_a_sink_error():
    import zmq

    address = f"tcp://127.0.0.1:{_free_port()}"
    ctx = zmq.Context()
    holder = ctx.socket(zmq.PUB)
    holder.bind(address)
    try:
        g = facegraph.Graph("t")
        src = g.add("synthetic", id="src", frames_total=2, width=64, height=48)
        fake = g.add("test.fakefaces", id="fake", frame=src.frame)
        g.add("sink.zmq", id="out", faces=fake.faces, address=address, settle=0)
        with pytest.raises(NodeFailure, match="cannot bind"):
            facegraph.run(g).wait()
    finally:
        holder.close(0)
        ctx.term()


# ---------------------------------------------------------------- sink.display


def test_display_without_screen_warns_once_and_runs(monkeypatch, caplog):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=5, width=64, height=48)
    g.add("sink.display", id="out", frame=src.frame)
    with caplog.at_level(logging.WARNING, logger="facegraph"):
        assert len(collect(g)) == 5
    warnings = [r.getMessage() for r in caplog.records if "no display" in r.getMessage()]
    assert len(warnings) == 1


def test_display_q_key_stops_the_run_cleanly(monkeypatch):
    import cv2

    monkeypatch.setenv("DISPLAY", ":99")
    shown = []
    monkeypatch.setattr(cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord("q") if len(shown) >= 3 else -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    g = facegraph.Graph("t")
    src = g.add("synthetic", id="src", frames_total=50, width=64, height=48)
    g.add("sink.display", id="out", frame=src.frame)
    results = collect(g)
    assert len(shown) == 3 and len(results) == 3


def test_parquet_constant_columns_for_session_and_label(tmp_path):
    """extract_embeddings' session and label columns: constants, '{source}' = the source file's stem."""
    import pyarrow.parquet as pq
    from facegraph.nodes.io.sink_parquet import ParquetSink

    from facegraph import RunContext
    from facegraph.testing import run_node

    node = ParquetSink("out", RunContext(output_dir=tmp_path), path="e.parquet",
                       constants={"session": "{source}", "label": "happy"})
    faces = {"boxes": np.zeros((2, 4), np.float32), "scores": np.ones(2, np.float32),
             "kps": np.zeros((2, 5, 2), np.float32)}
    run_node(node, {"faces": faces, "embeddings": {"vec": np.ones((2, 8), np.float32)}}, source="/data/clip01.mp4")
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column_names[-3:] == ["embedding", "session", "label"]
    assert table.column("session").to_pylist() == ["clip01", "clip01"]
    assert table.column("label").to_pylist() == ["happy", "happy"]
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[8]"


def test_cell_formatter_writes_what_format_value_writes():
    """The per-column formatter the CSV sink uses is format_value with the column's rule looked up once."""
    from facegraph.nodes.io import _openface as of

    columns = ["frame", "face_id", "timestamp", "confidence", "success", "track_id", "identity", "pose_Tx",
               "pose_Rz", "x_0", "y_67", "box_x1", "lmk_x_3", "AU01_r", "AU45_c", "prob_happy", "identity_score",
               "emb_0", "gaze_angle_x"]
    values = [None, "a, b", 0, 7, -3, 1.23456789, -0.0004, 2.5, 1e-9, 123456.789, float("nan"), np.float32(0.1),
              np.int64(12), True, 3.999999]
    for column in columns:
        cell = of.cell_formatter(column)
        for value in values:
            if of.precision(column) is None and isinstance(value, float) and value != value:
                continue  # int(nan) raises in both
            assert cell(value) == of.format_value(column, value), (column, value)
