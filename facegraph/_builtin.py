"""Engine-level nodes that know nothing of faces: a synthetic source and plumbing for tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._node import Input, Node, Output, Param, Source
from ._ports import ANY, FRAME
from ._registry import register


@register("synthetic")
class SyntheticVideo(Source):
    """Frames of a bright square moving over a dark gradient: a deterministic video without files."""

    frame = Output(FRAME)
    source = Param(str, "synthetic", doc="a name for the source (kept for --source compatibility)")
    width = Param(int, 320, ge=8, le=8192)
    height = Param(int, 240, ge=8, le=8192)
    frames_total = Param(int, 30, ge=0, doc="number of frames")
    fps = Param(float, 30.0, ge=0.1)
    camera = Param(bool, False, doc="behave like a live camera: frames may be dropped at the entrance when busy")
    realtime = Param(bool, False, doc="pace frames at fps")

    def frames(self) -> Iterator[dict[str, Any]]:
        base = np.linspace(0, 80, self.width, dtype=np.float32)[None, :, None]
        # C order, explicitly: astype() of the broadcast view keeps its (column-major) strides, and copying
        # that into each frame was a transposing copy, 20 ms at 1080p instead of 0.6 ms
        background = np.broadcast_to(base, (self.height, self.width, 3)).astype(np.uint8, order="C")
        side = max(4, min(self.width, self.height) // 5)
        period = 1.0 / self.fps
        start = time.monotonic()
        for i in range(self.frames_total):
            if self.realtime:
                delay = start + i * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            # drawn straight into its output slot: the process executor then copies nothing
            image = self.output_array("frame", background.shape, background.dtype)
            np.copyto(image, background)
            x = (i * 7) % max(1, self.width - side)
            y = (i * 5) % max(1, self.height - side)
            image[y : y + side, x : x + side] = (40 + i % 200, 200, 255 - i % 200)
            yield {"frame": {"image": image, "timestamp": i * period, "fps": self.fps}}

    @property
    def live(self) -> bool:
        return self.camera

    def total_frames(self) -> int | None:
        return self.frames_total


@register("passthrough")
class PassThrough(Node):
    """Hands its input on unchanged: measures what the engine itself costs per hop."""

    value = Input(ANY)
    out = Output(ANY)
    cost = 0.01

    def process(self, value: Any) -> dict[str, Any]:
        return {"out": value.fields}


@register("delay")
class Delay(Node):
    """Busy-waits or sleeps a fixed time per packet, then passes it on: a node of known cost."""

    value = Input(ANY)
    out = Output(ANY)
    ms = Param(float, 1.0, ge=0, doc="milliseconds per packet")
    busy = Param(bool, False, doc="spin the CPU instead of sleeping")
    fail_at = Param(int, -1, doc="raise at this frame_id (for testing failure handling); -1 never")

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """Its ``ms``: sleeping holds its worker as long as spinning does."""
        return float(values["ms"])

    def process(self, value: Any) -> dict[str, Any]:
        if value.frame_id == self.fail_at:
            raise RuntimeError(f"delay node asked to fail at frame {self.fail_at}")
        if self.busy:
            end = time.perf_counter() + self.ms / 1000
            while time.perf_counter() < end:
                pass
        elif self.ms:
            time.sleep(self.ms / 1000)
        return {"out": value.fields}
