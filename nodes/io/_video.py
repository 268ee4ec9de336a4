"""PyAV and OpenCV helpers for the decode source and the video sink: classify, open, read, write.

Everything that turns FFmpeg's and OpenCV's failures into facegraph's one-line
``SourceError`` / ``SinkError`` lives here, so the nodes stay small and the
messages read the same everywhere: ``<path>: <cause>``.

Frame-format cases are handled here too: every frame is converted to 3-channel
uint8 (grayscale, alpha and 10-bit inputs included) by FFmpeg's swscale, and
each frame carries its own shape, so a resolution change mid-stream simply
yields frames of the new size.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import SinkError, SourceError

log = logging.getLogger("facegraph.nodes.video")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"}
LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "rtp", "srt"}
STREAM_SCHEMES = LIVE_SCHEMES | {"http", "https", "hls"}
H264_ENCODERS = ("libx264", "libopenh264", "h264_videotoolbox", "mpeg4")


@dataclass(frozen=True)
class SourceSpec:
    """What a ``source`` parameter names: kind is camera, sample, url, images or video."""

    kind: str
    target: Any
    paths: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"camera {self.target}" if self.kind == "camera" else str(self.target)


def classify(source: int | str) -> SourceSpec:
    """Decide what ``source`` is, without opening it (no I/O beyond listing a folder or a glob)."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return SourceSpec("camera", int(source))
    text = str(source).strip()
    if text == "sample":
        return SourceSpec("sample", "sample")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in STREAM_SCHEMES:
        return SourceSpec("url", text)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?[") and not path.exists():
        files = sorted(p for p in glob.glob(str(path)) if Path(p).suffix.lower() in IMAGE_EXTS)
        return SourceSpec("images", text, tuple(files))
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        return SourceSpec("images", text, tuple(files))
    if path.suffix.lower() in IMAGE_EXTS:
        return SourceSpec("images", text, (str(path),))
    return SourceSpec("video", str(path))


def is_live_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in LIVE_SCHEMES


def describe_av_error(exc: BaseException) -> str:
    """A short human cause for a PyAV/FFmpeg exception."""
    import av

    if isinstance(exc, (FileNotFoundError, av.error.FileNotFoundError)):
        return "no such file"
    if isinstance(exc, (TimeoutError, av.error.TimeoutError)):
        return "the stream stopped answering (timed out)"
    if isinstance(exc, av.error.InvalidDataError):
        return "not a readable video (damaged, truncated before its index, or not a media file)"
    if isinstance(exc, av.error.DecoderNotFoundError):
        return "no decoder for this codec in this FFmpeg build"
    if isinstance(exc, (ConnectionRefusedError, av.error.ConnectionRefusedError)):
        return "connection refused"
    if isinstance(exc, av.error.HTTPError):
        return f"HTTP error ({getattr(exc, 'strerror', '') or exc})"
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return "this FFmpeg build cannot read that protocol"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]


def open_input(target: str, *, timeout: float, network: bool) -> Any:
    """Open a media file or URL with PyAV; SourceError with path and cause when it cannot be read."""
    import av

    if not network:
        path = Path(target)
        if not path.exists():
            raise SourceError(f"{target}: no such file or folder")
        if path.is_dir():
            raise SourceError(f"{target}: is a folder with no images in it")
        if path.stat().st_size == 0:
            raise SourceError(f"{target}: the file is empty (0 bytes)")
    options = {"rw_timeout": str(int(timeout * 1e6))} if network else None
    try:
        container = av.open(target, "r", options=options, timeout=(timeout, timeout) if network else None)
    except Exception as exc:
        raise SourceError(f"{target}: cannot open: {describe_av_error(exc)}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{target}: has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec FFmpeg has no decoder for
        tag = getattr(stream, "codec_tag", "") or "unknown"
        container.close()
        raise SourceError(f"{target}: unsupported codec (this FFmpeg has no decoder for codec tag '{tag}')")
    codec = stream.codec_context.name
    if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
        container.close()
        raise SourceError(f"{target}: unsupported or unreadable video codec '{codec}' (no picture size)")
    return container


def stream_fps(stream: Any) -> float:
    """The stream's nominal rate: average, else guessed, else 30."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0.1 <= value <= 1000:
                return value
    return 30.0


def stream_frame_count(container: Any) -> int | None:
    """The number of frames the container says it holds (None when it does not know)."""
    stream = container.streams.video[0]
    if stream.frames:
        return int(stream.frames)
    if container.duration:
        return round(container.duration / 1e6 * stream_fps(stream))
    return None


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) with the long side at most ``max_side`` (0 = unchanged), aspect kept, sizes even-free."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def iter_container(
    container: Any,
    label: str,
    *,
    start: float = 0.0,
    duration: float | None = None,
    threads: int = 1,
    network: bool = False,
    timeout: float = 10.0,
) -> Iterator[tuple[Any, float]]:
    """Yield (av.VideoFrame, media seconds) from ``start`` for ``duration`` seconds.

    In a file, a decode error part way (a truncated or damaged file) ends the
    iteration with a warning, so the frames before the damage are kept; an error
    before the first frame is a SourceError. On a network stream every error is a
    SourceError (a stream that goes silent for ``timeout`` seconds says so).
    """
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.thread_count = max(1, threads)
    if start > 0:
        try:
            container.seek(int(start * 1_000_000), backward=True, any_frame=False)
        except Exception as exc:
            log.warning("%s: cannot seek to %.3f s (%s); reading from the start", label, start, describe_av_error(exc))
    end = None if duration is None else start + duration
    expected = stream_frame_count(container)
    delivered = 0
    last = time.monotonic()
    try:
        for frame in container.decode(stream):
            last = time.monotonic()
            t = float(frame.time) if frame.time is not None else delivered / stream_fps(stream)
            if t < start - 1e-6:
                continue
            if end is not None and t >= end - 1e-6:
                return
            delivered += 1
            yield frame, t
    except Exception as exc:
        if network:
            silent = time.monotonic() - last
            cause = (f"the stream stopped answering (no data for {silent:.1f} s)" if silent >= 0.8 * timeout
                     else describe_av_error(exc))
            raise SourceError(f"{label}: {cause} after {delivered} frames") from None
        if delivered == 0:
            raise SourceError(f"{label}: cannot decode: {describe_av_error(exc)}") from None
        log.warning("%s: decoding stopped after %d frames (%s); keeping the frames before", label, delivered,
                    describe_av_error(exc))
        return
    if start == 0 and end is None and expected and delivered < 0.9 * expected - 1 and delivered:
        log.warning("%s: ended after %d of %d frames (the file looks truncated); keeping them", label, delivered,
                    expected)
    if delivered == 0 and start == 0:
        raise SourceError(f"{label}: no frame could be decoded (damaged file or unsupported codec)")


def frame_to_array(frame: Any, color: str, size: tuple[int, int] | None) -> np.ndarray:
    """An av.VideoFrame as uint8 HxWx3 (bgr or rgb), scaled to ``size`` when given."""
    fmt = "bgr24" if color == "bgr" else "rgb24"
    if size is not None and size != (frame.width, frame.height):
        return frame.to_ndarray(format=fmt, width=size[0], height=size[1], interpolation="AREA")
    return frame.to_ndarray(format=fmt)


def read_image(path: str, color: str) -> np.ndarray:
    """Any still image as uint8 HxWx3 (grayscale and alpha converted); SourceError naming the path."""
    import cv2

    p = Path(path)
    if not p.exists():
        raise SourceError(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")
    data = np.fromfile(str(p), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"{path}: not a readable image (damaged or unknown format)")
    image = to_bgr8(image)
    return image[:, :, ::-1].copy() if color == "rgb" else image


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Grayscale, BGRA and 16-bit images as uint8 BGR."""
    import cv2

    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    size = scaled_size(w, h, max_side)
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- writing


def prepare_output(path: Path) -> Path:
    """Create the parent folder and check the file can be written; SinkError naming the path otherwise."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError("permission denied")
        with open(path, "ab"):
            pass
    except OSError as exc:
        cause = exc.strerror or str(exc)
        raise SinkError(f"{path}: cannot write here ({cause})") from None
    return path


_fallback_logged: set[str] = set()


def pick_encoder(preferred: str = "auto") -> str:
    """The first usable H.264 encoder (libx264 first), else mpeg4; logs a fallback once per process."""
    import av

    names = H264_ENCODERS if preferred == "auto" else (preferred,)
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except Exception:
            continue
        if name != "libx264" and preferred == "auto" and name not in _fallback_logged:
            _fallback_logged.add(name)
            log.warning("libx264 is not in this FFmpeg build; writing video with the '%s' encoder instead", name)
        return name
    raise SinkError(f"no usable video encoder among {', '.join(names)} in this FFmpeg build")


def rate_fraction(fps: float) -> Fraction:
    """25 → 25, 29.97 → 30000/1001, 23.976 → 24000/1001, ~26.4 → a small exact fraction."""
    if abs(fps - round(fps)) < 1e-3:
        return Fraction(round(fps))
    ntsc = fps * 1.001
    if abs(ntsc - round(ntsc)) < 2e-3:
        return Fraction(round(ntsc) * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def _i420_frame(planes: np.ndarray, av: Any) -> Any:
    """An I420 array (H·3/2 × W) as a yuv420p VideoFrame: three plain copies into its planes when they
    have no row padding (0.02 ms at 640×480, against 0.1 ms for ``from_ndarray``'s row loop), else that."""
    rows, w = planes.shape
    h = rows * 2 // 3
    frame = av.VideoFrame(w, h, "yuv420p")
    y, u, v = frame.planes
    if y.line_size != w or u.line_size * 2 != w or v.line_size * 2 != w or w % 2 or h % 2:
        return av.VideoFrame.from_ndarray(planes, format="yuv420p")
    flat = planes.reshape(-1)
    y.update(flat[: w * h])
    u.update(flat[w * h : w * h * 5 // 4])
    v.update(flat[w * h * 5 // 4 :])
    return frame


class VideoWriter:
    """An MP4 (or other container) writer: H.264 yuv420p with even sides, finished by ``close()``.

    The container is opened at once (so an unwritable path fails early); the stream
    is added at the first frame, whose size fixes the video size. Later frames of
    another size are resized to it.
    """

    def __init__(self, path: Path, *, codec: str = "auto", crf: int = 23, preset: str = "veryfast",
                 threads: int = 1, fragmented: bool = False) -> None:
        import av

        self.path = prepare_output(path)
        self.codec = codec
        self.crf, self.preset, self.threads = crf, preset, threads
        options = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}
        try:
            self.container = av.open(str(path), "w", options=options)
        except Exception as exc:
            raise SinkError(f"{path}: cannot create video ({describe_av_error(exc)})") from None
        self.stream: Any = None
        self.size: tuple[int, int] | None = None
        self.count = 0

    def _add_stream(self, width: int, height: int, fps: float) -> None:
        name = pick_encoder(self.codec)
        self.stream = self.container.add_stream(name, rate=rate_fraction(fps))
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.thread_count = max(1, self.threads)
        if name == "libx264":
            self.stream.options = {"crf": str(self.crf), "preset": self.preset}
        elif name == "mpeg4":
            self.stream.codec_context.bit_rate = max(1_000_000, width * height * 4)
        self.size = (width, height)
        self.encoder = name

    def write(self, image: np.ndarray, fps: float, color: str = "bgr") -> None:
        import av
        import cv2

        h, w = image.shape[:2]
        if self.stream is None:
            self._add_stream(w, h, fps)
        self.size = self.size or (w, h)
        if (w, h) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self.size[0] % 2 or self.size[1] % 2:
            image = np.pad(image, ((0, self.size[1] % 2), (0, self.size[0] % 2), (0, 0)), mode="edge")
        # OpenCV's BGR→I420 is about 3× faster here than swscale's bgr24→yuv420p reformat (0.4 vs 1.1 ms at 640×480)
        planes = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420 if color == "bgr" else cv2.COLOR_RGB2YUV_I420)
        frame = _i420_frame(planes, av)
        frame.pts = self.count
        self.count += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the container's index; an empty video is removed."""
        if self.container is None:
            return
        container, self.container = self.container, None
        if self.stream is None:  # nothing to finish: an MP4 without a stream is no video
            try:
                container.close()
            except Exception:
                pass
            self.path.unlink(missing_ok=True)
            log.warning("%s: no frames arrived, so no video was written", self.path)
            return
        try:
            for packet in self.stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
