"""The one canonical image reader: PNG, JPEG and DICOM, recognised by content.

Like torchxrayvision's reader, there is exactly one entry point,
:func:`read_image`, and every other package goes through it so that all
images (training, index, query) see the same decoding. The format is sniffed
from the magic bytes, never from the file name. The declared size is checked
from the header *before* any pixel buffer is allocated, and every decoder
failure is turned into an :class:`embed.errors.ImageReadError` subclass, so
that a caller feeding arbitrary bytes only ever sees ``CXRError``.

DICOM pixels go through :mod:`embed.dicom` (Modality LUT, VOI LUT,
MONOCHROME1 / INVERSE so that bone is bright) and their metadata through
:mod:`embed.deid` (allow-list, pseudonymised patient).
"""

from __future__ import annotations

import io
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embed.dicom import read_dicom
from embed.errors import (
    ImageReadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
)
from embed.limits import (
    DEFAULT_MAX_PIXELS,
    REDUCED_MIN_SIDE,
    check_pixel_count,
    large_decode,
    max_file_bytes,
    reduce_array,
    reduction_factor,
    too_many_bytes,
)

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# Groups that a DICOM data set without preamble plausibly starts with
# (file meta, identifying, patient, acquisition, relationship, image).
_DICOM_FIRST_GROUPS = {0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028}
_VR_CODES = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}


@dataclass
class CXRImage:
    """Decoded pixels plus de-identified metadata.

    ``pixels`` is float32, ``HxW`` grey or ``HxWx3`` RGB (alpha dropped, palette
    expanded), in the source's own value range (0..255, 0..65535, or the DICOM
    output of the VOI LUT). ``meta`` never holds anything that identifies a patient.
    """

    pixels: np.ndarray
    meta: dict = field(default_factory=dict)
    format: str = "png"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape)


def sniff_format(head: bytes) -> str | None:
    """Return ``"png"``, ``"jpeg"``, ``"dicom"`` or ``None`` from the first bytes (>= 132 for DICOM)."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"DICM"):  # file meta without the 128-byte preamble
        return "dicom"
    if _looks_like_raw_dicom(head):
        return "dicom"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A data set written without preamble/file meta: a plausible first tag at offset 0."""
    if len(head) < 8:
        return False
    group, elem = struct.unpack(">HH", head[:4])  # explicit VR big endian (retired, still written)
    if group in _DICOM_FIRST_GROUPS and elem <= 0x3000 and head[4:6] in _VR_CODES:
        return True
    group, elem = struct.unpack("<HH", head[:4])
    if group not in _DICOM_FIRST_GROUPS or elem > 0x3000:
        return False
    if head[4:6] in _VR_CODES:  # explicit VR little endian
        return True
    (length,) = struct.unpack("<I", head[4:8])  # implicit VR: a sane length
    return length < 0x10000 or length == 0xFFFFFFFF


def read_image(
    src: str | Path | bytes | bytearray | memoryview,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    correct_photometric: bool = True,
) -> CXRImage:
    """Read a PNG, JPEG or DICOM image from a path or bytes.

    Raises only :class:`~embed.errors.ImageReadError` subclasses:
    ``NotAnImageError`` (not PNG/JPEG/DICOM, empty), ``TruncatedImageError``
    (starts right, ends early or is corrupt), ``UnsupportedImageError``
    (multi-frame, unknown photometric interpretation, no pixel data) and
    ``ImageTooLargeError`` (header declares more than ``max_pixels``).
    ``correct_photometric=False`` leaves MONOCHROME1 / INVERSE images un-inverted.
    """
    data, name = _load_bytes(src, max_bytes=max_file_bytes(max_pixels))
    if not data:
        raise NotAnImageError(f"{name} is empty: give a PNG, JPEG or DICOM file")
    kind = sniff_format(data[:132])
    if kind is None:
        raise NotAnImageError(
            f"{name} is not a PNG, JPEG or DICOM image (checked by content, not by name); "
            "convert it to one of these formats"
        )
    try:
        if kind == "dicom":
            pixels, meta = read_dicom(
                data, name=name, max_pixels=max_pixels, correct_photometric=correct_photometric
            )
        else:
            pixels, meta = _read_raster(data, kind, name=name, max_pixels=max_pixels)
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(f"{name}: not enough memory to decode this image ({exc})") from exc
    except Exception as exc:  # any decoder failure on user bytes is a read error, never a crash
        # A DICOM decoder's message may quote raw header bytes (names, ids): only its type is passed on.
        detail = type(exc).__name__ if kind == "dicom" else f"{type(exc).__name__}: {str(exc)[:200]}"
        err = TruncatedImageError(
            f"{name} looks like {kind.upper()} but could not be decoded ({detail}); "
            "the file is probably truncated or corrupt: export it again"
        )
        if kind == "dicom":
            raise err from None
        raise err from exc
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    return CXRImage(pixels=pixels, meta=meta, format=kind)


def _load_bytes(src: str | Path | bytes | bytearray | memoryview, *, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if len(data) > max_bytes:
            raise too_many_bytes(len(data), max_bytes, "the uploaded image")
        return data, "the uploaded image"
    if isinstance(src, (str, Path)):
        path = Path(src)
        try:
            size = path.stat().st_size
            if size > max_bytes and path.is_file():
                raise too_many_bytes(size, max_bytes, path.name)
            return path.read_bytes(), path.name
        except FileNotFoundError as exc:
            raise ImageReadError(f"image file not found: {path}; check the path") from exc
        except IsADirectoryError as exc:
            raise ImageReadError(f"{path} is a folder, not an image file") from exc
        except OSError as exc:
            raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    raise ImageReadError(f"read_image needs a path or bytes, not {type(src).__name__}")


def _png_ihdr(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, without PIL."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, ctype


def _read_raster(data: bytes, kind: str, *, name: str, max_pixels: int) -> tuple[np.ndarray, dict]:
    """Decode a PNG/JPEG with PIL (cv2 for 16-bit colour PNG), header size checked first."""
    from PIL import Image, UnidentifiedImageError

    ihdr = None
    if kind == "png":
        ihdr = _png_ihdr(data)
        if ihdr is None:
            raise TruncatedImageError(f"{name} starts like a PNG but has no IHDR header; the file is corrupt")
        check_pixel_count(ihdr[1], ihdr[0], 1, max_pixels, name)
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name} declares too many pixels ({exc}); downscale it first") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise TruncatedImageError(
            f"{name} starts like {kind.upper()} but its header is corrupt or cut short; export it again"
        ) from exc
    width, height = img.size
    check_pixel_count(height, width, 1, max_pixels, name)
    with large_decode(height, width) as large:
        if large and kind == "jpeg":  # libjpeg scales by 1/2, 1/4, 1/8 while decoding (DCT scaling)
            shrink = REDUCED_MIN_SIDE / max(width, height)
            img.draft("L" if img.mode in ("L", "RGB") else img.mode,
                      (math.ceil(width * shrink), math.ceil(height * shrink)))
        if large and kind == "png":  # one buffer (PIL's decode plus numpy's copy would be two)
            arr, bits = _decode_png_cv2(data, name)
        else:
            arr, bits = _decode_raster(img, data, kind, ihdr, name)
        if large:
            arr = reduce_array(arr, reduction_factor(arr.shape[0], arr.shape[1]))
    rows, cols = int(arr.shape[0]), int(arr.shape[1])
    if large:  # the film's own size (EXIF rotation applied), and what was decoded of it
        rows, cols = (height, width) if (height >= width) == (rows >= cols) else (width, height)
    meta = {"rows": rows, "columns": cols, "bits_stored": bits, "color": "grey" if arr.ndim == 2 else "rgb"}
    if arr.ndim == 3 and arr.shape[2] >= 3:
        meta["chroma"] = chroma(arr, bits)
    if large:
        meta["decoded_size"] = [int(arr.shape[0]), int(arr.shape[1])]
    return arr, meta


def chroma(arr: np.ndarray, bits: int = 8) -> float:
    """Mean colourfulness of an RGB(A) array in [0,1]: (max - min) over R, G, B, averaged over a pixel grid.

    A radiograph stored as RGB has equal channels (0) or a few coloured annotation marks (small);
    a photograph is colourful everywhere. The OOD guard (:mod:`embed.guard`) reads it.
    """
    step = max(1, int(max(arr.shape[0], arr.shape[1]) // 256))
    rgb = np.asarray(arr[::step, ::step, :3], dtype=np.float32)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / float(2**bits - 1))


def _decode_raster(img, data: bytes, kind: str, ihdr, name: str) -> tuple[np.ndarray, int]:
    """The opened PIL image's pixels (cv2 for 16-bit colour PNG) and bits per sample."""
    from PIL import ImageOps

    if ihdr is not None and ihdr[2] == 16 and ihdr[3] in (2, 4, 6):  # 16-bit colour: PIL would drop to 8
        try:
            img.verify()  # chunk CRCs and completeness, before libpng (which prints its errors) decodes
        except Exception as exc:
            raise TruncatedImageError(
                f"{name} is a 16-bit PNG that ends early or is corrupt ({type(exc).__name__}); export it again"
            ) from exc
        return _decode_png16_colour(data, name), 16
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise TruncatedImageError(
            f"{name} is a {kind.upper()} that ends early or is corrupt ({exc}); export it again"
        ) from exc
    if kind == "jpeg":
        img = ImageOps.exif_transpose(img)
    return _pil_to_array(img)


def _decode_png_cv2(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Any PNG through OpenCV into a single array (grey, or RGB without alpha) and its bit depth."""
    import cv2

    if not _png_complete(data):
        raise TruncatedImageError(f"{name} is a PNG that ends early or is corrupt; export it again")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise TruncatedImageError(f"{name} is a PNG that could not be decoded; it is probably truncated or corrupt")
    bits = 16 if arr.dtype == np.uint16 else 8
    if arr.ndim == 3 and arr.shape[2] == 2:
        arr = arr[:, :, 0]
    elif arr.ndim == 3:
        arr = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2RGB)
    return arr, bits


def _png_complete(data: bytes) -> bool:
    """Every chunk present with a right CRC up to IEND (libpng would print its errors on a cut file)."""
    import zlib

    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return False
        if zlib.crc32(data[pos + 4:pos + 8 + length]) & 0xFFFFFFFF != struct.unpack(">I", data[end - 4:end])[0]:
            return False
        if kind == b"IEND":
            return True
        pos = end
    return False


def _decode_png16_colour(data: bytes, name: str) -> np.ndarray:
    """PIL reduces 16-bit colour PNG to 8 bits; cv2 keeps the 16-bit values."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise TruncatedImageError(f"{name} is a 16-bit PNG that could not be decoded; it is probably truncated")
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 2:  # grey + alpha
        return arr[:, :, 0]
    return cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2RGB)


def _pil_to_array(img) -> tuple[np.ndarray, int]:
    """PIL image → (uint8/uint16/float array HxW or HxWx3, bits per sample)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img).astype(np.uint16, copy=False), 16
    if mode == "I":
        arr = np.asarray(img)
        return arr, 16 if arr.size == 0 or (arr.min() >= 0 and arr.max() < 65536) else 32
    if mode == "F":
        return np.asarray(img), 32
    if mode == "L":
        return np.asarray(img), 8
    if mode in ("1",):
        return np.asarray(img.convert("L")), 8
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel(0)), 8
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        mode = img.mode
    if mode == "RGBA" or mode == "RGBa":
        return np.asarray(img)[:, :, :3], 8
    if mode != "RGB":  # CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    return np.asarray(img), 8
