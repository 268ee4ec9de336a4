"""The ``sample`` source: a short clip made on the fly from the real face photos inside insightface.

So the project's first command runs on a fresh machine with no webcam, no
download and no test data: a virtual camera zooms into insightface's group photo
(``t1.jpg``, six faces), pans across it, then cuts to a slow push-in on the
single-face photo (``Tom_Hanks_54745.png``). The clip is fully deterministic
(same pixels on every run and machine with the same OpenCV).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facegraph import SourceError

GROUP = "t1.jpg"
SINGLE = "Tom_Hanks_54745.png"


def images_dir() -> Path:
    """insightface's bundled ``data/images`` folder; SourceError when insightface is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("sample: the 'sample' clip is built from insightface's bundled photos; "
                          "install insightface (pip install insightface) or pass a video with --source")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    if not (folder / GROUP).exists():
        raise SourceError(f"sample: {folder / GROUP} is missing from the installed insightface package")
    return folder


def _ease(t: float) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * min(1.0, max(0.0, t)))


def _view(image: np.ndarray, cx: float, cy: float, view_w: float, width: int, height: int) -> np.ndarray:
    """What a camera sees looking at (cx, cy) with a field of ``view_w`` image pixels across."""
    import cv2

    scale = width / view_w
    view_h = height / scale
    matrix = np.array([[scale, 0, -scale * (cx - view_w / 2)], [0, scale, -scale * (cy - view_h / 2)]], np.float64)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _single_face_canvas(face: np.ndarray) -> np.ndarray:
    """The 112×112 portrait enlarged on a soft grey backdrop, so the face fills part of the frame like a selfie."""
    import cv2

    canvas = np.full((720, 960, 3), (112, 118, 124), np.uint8)
    big = cv2.resize(face, (336, 336), interpolation=cv2.INTER_CUBIC)
    y, x = (720 - 336) // 2, (960 - 336) // 2
    canvas[y : y + 336, x : x + 336] = big
    return cv2.GaussianBlur(canvas, (3, 3), 0)


def sample_frames(
    frames: int = 90, width: int = 640, height: int = 480, fps: float = 30.0
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield (BGR image, media seconds) of the sample clip: 2/3 on the group photo, 1/3 on the portrait."""
    import cv2

    folder = images_dir()
    group = cv2.imread(str(folder / GROUP), cv2.IMREAD_COLOR)
    face = cv2.imread(str(folder / SINGLE), cv2.IMREAD_COLOR)
    if group is None or face is None:
        raise SourceError(f"sample: cannot read the bundled photos in {folder}")
    portrait = _single_face_canvas(face)
    gh, gw = group.shape[:2]
    first = (2 * frames) // 3
    for i in range(frames):
        if i < first:
            half = first // 2 or 1
            if i < half:  # push in from the whole photo towards the middle of the table
                t = _ease(i / half)
                view_w = gw * (1.0 - 0.45 * t)
                cx, cy = gw / 2, gh / 2 - 0.08 * gh * t
            else:  # pan from left to right across the faces
                t = _ease((i - half) / max(1, first - half - 1))
                view_w = gw * 0.55
                cx = gw * (0.30 + 0.40 * t)
                cy = gh / 2 - 0.08 * gh + 0.02 * gh * math.sin(2 * math.pi * t)
            image = _view(group, cx, cy, view_w, width, height)
        else:
            t = _ease((i - first) / max(1, frames - first - 1))
            ph, pw = portrait.shape[:2]
            view_w = pw * (1.0 - 0.25 * t)
            cx, cy = pw / 2 + 8 * math.sin(2 * math.pi * t), ph / 2
            image = _view(portrait, cx, cy, view_w, width, height)
        yield image, i / fps
