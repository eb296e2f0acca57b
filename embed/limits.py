"""Size limits of an image, checked before any pixel buffer is allocated.

Shared by :mod:`embed.image` (PNG/JPEG and the file size) and :mod:`embed.dicom`, which
both sit above this module: the DICOM decoder needs the pixel limit without importing
the reader that dispatches to it.
"""

from __future__ import annotations

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
