"""The reader against pydicom's own test files, and inputs that must never mislead.

Every file either reads (finite pixels that standardize) or fails with a specific
message; a single-frame file that pydicom itself decodes is never refused, and no
message is the catch-all "could not be decoded".
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from embed.errors import ImageReadError, TruncatedImageError, UnsupportedImageError
from embed.image import read_image
from embed.standardize import StandardizeConfig, load_standardized, standardize

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file, get_testdata_files  # noqa: E402

CATCH_ALL = ("could not be decoded (", "(AttributeError)", "(KeyError)", "(TypeError)")


def _pydicom_decodes(path: str) -> bool:
    """Whether pydicom (with every installed plugin) decodes a single frame of this file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            return int(ds.get("NumberOfFrames", 1) or 1) == 1 and ds.pixel_array.size > 0
    except Exception:  # noqa: BLE001 - "does not decode elsewhere" is all we need to know
        return False


def test_every_pydicom_test_file_reads_or_fails_specifically():
    files = [f for f in get_testdata_files() if Path(f).is_file()]
    assert len(files) > 60, "pydicom's bundled test files are missing"
    read, refused = 0, {}
    for f in files:
        try:
            img = read_image(f)
        except ImageReadError as exc:
            msg = str(exc)
            assert Path(f).name in msg, msg  # names the input
            assert not any(c in msg for c in CATCH_ALL), f"{Path(f).name}: unspecific message {msg!r}"
            assert not _pydicom_decodes(f), f"{Path(f).name} decodes with pydicom but the reader says: {msg}"
            refused[Path(f).name] = type(exc).__name__
            continue
        assert np.isfinite(img.pixels).all(), Path(f).name
        out = standardize(img, StandardizeConfig(size=64))
        assert out.shape == (64, 64) and np.isfinite(out).all()
        read += 1
    assert read >= 40
    assert refused.get("rtplan.dcm") == "UnsupportedImageError"  # no pixels: a plan, not an image
    assert refused.get("rtdose.dcm") == "UnsupportedImageError"  # multi-frame
    assert refused.get("MR_truncated.dcm") == "TruncatedImageError"


def test_12bit_jpeg_extended_decodes_like_its_fixed_copy():
    """WG04 NM1_JPLY (pydicom's JPEG-lossy.dcm) trips libjpeg; GDCM reads it (JPGExtended.dcm is the fixed copy)."""
    pytest.importorskip("gdcm", reason="python-gdcm is installed by `make test` (pyproject dependency)")
    lossy = read_image(get_testdata_file("JPEG-lossy.dcm"))
    fixed = read_image(get_testdata_file("JPGExtended.dcm"))
    assert lossy.meta["bits_stored"] == 12 and lossy.shape == fixed.shape == (1024, 256)
    assert np.corrcoef(lossy.pixels.ravel(), fixed.pixels.ravel())[0, 1] > 0.999


def _saved(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _modified(name: str, change) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name))
    change(ds)
    return _saved(ds)


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "JPGExtended.dcm", "SC_rgb_jpeg.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_dicom_says_truncated(name, keep):
    data = Path(get_testdata_file(name)).read_bytes()
    with pytest.raises(TruncatedImageError, match="truncated"):
        read_image(data[: int(len(data) * keep)])


@pytest.mark.parametrize("value", [None, "monochrome2", " MONOCHROME2 "])
@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm"])
def test_missing_or_lower_case_photometric_is_defaulted(name, value):
    expected = read_image(get_testdata_file(name)).pixels

    def change(ds):
        if value is None:
            del ds.PhotometricInterpretation
        else:
            ds.PhotometricInterpretation = value

    got = read_image(_modified(name, change)).pixels
    np.testing.assert_array_equal(got, expected)


def test_bad_photometric_is_named():
    data = _modified("CT_small.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", "HSV"))
    with pytest.raises(UnsupportedImageError, match="photometric interpretation 'HSV'"):
        read_image(data)


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm"])
def test_unknown_transfer_syntax_is_unsupported_not_corrupt(name):
    data = _modified(name, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5"))
    with pytest.raises(UnsupportedImageError, match="unknown transfer syntax"):
        read_image(data)


def test_overflowing_rescale_is_refused():
    data = _modified("CT_small.dcm", lambda ds: setattr(ds, "RescaleSlope", "1e308"))
    with pytest.raises(ImageReadError, match="non-finite"):
        read_image(data)


def test_decoder_failures_leave_no_traceback_in_the_log(caplog):
    """pydicom logs each failed plugin with its traceback; the reader reports once, without one."""
    caplog.set_level("DEBUG")
    with pytest.raises(ImageReadError):
        read_image(get_testdata_file("JPEG2000-embedded-sequence-delimiter.dcm"))
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def _png16(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("equalize", ["none", "hist", "clahe"])
def test_uniform_images_standardize_to_zeros(equalize):
    cfg = StandardizeConfig(size=224, equalize=equalize)
    for arr in (np.full((500, 500), 200.0), np.full((1, 1), 7.0), np.full((333, 517, 3), 90, np.uint8)):
        assert not standardize(arr, cfg).any(), (arr.shape, equalize)
    for value in (0, 1234, 65535):
        blank16 = _png16(np.full((700, 500), value, np.uint16))
        assert read_image(blank16).meta["bits_stored"] == 16
        assert not load_standardized(blank16, cfg).any(), (value, equalize)


def test_faint_contrast_is_kept():
    """One grey level of difference at 16 bits is still contrast."""
    arr = np.full((256, 256), 40000, np.uint16)
    arr[:, 128:] += 1
    out = standardize(arr, StandardizeConfig(size=64))
    assert out.max() == 1.0 and out.min() == 0.0
