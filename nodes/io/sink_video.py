"""``sink.video``: an H.264 MP4 of the frames it gets, at the source's rate, finished even when a run stops early."""

from __future__ import annotations

import logging
from typing import Any

from facegraph import FRAME, Input, Node, Param, register

log = logging.getLogger("facegraph.nodes.sink_video")


@register("sink.video")
class VideoSink(Node):
    """Writes every frame to a video file through PyAV (libx264, yuv420p; another encoder when missing).

    The frame rate is the first Frame's ``fps`` field unless ``fps`` is set. The
    first frame fixes the size (odd sides are padded by one pixel for yuv420p);
    frames of another size are resized to it. ``close()`` flushes the encoder and
    writes the container index, so an error or Ctrl-C still leaves a playable file;
    ``fragmented: true`` writes fragmented MP4, playable even after a hard kill.
    """

    frame = Input(FRAME)
    path = Param(str, "out.mp4", doc="output file, relative to the run's output folder")
    fps = Param(float, 0.0, ge=0, doc="frame rate (0 = the source's, else 30)")
    codec = Param(str, "auto", doc="encoder: auto (libx264, else another H.264, else mpeg4) or an FFmpeg name")
    crf = Param(int, 23, ge=0, le=51, doc="libx264 quality (lower is better and bigger)")
    preset = Param(str, "veryfast", doc="libx264 speed preset")
    color = Param(str, "bgr", choices=("bgr", "rgb"), doc="channel order of the incoming images")
    fragmented = Param(bool, False, doc="fragmented MP4: playable even if the process is killed")

    threads = 2

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """libx264 at 640×480, one thread: about 1.6 ms per frame at ultrafast, more at slower presets."""
        return 1.6 if values["preset"] in ("ultrafast", "superfast") else 3.0

    def open(self) -> None:
        from ._video import VideoWriter

        self.writer = VideoWriter(
            self.context.output_path(self.path),
            codec=self.codec,
            crf=self.crf,
            preset=self.preset,
            threads=self.context.threads,
            fragmented=self.fragmented,
        )

    def process(self, frame: Any) -> None:
        fps = self.fps or float(frame.get("fps") or 0) or 30.0
        self.writer.write(frame.image, fps, self.color)
        return None

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            if writer.count:
                log.info("wrote %d frames to %s (%s)", writer.count, writer.path, writer.encoder)
