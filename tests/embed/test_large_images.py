"""Images far above the model's input are decoded at reduced scale, one at a time; ordinary ones exactly.

Peak memory itself is measured by ``scripts/bench_large_decode.py`` (docs/benchmarks.md), not here.
"""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest

import embed.limits as limits
from embed.image import read_image
from embed.standardize import StandardizeConfig, load_standardized, standardize

CFG = StandardizeConfig(size=224)


@pytest.fixture(autouse=True, scope="module")
def _no_opencv_thread_pool():
    """Resizing these large arrays would start OpenCV's worker pool in the pytest process; a process
    forked later (the pipeline tests' DataLoader workers) then hangs in its first cv2 call."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(0)
    yield
    cv2.setNumThreads(before)


def _film(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.5 + 0.3 * np.sin(xx / 97.0) * np.cos(yy / 131.0) + 0.15 * np.exp(-((xx - w / 2) ** 2 + (yy - h / 3) ** 2)
                                                                            / (0.05 * w * h))
    return np.clip(img, 0, 1)


def _encode(ext: str, arr: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


def test_ordinary_film_standardizes_exactly_as_before():
    """At the threshold (2000 x 2000 = 4 MP) nothing changes: the decoded pixels are the file's own."""
    arr = (255 * _film(2000, 2000)).astype(np.uint8)
    img = read_image(_encode(".png", arr))
    assert "decoded_size" not in img.meta and img.shape == (2000, 2000)
    np.testing.assert_array_equal(standardize(img, CFG), standardize(arr, CFG))


def _full_resolution(data: bytes, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(limits, "LARGE_IMAGE_PIXELS", 10**12)
        img = read_image(data)
        assert "decoded_size" not in img.meta
        return standardize(img, CFG)


@pytest.mark.parametrize("kind", ["jpeg-rgb", "jpeg-grey", "png-8", "png-16", "png-rgb16"])
def test_large_image_is_reduced_and_standardizes_alike(kind, monkeypatch):
    h, w = 4800, 3600  # 17 MP
    film = _film(h, w)
    if kind == "jpeg-rgb":
        grey = (255 * film).astype(np.uint8)
        data = _encode(".jpg", np.dstack([grey, grey, np.roll(grey, 3, 1)]), cv2.IMWRITE_JPEG_QUALITY, 95)
    elif kind == "jpeg-grey":
        data = _encode(".jpg", (255 * film).astype(np.uint8), cv2.IMWRITE_JPEG_QUALITY, 95)
    elif kind == "png-8":
        data = _encode(".png", (255 * film).astype(np.uint8))
    elif kind == "png-16":
        data = _encode(".png", (65535 * film).astype(np.uint16))
    else:
        g16 = (65535 * film).astype(np.uint16)
        data = _encode(".png", np.dstack([g16, g16, g16]))
    img = read_image(data)
    dh, dw = img.meta["decoded_size"]
    assert img.meta["rows"] == h and img.meta["columns"] == w
    assert limits.REDUCED_MIN_SIDE <= max(dh, dw) < h and dh * w == pytest.approx(dw * h, rel=0.01)
    if kind in ("png-16", "png-rgb16"):
        assert img.meta["bits_stored"] == 16 and img.pixels.max() > 255
    reduced = standardize(img, CFG)
    full = _full_resolution(data, monkeypatch)
    assert np.abs(reduced - full).mean() < 0.01 and np.abs(reduced - full).max() < 0.1


def test_large_dicom_is_reduced_before_its_luts(monkeypatch):
    from tests.embed.dicom_fixtures import make_dicom

    stored = (4000 * _film(4200, 2200)).astype(np.uint16)  # 9.2 MP, 12-bit values
    data = make_dicom(stored)
    assert read_image(data).shape == (4200 // 2, 2200 // 2)  # area-averaged by 2 (longer side stays >= 2048)
    reduced = load_standardized(data, CFG)
    full = _full_resolution(data, monkeypatch)
    assert np.abs(reduced - full).mean() < 0.01


def test_truncated_large_png_is_still_reported_truncated():
    data = _encode(".png", (255 * _film(2600, 2600)).astype(np.uint8))
    from embed.errors import TruncatedImageError

    with pytest.raises(TruncatedImageError):
        read_image(data[: len(data) // 2])


def test_large_decodes_are_admitted_one_at_a_time():
    entered = threading.Event()

    def second() -> None:
        with limits.large_decode(5000, 5000):
            entered.set()

    with limits.large_decode(5000, 5000) as large:
        assert large
        with limits.large_decode(100, 100) as small:  # ordinary images never wait
            assert not small
        t = threading.Thread(target=second)
        t.start()
        assert not entered.wait(0.3)  # the second large decode waits for the first
    t.join(10)
    assert entered.is_set()


def test_exif_rotated_large_jpeg_keeps_its_orientation():
    from PIL import Image

    arr = (255 * _film(2400, 3000)).astype(np.uint8)  # landscape pixels, EXIF says rotate 90
    pil = Image.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    pil.save(buf, "JPEG", exif=exif, quality=95)
    img = read_image(buf.getvalue())
    dh, dw = img.meta["decoded_size"]
    assert dh > dw and img.meta["rows"] == 3000 and img.meta["columns"] == 2400
