"""Size limits of an image, checked before any pixel buffer is allocated.

Shared by :mod:`embed.image` (PNG/JPEG and the file size) and :mod:`embed.dicom`, which
both sit above this module: the DICOM decoder needs the pixel limit without importing
the reader that dispatches to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from embed.errors import ImageTooLargeError, TruncatedImageError

#: The default pixel limit of :func:`embed.image.read_image` (a 7k x 7k film fits).
DEFAULT_MAX_PIXELS = 50_000_000


def max_file_bytes(max_pixels: int) -> int:
    """Largest file worth reading for ``max_pixels``: 3 samples of 64 bits per pixel plus 64 MiB of header."""
    return int(max_pixels) * 24 + (64 << 20)


def too_many_bytes(n: int, max_bytes: int, name: str) -> ImageTooLargeError:
    """The error for a file larger than any image within the limit can be."""
    return ImageTooLargeError(
        f"{name} is {n:,} bytes, more than any image within the pixel limit needs ({max_bytes:,}); "
        "downscale it first (or raise max_pixels if you trust the source)"
    )


def check_pixel_count(rows: int, cols: int, samples: int, max_pixels: int, name: str) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` (before allocating)."""
    n = int(rows) * int(cols)
    if n > max_pixels:
        raise ImageTooLargeError(
            f"{name} declares {cols} x {rows} = {n:,} pixels, more than the limit of {max_pixels:,}; "
            "downscale it first (or raise max_pixels if you trust the source)"
        )
    if rows <= 0 or cols <= 0:
        raise TruncatedImageError(f"{name} declares an empty image ({cols} x {rows}); the header is corrupt")


#: Images above this many pixels (2000 x 2000) are decoded at reduced scale, one at a time; ordinary
#: films below it decode exactly as they always did.
LARGE_IMAGE_PIXELS = 4_000_000
#: A reduced decode keeps at least this many pixels on the longer side (16x the released model's input).
REDUCED_MIN_SIDE = 2048

_large_decodes = threading.BoundedSemaphore(1)


@contextmanager
def large_decode(rows: int, cols: int) -> Iterator[bool]:
    """Admit the decode of a ``rows x cols`` image; above LARGE_IMAGE_PIXELS one at a time per process.

    Yields whether the image counts as large (and should be decoded at reduced scale). Its
    full-resolution buffers are what costs memory: N engine threads decoding 7000 x 7000
    films at once would hold N of them.
    """
    if int(rows) * int(cols) <= LARGE_IMAGE_PIXELS:
        yield False
        return
    with _large_decodes:
        yield True


def reduction_factor(rows: int, cols: int) -> int:
    """Integer factor that brings a large image's longer side down to no less than REDUCED_MIN_SIDE."""
    if int(rows) * int(cols) <= LARGE_IMAGE_PIXELS:
        return 1
    return max(1, max(int(rows), int(cols)) // REDUCED_MIN_SIDE)


def reduce_array(arr: np.ndarray, factor: int) -> np.ndarray:
    """Area-average an HxW or HxWxC array by ``factor`` (float32 out; unchanged when factor is 1)."""
    import cv2

    if factor <= 1:
        return arr
    h, w = arr.shape[:2]
    src = arr if arr.dtype in (np.uint8, np.uint16, np.float32) else arr.astype(np.float32)
    if src.ndim == 3 and src.shape[2] > 4:
        src = src[:, :, :3]
    out = cv2.resize(src, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    return out.astype(np.float32, copy=False)
