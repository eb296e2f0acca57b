"""PNG / JPEG reading, format sniffing and the refusal of bad input (generated fixtures)."""

from __future__ import annotations

import io
import random
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from embed.errors import (
    CXRError,
    ImageReadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from embed.image import CXRImage, read_image, sniff_format
from tests.embed.dicom_fixtures import make_dicom

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _png(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", **save) if mode else Image.fromarray(arr).save(
        buf, format="PNG", **save
    )
    return buf.getvalue()


def _jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A hand-made PNG whose IHDR declares width x height but whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- good input

def test_png_grey8_exact():
    img = read_image(_png(GREY8))
    assert isinstance(img, CXRImage) and img.format == "png"
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (12, 10)
    np.testing.assert_array_equal(img.pixels, GREY8)


def test_png_grey16_keeps_16_bit_values():
    arr = np.array([[0, 1, 255, 256], [1000, 4095, 40000, 65535]], dtype=np.uint16)
    data = _png(arr)
    assert data[24] == 16  # really a 16-bit PNG (IHDR bit depth)
    img = read_image(data)
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))
    assert img.meta["bits_stored"] == 16


def test_png_rgb16_keeps_16_bit_values():
    arr = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", arr[:, :, ::-1])  # cv2 writes BGR
    assert ok and buf.tobytes()[24] == 16
    img = read_image(buf.tobytes())
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))


def test_png_rgb_and_rgba_drop_alpha():
    np.testing.assert_array_equal(read_image(_png(RGB8)).pixels, RGB8)
    rgba = np.dstack([RGB8, np.full(RGB8.shape[:2], 7, np.uint8)])
    img = read_image(_png(rgba))
    assert img.pixels.shape == (12, 10, 3)
    np.testing.assert_array_equal(img.pixels, RGB8)


def test_png_grey_alpha():
    la = np.dstack([GREY8, np.full(GREY8.shape, 200, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(la, mode="LA").save(buf, format="PNG")
    np.testing.assert_array_equal(read_image(buf.getvalue()).pixels, GREY8)


def test_png_palette_is_expanded():
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], np.uint8)
    idx = RNG.integers(0, 4, (6, 7), dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    img = read_image(buf.getvalue())
    assert img.pixels.shape == (6, 7, 3)
    np.testing.assert_array_equal(img.pixels, palette[idx])


def test_png_one_bit():
    bits = (GREY8 > 128)
    buf = io.BytesIO()
    Image.fromarray(bits).save(buf, format="PNG")
    np.testing.assert_array_equal(read_image(buf.getvalue()).pixels, bits * 255.0)


def test_jpeg_grey_and_rgb():
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))
    grey = read_image(_jpeg(smooth))
    assert grey.format == "jpeg" and grey.pixels.shape == (24, 32)
    assert np.abs(grey.pixels - smooth).mean() < 3
    rgb_src = np.dstack([smooth, smooth[:, ::-1], np.full_like(smooth, 90)])
    rgb = read_image(_jpeg(rgb_src))
    assert rgb.pixels.shape == (24, 32, 3)
    assert np.abs(rgb.pixels - rgb_src).mean() < 4


def test_format_by_content_not_name(tmp_path):
    dicom_named_png = tmp_path / "scan.png"
    dicom_named_png.write_bytes(make_dicom(GREY8))
    png_named_dcm = tmp_path / "scan.dcm"
    png_named_dcm.write_bytes(_png(GREY8))
    assert read_image(dicom_named_png).format == "dicom"
    assert read_image(png_named_dcm).format == "png"
    np.testing.assert_array_equal(read_image(str(png_named_dcm)).pixels, GREY8)


def test_sniff_format():
    assert sniff_format(_png(GREY8)[:132]) == "png"
    assert sniff_format(_jpeg(GREY8)[:132]) == "jpeg"
    assert sniff_format(make_dicom(GREY8)[:132]) == "dicom"
    assert sniff_format(make_dicom(GREY8, file_meta=False)[:132]) == "dicom"
    assert sniff_format(b"hello world, this is text" * 8) is None
    assert sniff_format(b"") is None
    assert sniff_format(b"GIF89a" + bytes(200)) is None


def test_png_text_chunks_do_not_reach_meta():
    """PNG tEXt can hold a patient's name: only geometry goes to meta."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("PatientName", "Doe^Jane")
    img = read_image(_png(GREY8, pnginfo=info))
    assert "Doe" not in str(img.meta)
    assert img.meta["rows"] == 12 and img.meta["columns"] == 10


# ----------------------------------------------------------------------------- bad input

def test_empty_input(tmp_path):
    with pytest.raises(NotAnImageError, match="empty"):
        read_image(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(NotAnImageError):
        read_image(empty)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("patient notes, definitely not pixels\n" * 10)
    with pytest.raises(NotAnImageError, match="not a PNG, JPEG or DICOM"):
        read_image(path)


def test_missing_file_is_a_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_raster(fmt, keep):
    big = RNG.integers(0, 256, (64, 64), dtype=np.uint8)
    data = _png(big) if fmt == "png" else _jpeg(big)
    with pytest.raises(TruncatedImageError):
        read_image(data[: int(len(data) * keep)])


def test_declared_50000_squared_png_refused_without_allocation():
    data = _png_with_declared_size(50_000, 50_000)
    assert len(data) < 200
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="50000 x 50000"):
            read_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000  # the 2.5 GB pixel buffer was never allocated


def test_declared_size_below_pil_bomb_limit_still_refused():
    """Our own header check, not PIL's decompression-bomb guard (here 3000x3000 is far below it)."""
    with pytest.raises(ImageTooLargeError):
        read_image(_png_with_declared_size(3000, 3000), max_pixels=1_000_000)
    big_jpeg = _jpeg(np.zeros((40, 50), np.uint8))
    with pytest.raises(ImageTooLargeError, match="50 x 40"):
        read_image(big_jpeg, max_pixels=1_999)
    assert read_image(big_jpeg, max_pixels=2_000).pixels.shape == (40, 50)


def test_declared_huge_jpeg_refused():
    data = bytearray(_jpeg(np.zeros((8, 8), np.uint8)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 50_000, 50_000)  # height, width
    with pytest.raises(ImageTooLargeError):
        read_image(bytes(data))


def test_arbitrary_bytes_only_raise_read_errors():
    """Fuzz: truncations, bit flips and junk behind each magic raise ImageReadError subclasses only."""
    rnd = random.Random(1)
    samples = [_png(RGB8), _jpeg(GREY8), make_dicom(GREY8), make_dicom(GREY8, file_meta=False),
               _png(np.arange(64, dtype=np.uint16).reshape(8, 8) * 999)]
    cases = []
    for data in samples:
        for _ in range(25):
            cut = rnd.randrange(1, len(data))
            cases.append(data[:cut])
            flipped = bytearray(data)
            for _ in range(3):
                flipped[rnd.randrange(len(flipped))] ^= 1 << rnd.randrange(8)
            cases.append(bytes(flipped))
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", bytes(128) + b"DICM", b"\x08\x00\x05\x00"):
        for _ in range(10):
            cases.append(magic + bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 300))))
    for case in cases:
        try:
            img = read_image(case)
        except ImageReadError:
            continue
        except Exception as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"{type(exc).__name__} escaped read_image for input {case[:24]!r}...: {exc}")
        assert img.pixels.dtype == np.float32 and img.pixels.ndim in (2, 3)


def test_errors_are_cxr_errors_with_http_status():
    for exc_type, status in ((NotAnImageError, 415), (TruncatedImageError, 422), (ImageTooLargeError, 413)):
        assert issubclass(exc_type, CXRError) and exc_type.http_status == status


def test_oversized_file_refused_before_reading(tmp_path):
    """A file far bigger than any image within the pixel limit could need is not even read."""
    from embed.limits import max_file_bytes

    limit = max_file_bytes(10)
    blob = _png(GREY8) + bytes(limit)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        read_image(blob, max_pixels=10)
    path = tmp_path / "big.png"
    path.write_bytes(blob)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        read_image(path, max_pixels=10)
    assert read_image(path).pixels.shape == GREY8.shape  # default limit: fine


def test_png_rgba16_keeps_values_and_drops_alpha():
    g = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", np.dstack([g, g // 2, g // 3, np.full_like(g, 60000)]))  # BGRA
    assert ok and buf.tobytes()[25] == 6  # colour type: RGBA
    img = read_image(buf.tobytes())
    assert img.pixels.shape == (5, 6, 3)
    np.testing.assert_array_equal(img.pixels[..., 2], g)  # cv2's B -> our R order is handled
    np.testing.assert_array_equal(img.pixels[..., 0], g // 3)


def test_jpeg_exif_orientation_is_applied():
    """Phone photos of films carry EXIF orientation: the image is turned the way it is displayed."""
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :5] = 255  # bright left edge
    pil = Image.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    img = read_image(buf.getvalue())
    assert img.pixels.shape == (40, 20)
    assert img.pixels[:3].mean() > 200 and img.pixels[-3:].mean() < 20  # left edge is now the top


@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_truncated_16_bit_colour_png(keep):
    arr = RNG.integers(0, 65536, (40, 30, 3), dtype=np.uint16)
    data = cv2.imencode(".png", arr)[1].tobytes()
    with pytest.raises(TruncatedImageError):
        read_image(data[: int(len(data) * keep)])


def test_concurrent_reads_agree_with_sequential():
    """The API reads uploads in a thread pool: the reader keeps no shared mutable state."""
    from concurrent.futures import ThreadPoolExecutor

    inputs = [_png(RGB8), _jpeg(GREY8), make_dicom(GREY8, photometric="MONOCHROME1"),
              _png(np.arange(64, dtype=np.uint16).reshape(8, 8) * 999), b"junk" * 40] * 4

    def attempt(data):
        try:
            return read_image(data).pixels
        except ImageReadError as exc:
            return type(exc).__name__

    sequential = [attempt(d) for d in inputs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(attempt, inputs))
    for a, b in zip(sequential, parallel):
        assert (a == b) if isinstance(a, str) else np.array_equal(a, b)
