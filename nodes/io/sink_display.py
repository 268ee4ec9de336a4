"""``sink.display``: shows frames in an OpenCV window; q or Esc (or closing the window) stops the run cleanly.

Without a display (no $DISPLAY / $WAYLAND_DISPLAY on Linux, or an OpenCV built
without a GUI) it logs one clear warning and ignores frames, so a graph with a
display still runs headless.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from facegraph import FRAME, Input, Node, Param, StopRun, register

log = logging.getLogger("facegraph.nodes.sink_display")


def display_available() -> bool:
    """A screen to draw on: always on macOS and Windows, $DISPLAY or $WAYLAND_DISPLAY on Linux."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@register("sink.display")
class DisplaySink(Node):
    """An OpenCV window titled ``title``; keys q / Esc end the run with StopRun."""

    frame = Input(FRAME)
    title = Param(str, "facegraph", doc="window title")
    color = Param(str, "bgr", choices=("bgr", "rgb"), doc="channel order of the incoming images")
    max_side = Param(int, 0, ge=0, doc="shrink big frames to this long side on screen (0 = as is)")

    @classmethod
    def estimate_cost(cls, values: dict[str, Any]) -> float:
        """Nothing without a screen (frames are ignored); about 0.5 ms per shown frame."""
        return 0.5 if display_available() else 0.0

    def open(self) -> None:
        self.enabled = display_available()
        self.shown = False
        if not self.enabled:
            log.warning("sink.display '%s': no display found ($DISPLAY/$WAYLAND_DISPLAY unset); frames are not shown",
                        self.id)

    def process(self, frame: Any) -> None:
        if not self.enabled:
            return None
        import cv2

        image = frame.image
        if self.color == "rgb":
            image = image[:, :, ::-1]
        if self.max_side:
            from ._video import resize_max_side

            image = resize_max_side(image, self.max_side)
        try:
            if not self.shown:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
            closed = self.shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error as exc:
            self.enabled = False
            log.warning("sink.display '%s': cannot open a window (%s); frames are not shown", self.id,
                        str(exc).strip().splitlines()[-1])
            return None
        self.shown = True
        if key in (ord("q"), ord("Q"), 27) or closed:
            raise StopRun(f"display '{self.title}' closed by the user")
        return None

    def close(self) -> None:
        if getattr(self, "shown", False):
            import cv2

            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
