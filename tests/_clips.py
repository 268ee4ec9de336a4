"""Short face clips for the batch tests, made from the sample source's photos (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

#: a small face graph for batch tests: decode → detect → landmarks → pose → CSV, plus a delay node
#: (``slow.ms`` keeps a video running long enough to be interrupted; ``slow.fail_at`` fails the longer clips)
GRAPH = """\
name: faces_csv
nodes:
  cam: {type: decode, params: {source: sample}}
  faces: {type: detect, params: {detect_every: 5}, inputs: {frame: cam.frame}}
  mesh: {type: landmarks, inputs: {frame: cam.frame, faces: faces.faces}}
  pose: {type: pose, inputs: {landmarks: mesh.landmarks68, frame: cam.frame}}
  slow: {type: delay, params: {ms: 0.0}, inputs: {value: cam.frame}}
  table:
    type: sink.csv
    params: {path: faces.csv}
    inputs: {frame: cam.frame, faces: mesh.faces, landmarks: mesh.landmarks68, pose: pose.pose}
"""

#: frames of each clip: the first and last are shorter than 10 (``slow.fail_at: 10`` fails the middle one)
LENGTHS = (6, 12, 6)


def write_clips(folder: Path, lengths: tuple[int, ...] = LENGTHS, start: int = 0) -> list[Path]:
    """``clip0.mp4`` ... of consecutive sample frames (H.264, or MPEG-4 where libx264 is missing)."""
    import av
    from facegraph.nodes.io import _sample

    folder.mkdir(parents=True, exist_ok=True)
    frames = [image for image, _ in _sample.sample_frames(frames=start + sum(lengths))][start:]
    paths = []
    at = 0
    for k, n in enumerate(lengths):
        path = folder / f"clip{k}.mp4"
        with av.open(str(path), "w") as out:
            try:
                stream = out.add_stream("libx264", rate=30)
            except Exception:
                stream = out.add_stream("mpeg4", rate=30)
            stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            for image in frames[at : at + n]:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        at += n
        paths.append(path)
    return paths


def manifest(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]
