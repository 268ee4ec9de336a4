"""The ``decode`` source: video files, images, folders, globs, network streams, webcams and the sample clip.

Decoding runs in a background thread that fills a small bounded queue, so the
next frame is being decoded while the graph works on this one. The thread stops
in ``close()``. Files never drop frames (the thread waits for room); live
sources (cameras, rtsp/udp streams) drop the oldest queued frame instead, so
what the graph sees stays fresh.

Every Frame carries its own image, so a resolution change mid-stream gives
frames of the new size from then on (downstream nodes read each frame's shape).
Grayscale and alpha input is converted to 3-channel uint8.

Images of a folder or glob are unrelated photos unless ``sequence: true`` says they are the
frames of one scene: each image then gets its own ``shot`` number in the Frame, and the
trackers (``detect``, ``landmarks``) end every track when it changes, so no track id, AU
baseline or temporal window carries from one photo to the next (ids are never reused). With
``sequence: true`` (and for videos, cameras and streams) no ``shot`` is sent: faces are tracked
from frame to frame, and only a shot cut seen in the pictures ends the tracks.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from facegraph import FRAME, Output, Param, SourceError, register
from facegraph._node import Source

log = logging.getLogger("facegraph.nodes.decode")

_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Reader:
    """Runs a frame generator in a daemon thread, handing frames over through a bounded queue."""

    def __init__(self, produce: Callable[[], Iterator[Any]], size: int, live: bool, name: str) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self.stop = threading.Event()
        self.live = live
        self.dropped = 0
        self._produce = produce
        self.thread = threading.Thread(target=self._run, name=f"decode-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self._produce():
                if self.stop.is_set():
                    return
                self._put(item, droppable=self.live)
        except BaseException as exc:  # handed to the consumer, which raises it in the engine's thread
            self._put(_Failure(exc), droppable=False)
        finally:
            self._put(_END, droppable=False)

    def _put(self, item: Any, droppable: bool) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                if droppable:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def get(self) -> Any:
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    return _END

    def close(self) -> None:
        self.stop.set()
        while True:  # make room so a blocked put() returns at once
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=5)
        if self.thread.is_alive():
            log.warning("decode thread %s did not stop within 5 s", self.thread.name)


@register("decode")
class Decode(Source):
    """Frames from a file, image(s), URL, camera index or ``sample``; see the module docstring."""

    source_param = "source"
    threads = 2
    cost = 1.0  # decoding 640×480 MPEG-4 / H.264 and the BGR conversion, in its thread (one core)

    frame = Output(FRAME, doc="image uint8 HxWx3, timestamp (media seconds), fps")
    source = Param((int, str), 0, doc="file, folder, glob, rtsp/http/udp URL, camera index, or 'sample'")
    realtime = Param(bool, False, doc="pace a file at its native rate, like a camera (the source then counts as live)")
    loop = Param(bool, False, doc="start again at the end (files, images, sample)")
    start = Param(float, 0.0, ge=0, doc="skip to this media time in seconds")
    duration = Param(float, None, ge=0, doc="stop after this many seconds (None = to the end)")
    every = Param(int, 1, ge=1, doc="keep one frame in N")
    max_side = Param(int, 0, ge=0, doc="downscale so the long side is at most this (0 = keep size)")
    color = Param(str, "bgr", choices=("bgr", "rgb"), doc="channel order of the images")
    fps = Param(float, 0.0, ge=0, doc="frame rate for image sequences and cameras (0 = native, or 30)")
    timeout = Param(float, 10.0, ge=0.1, doc="seconds a network stream may stay silent before it is an error")
    queue_size = Param(int, 4, ge=1, le=256, doc="decoded frames buffered ahead of the graph")
    sequence = Param(bool, False, doc="images: the folder is one scene, tracked across images (else each is its own)")

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        """A file or folder that is not there is found before any worker starts (validate: a note; run: exit 2)."""
        from pathlib import Path

        from . import _video

        spec = _video.classify(values["source"])
        if spec.kind == "video" and not Path(spec.target).exists():
            return [f"needs input '{spec.target}': no such file or folder (give one with --source)"]
        if spec.kind == "images" and not spec.paths:
            return [f"needs input '{spec.target}': no image matches (give a video, folder or glob with --source)"]
        return []

    @classmethod
    def probe(cls, source: Any) -> str | None:
        """A batch runs video files only: an image, a text file or a damaged file is refused with its reason.

        Opening the container reads its header only (milliseconds), so a folder of
        videos with notes and thumbnails among them is sorted out before anything runs.
        """
        from facegraph import SourceError

        from . import _video

        spec = _video.classify(source)
        if spec.kind == "images":
            return "an image, not a video (facegraph.analyze_images runs images)"
        if spec.kind != "video":
            return None
        try:
            _video.open_input(spec.target, timeout=10.0, network=False).close()
        except SourceError as exc:
            text = str(exc)
            return "not a video: " + (text[len(spec.target) + 2:] if text.startswith(spec.target) else text)
        return None

    def open(self) -> None:
        from . import _video

        self.spec = _video.classify(self.source)
        self._container: Any = None
        self._capture: Any = None
        self._reader: _Reader | None = None
        self._native_fps = self.fps or 30.0
        self._count: int | None = None
        kind = self.spec.kind
        if kind == "video":
            self._container = _video.open_input(self.spec.target, timeout=self.timeout, network=False)
            self._set_stream_info()
        elif kind == "url":
            self._container = _video.open_input(self.spec.target, timeout=self.timeout, network=True)
            self._set_stream_info()
        elif kind == "images":
            if not self.spec.paths:
                what = "folder" if "*" not in self.spec.target and "?" not in self.spec.target else "pattern"
                raise SourceError(f"{self.spec.target}: no such file, or a {what} with no images in it")
            self._count = len(self.spec.paths)
        elif kind == "sample":
            from . import _sample

            _sample.images_dir()
            self._count = 90
        elif kind == "camera":
            self._open_camera()

    def _set_stream_info(self) -> None:
        from . import _video

        stream = self._container.streams.video[0]
        self._native_fps = self.fps or _video.stream_fps(stream)
        self._count = _video.stream_frame_count(self._container) if self.spec.kind == "video" else None
        self._url_live = self.spec.kind == "url" and (
            _video.is_live_url(self.spec.target) or not self._container.duration
        )

    def _open_camera(self) -> None:
        import cv2

        quiet = hasattr(cv2, "setLogLevel") and hasattr(cv2, "getLogLevel")
        level = cv2.getLogLevel() if quiet else None
        if quiet:
            cv2.setLogLevel(0)  # silent: OpenCV's own probing noise; a failure is said once, below
        try:
            cap = cv2.VideoCapture(self.spec.target)
        finally:
            if quiet:
                cv2.setLogLevel(level)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"camera {self.spec.target}: cannot open (no camera at that index, or it is in use); "
                "try --source sample or --source a video file"
            )
        self._capture = cap
        native = cap.get(cv2.CAP_PROP_FPS)
        self._native_fps = self.fps or (native if native and 1 <= native <= 240 else 30.0)

    # ------------------------------------------------------------------ the Source API

    @property
    def live(self) -> bool:
        kind = getattr(self, "spec", None)
        if kind is None:
            from . import _video

            kind = _video.classify(self.source)
        if kind.kind == "camera" or self.realtime:
            return True
        return kind.kind == "url" and getattr(self, "_url_live", True)

    @property
    def source_name(self) -> str:
        spec = getattr(self, "spec", None)
        return spec.label if spec is not None else str(self.source)

    def total_frames(self) -> int | None:
        if self.loop or self._count is None or self.spec.kind in ("camera", "url"):
            return None
        count = self._count
        first = round(self.start * self._native_fps)
        if self.spec.kind != "video":
            first = 0  # start/duration apply to media time; images and sample start at 0
        count = max(0, count - first)
        if self.duration is not None:
            count = min(count, math.ceil(self.duration * self._native_fps))
        return math.ceil(count / self.every)

    def frames(self) -> Iterator[dict[str, Any]]:
        out_fps = self._native_fps / self.every
        self._reader = _Reader(self._produce, self.queue_size, self.live and not self.realtime, self.id)
        wall0 = ts0 = None
        shots = self.spec.kind == "images" and not self.sequence  # each image its own stream
        count = 0
        while True:
            item = self._reader.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.exc
            image, ts = item
            if self.context.allocator is not None:
                # the process executor: the frame goes into its output slot here, so the ring
                # copies nothing more (PyAV's bgr24 array is a view of swscale's output)
                out = self.output_array("frame", image.shape, image.dtype)
                np.copyto(out, image)
                image = out
            if self.realtime:
                if wall0 is None:
                    wall0, ts0 = time.monotonic(), ts
                delay = wall0 + (ts - ts0) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            fields = {"image": image, "timestamp": float(ts), "fps": float(out_fps)}
            if shots:
                fields["shot"] = count
            count += 1
            yield {"frame": fields}

    def close(self) -> None:
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None:
            reader.close()
            if reader.dropped:
                log.info("%s: dropped %d stale frames to stay live", self.source_name, reader.dropped)
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            container.close()
        capture, self._capture = getattr(self, "_capture", None), None
        if capture is not None:
            capture.release()

    # ------------------------------------------------------------------ the producer thread

    def _produce(self) -> Iterator[tuple[Any, float]]:
        """(image, media seconds) for every kept frame, loops included; runs in the reader thread.

        Each pass yields (make_image, ts) so frames that ``every`` skips are decoded but never converted.
        """
        offset = 0.0
        passes = 0
        while True:
            last = None
            index = 0
            for make_image, ts in self._one_pass(passes):
                if index % self.every == 0:
                    yield make_image(), ts + offset
                index += 1
                last = ts
            passes += 1
            if not self.loop or last is None or self.spec.kind in ("camera", "url"):
                return
            offset += last + 1.0 / self._native_fps - (self.start if self.spec.kind == "video" else 0.0)

    def _one_pass(self, passes: int) -> Iterator[tuple[Any, float]]:
        from . import _video

        kind = self.spec.kind
        if kind in ("video", "url"):
            if passes:  # a loop: open the file again rather than trust seeking in every container
                self._container.close()
                self._container = _video.open_input(self.spec.target, timeout=self.timeout, network=False)
            for frame, ts in _video.iter_container(
                self._container,
                self.spec.label,
                start=self.start,
                duration=self.duration,
                threads=max(1, self.context.threads),
                network=kind == "url",
                timeout=self.timeout,
            ):
                size = _video.scaled_size(frame.width, frame.height, self.max_side) if self.max_side else None
                yield (lambda f=frame, sz=size: _video.frame_to_array(f, self.color, sz)), ts
        elif kind == "images":
            for i, path in enumerate(self.spec.paths):
                yield (lambda p=path: _video.resize_max_side(_video.read_image(p, self.color), self.max_side)), (
                    i / self._native_fps
                )
        elif kind == "sample":
            from . import _sample

            for image, ts in _sample.sample_frames(fps=self._native_fps):
                yield (lambda im=image: self._finish(im)), ts
        elif kind == "camera":
            yield from self._camera_frames()

    def _finish(self, bgr: Any) -> Any:
        from . import _video

        image = _video.resize_max_side(bgr, self.max_side)
        return image[:, :, ::-1].copy() if self.color == "rgb" else image

    def _camera_frames(self) -> Iterator[tuple[Any, float]]:
        from . import _video

        t0 = time.monotonic()
        failures = 0
        while not (self._reader is not None and self._reader.stop.is_set()):
            ok, image = self._capture.read()
            if not ok or image is None:
                failures += 1
                if failures >= 10:
                    log.warning("camera %s: stopped delivering frames; ending the run", self.spec.target)
                    return
                time.sleep(0.05)
                continue
            failures = 0
            yield (lambda im=image: self._finish(_video.to_bgr8(im))), time.monotonic() - t0
