"""Helpers for the real-data face tests: video frames through PyAV, detect → landmarks by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegraph import Packet


def read_frames(path: Path, limit: int | None = None, start: int = 0) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if limit is not None and i >= start + limit:
                break
            if i >= start:
                frames.append(frame.to_ndarray(format="bgr24"))
    return frames


def run_chain(detect, landmarks, frames: list[np.ndarray]) -> list[dict]:
    """Feed frames through opened detect and landmarks nodes; one dict of their outputs per frame."""
    out = []
    for i, image in enumerate(frames):
        frame = Packet(i, 0, "test", {"image": image})
        faces = detect.process(frame=frame)["faces"]
        marks = landmarks.process(frame=frame, faces=Packet(i, 0, "test", faces)) if landmarks else {}
        out.append({"detect": faces, **marks})
    return out
