"""DICOM pixel pipeline: generated tiny files (always run) and the shared real files."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.dataelem import DataElement

from embed.errors import ImageTooLargeError, TruncatedImageError, UnsupportedImageError
from embed.image import read_image
from embed.standardize import StandardizeConfig, standardize
from tests.embed.dicom_fixtures import make_dataset, make_dicom, to_bytes

RAMP12 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 64)  # 0..4032, 12-bit


def test_monochrome2_values_are_kept():
    img = read_image(make_dicom(RAMP12, bits_allocated=16, bits_stored=12))
    assert img.format == "dicom"
    assert img.pixels.dtype == np.float32
    np.testing.assert_array_equal(img.pixels, RAMP12.astype(np.float32))


@pytest.mark.parametrize("bits_allocated,bits_stored", [(8, 8), (16, 12), (16, 16), (16, 10)])
def test_bit_depths(bits_allocated, bits_stored):
    top = (1 << bits_stored) - 1
    stored = np.linspace(0, top, 20).astype(f"u{bits_allocated // 8}").reshape(4, 5)
    img = read_image(make_dicom(stored, bits_allocated=bits_allocated, bits_stored=bits_stored))
    np.testing.assert_array_equal(img.pixels, stored.astype(np.float32))
    assert img.meta["bits_stored"] == bits_stored


def test_garbage_above_bits_stored_is_masked():
    """BitsStored 12 of 16: the 4 high bits are overlay/garbage and must not reach the pixels."""
    garbage = RAMP12 | np.uint16(0xB000)
    img = read_image(make_dicom(garbage, bits_allocated=16, bits_stored=12))
    np.testing.assert_array_equal(img.pixels, RAMP12.astype(np.float32))


def test_signed_12_bit_is_sign_extended():
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    img = read_image(make_dicom(values, bits_allocated=16, bits_stored=12, signed=True))
    np.testing.assert_array_equal(img.pixels, values.astype(np.float32))


def test_signed_12_bit_with_garbage_high_bits():
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    raw = (values.view(np.uint16) & np.uint16(0x0FFF)) | np.uint16(0xA000)  # 12-bit two's complement + junk
    img = read_image(make_dicom(raw, bits_allocated=16, bits_stored=12, signed=False, PixelRepresentation=1))
    np.testing.assert_array_equal(img.pixels, values.astype(np.float32))


def test_modality_rescale_slope_intercept():
    img = read_image(make_dicom(RAMP12, bits_stored=12, RescaleSlope="2", RescaleIntercept="-1024"))
    np.testing.assert_allclose(img.pixels, RAMP12 * 2.0 - 1024.0)


def _lut_item(descriptor: list[int], data: np.ndarray) -> Dataset:
    item = Dataset()
    item.add(DataElement(0x00283002, "US", descriptor))
    item.add(DataElement(0x00283006, "US", [int(v) for v in data]))
    return item


def test_modality_lut_sequence_is_applied():
    stored = np.arange(16, dtype=np.uint16).reshape(4, 4)
    lut = (np.arange(16) ** 2).astype(np.uint16)  # non-linear, so a rescale cannot fake it
    ds = make_dataset(stored, bits_stored=12)
    item = _lut_item([16, 0, 16], lut)
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = [item]
    img = read_image(to_bytes(ds))
    np.testing.assert_array_equal(img.pixels, lut[stored].astype(np.float32))


def test_voi_lut_sequence_is_applied_after_rescale():
    stored = np.arange(16, dtype=np.uint16).reshape(4, 4)
    lut = (255 - np.arange(16) * 3).astype(np.uint16)  # decreasing: order of operations is visible
    ds = make_dataset(stored, bits_stored=12, RescaleSlope="1", RescaleIntercept="10")
    ds.VOILUTSequence = [_lut_item([16, 10, 8], lut)]  # first mapped value 10 = after rescale
    img = read_image(to_bytes(ds))
    np.testing.assert_array_equal(img.pixels, lut[stored].astype(np.float32))


def test_linear_window_saturates_outside_and_is_linear_inside():
    stored = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    centre, width = 2000, 1000
    out = read_image(make_dicom(stored, bits_stored=12, WindowCenter=str(centre), WindowWidth=str(width))).pixels
    x = stored.astype(float)
    below, above = x <= centre - 0.5 - (width - 1) / 2, x > centre - 0.5 + (width - 1) / 2
    inside = ~below & ~above
    assert np.all(out[below] == out.min()) and np.all(out[above] == out.max())
    xs, ys = x[inside], out[inside].astype(float)
    slope, intercept = np.polyfit(xs, ys, 1)
    assert slope > 0
    np.testing.assert_allclose(ys, slope * xs + intercept, atol=1e-2 * (out.max() - out.min()))


def test_sigmoid_voi_lut_function():
    stored = np.array([[1000, 1500, 2000, 2500, 3000]], dtype=np.uint16)
    out = read_image(
        make_dicom(stored, bits_stored=12, WindowCenter="2000", WindowWidth="1000", VOILUTFunction="SIGMOID")
    ).pixels[0].astype(float)
    assert np.all(np.diff(out) > 0)
    # point-symmetric around the centre, and not saturated (a linear window of width 1000 would clip 1000 and 3000)
    np.testing.assert_allclose(out[1] + out[3], 2 * out[2], rtol=1e-4)
    np.testing.assert_allclose(out[0] + out[4], 2 * out[2], rtol=1e-4)
    assert out[0] > out[1] - (out[2] - out[1]) * 2  # softer than linear at the ends
    lin = read_image(make_dicom(stored, bits_stored=12, WindowCenter="2000", WindowWidth="1000")).pixels[0]
    assert not np.allclose(out, lin)


def test_monochrome1_is_inverted_so_bone_is_bright():
    stored = RAMP12
    data = make_dicom(stored, bits_stored=12, photometric="MONOCHROME1")
    raw = read_image(data, correct_photometric=False).pixels
    fixed = read_image(data).pixels
    np.testing.assert_array_equal(raw, stored.astype(np.float32))
    # exact inversion within the data's own range: high stored value (dark in MONOCHROME1) -> low output
    np.testing.assert_array_equal(fixed + raw, np.full_like(raw, raw.min() + raw.max()))


def test_presentation_lut_shape_inverse_inverts_monochrome2():
    data = make_dicom(RAMP12, bits_stored=12, PresentationLUTShape="INVERSE")
    fixed = read_image(data).pixels
    np.testing.assert_array_equal(fixed, RAMP12.max() + RAMP12.min() - RAMP12.astype(np.float32))


def test_monochrome1_with_inverse_shape_is_inverted_once():
    """DX/CR IODs require INVERSE *for* MONOCHROME1: it restates the polarity, it is not a 2nd inversion."""
    data = make_dicom(RAMP12, bits_stored=12, photometric="MONOCHROME1", PresentationLUTShape="INVERSE")
    mono1_only = read_image(make_dicom(RAMP12, bits_stored=12, photometric="MONOCHROME1")).pixels
    np.testing.assert_array_equal(read_image(data).pixels, mono1_only)


def test_window_then_inversion_order():
    """VOI window is applied to stored values *before* MONOCHROME1 inversion (standard pipeline order)."""
    stored = np.array([[0, 1000, 2000, 3000, 4000]], dtype=np.uint16)
    out = read_image(
        make_dicom(stored, bits_stored=12, photometric="MONOCHROME1", WindowCenter="1000", WindowWidth="1000")
    ).pixels[0]
    # window [500, 1500]: 0 saturates low, 2000+ saturate high; after inversion high stored -> darkest
    assert out[0] == out.max() and np.all(out[2:] == out.min()) and out.min() < out[1] < out.max()


def test_no_file_meta_implicit_vr_reads():
    data = make_dicom(RAMP12, bits_stored=12, file_meta=False)
    assert data[128:132] != b"DICM" and data[:2] == b"\x08\x00"
    img = read_image(data)
    np.testing.assert_array_equal(img.pixels, RAMP12.astype(np.float32))
    assert img.meta["transfer_syntax"] == "Implicit VR Little Endian"


def test_implicit_vr_with_file_meta_reads():
    img = read_image(make_dicom(RAMP12, bits_stored=12, implicit=True))
    np.testing.assert_array_equal(img.pixels, RAMP12.astype(np.float32))


def test_rgb_dicom_becomes_luminance():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    img = read_image(make_dicom(rgb, photometric="RGB"))
    assert img.pixels.shape == (4, 4)
    np.testing.assert_allclose(img.pixels, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-5)


def test_multiframe_is_unsupported():
    ds = make_dataset(np.zeros((4, 4), np.uint8))
    ds.NumberOfFrames = 2
    ds.PixelData = bytes(32)
    with pytest.raises(UnsupportedImageError, match="multi-frame"):
        read_image(to_bytes(ds))


def test_unknown_photometric_is_unsupported():
    with pytest.raises(UnsupportedImageError, match="photometric"):
        read_image(make_dicom(np.zeros((4, 4), np.uint8), photometric="HSV"))


def test_dicom_without_pixels_is_unsupported():
    """A report has no pixels (unsupported); an image class without them was cut or stripped (truncated)."""
    ds = make_dataset(np.zeros((4, 4), np.uint8))
    del ds.PixelData
    with pytest.raises(TruncatedImageError, match="without pixel data: the file is truncated"):
        read_image(to_bytes(ds))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    with pytest.raises(UnsupportedImageError, match="without pixel data"):
        read_image(to_bytes(ds))


def test_oversized_dicom_refused_from_header():
    ds = make_dataset(np.zeros((2, 2), np.uint8))
    ds.Rows, ds.Columns = 50_000, 50_000  # PixelData is 4 bytes: decoding would have to allocate 2.5 GB
    with pytest.raises(ImageTooLargeError, match="50,000"):
        read_image(to_bytes(ds))
    with pytest.raises(ImageTooLargeError):
        read_image(make_dicom(np.zeros((10, 10), np.uint8)), max_pixels=99)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_dicom(keep):
    data = make_dicom(np.arange(4096, dtype=np.uint16).reshape(64, 64), bits_stored=12)
    with pytest.raises(TruncatedImageError):
        read_image(data[: int(len(data) * keep)])


# ----------------------------------------------------------------------------- shared real files

@functools.lru_cache(maxsize=32)
def _read_cached(path: str, correct_photometric: bool = True):
    """Decoding the 2000 px J2K/JPEG-LS files takes ~0.3 s: read each once per session."""
    return read_image(path, correct_photometric=correct_photometric)


def _shared(shared_data, name):
    path = shared_data / "dicom" / name
    if not path.exists():
        pytest.skip(f"{path} not in this copy of the shared data")
    return path


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


SHARED = [
    "wg04-RG1_J2KI.dcm", "wg04-RG1_JLSN.dcm", "wg04-RG2_JPLL.dcm", "CR-MONO1-10-chest.dcm",
    "siim-cr-chest.dcm", "siim-cr-chest-fake-monochrome1.dcm", "rsna-cr-chest.dcm",
    "dx-thorax-inverse.dcm", "cr-modality-lut-sequence.dcm", "modality-lut-sequence.dcm", "voi-lut-sequence.dcm",
]


@pytest.mark.parametrize("name", SHARED)
def test_every_shared_dicom_decodes(shared_data, name):
    img = _read_cached(str(_shared(shared_data, name)))
    assert img.format == "dicom"
    assert img.pixels.ndim == 2 and img.pixels.shape == (img.meta["rows"], img.meta["columns"])
    assert np.isfinite(img.pixels).all()
    assert img.pixels.std() > 0.05 * (img.pixels.max() - img.pixels.min())  # not blank or flat
    std = standardize(img, StandardizeConfig(size=64))
    assert 0.15 < std.mean() < 0.85


CHESTS = ["wg04-RG1_J2KI.dcm", "CR-MONO1-10-chest.dcm", "siim-cr-chest.dcm", "rsna-cr-chest.dcm"]


@pytest.mark.parametrize("name", CHESTS)
def test_chests_have_bright_mediastinum_and_dark_lungs(shared_data, name):
    """Bone bright, lungs dark: the central column (spine/heart) outshines the mid-lung fields."""
    x = standardize(_read_cached(str(_shared(shared_data, name))), StandardizeConfig(size=96))
    rows = slice(25, 60)
    centre = x[rows, 43:53].mean()
    lungs = (x[rows, 20:32].mean() + x[rows, 64:76].mean()) / 2
    assert centre > lungs + 0.1, (centre, lungs)
    # and the MONOCHROME1 files are the ones whose raw data says the opposite
    raw = standardize(_read_cached(str(_shared(shared_data, name)), False), StandardizeConfig(size=96))
    if _read_cached(str(_shared(shared_data, name))).meta["photometric"] == "MONOCHROME1":
        assert raw[rows, 43:53].mean() < (raw[rows, 20:32].mean() + raw[rows, 64:76].mean()) / 2


def test_rg1_j2k_and_jpegls_agree(shared_data):
    cfg = StandardizeConfig(size=224)
    a = standardize(_read_cached(str(_shared(shared_data, "wg04-RG1_J2KI.dcm"))), cfg)
    b = standardize(_read_cached(str(_shared(shared_data, "wg04-RG1_JLSN.dcm"))), cfg)
    assert _corr(a, b) > 0.99


def test_fake_monochrome1_twin(shared_data):
    """The fake file stores exactly the twin's values but labels them MONOCHROME1. So:

    - with ``correct_photometric=False`` it is pixel-identical to the MONOCHROME2 twin;
    - with the correction (default) it is the inverse of the twin: ``fake + twin == min + max``
      (inversion within the data range), and after standardization they anti-correlate.
    """
    twin = read_image(_shared(shared_data, "siim-cr-chest.dcm"))
    fake_raw = read_image(_shared(shared_data, "siim-cr-chest-fake-monochrome1.dcm"), correct_photometric=False)
    fake = read_image(_shared(shared_data, "siim-cr-chest-fake-monochrome1.dcm"))
    assert twin.meta["photometric"] == "MONOCHROME2" and fake.meta["photometric"] == "MONOCHROME1"
    np.testing.assert_array_equal(fake_raw.pixels, twin.pixels)
    lo, hi = twin.pixels.min(), twin.pixels.max()
    np.testing.assert_array_equal(fake.pixels, (hi + lo) - twin.pixels)
    cfg = StandardizeConfig(size=128)
    assert _corr(standardize(fake, cfg), standardize(twin, cfg)) < -0.95


def test_file_without_file_meta(shared_data):
    path = _shared(shared_data, "CR-MONO1-10-chest.dcm")
    head = path.read_bytes()[:132]
    assert head[128:132] != b"DICM"
    img = read_image(path)
    assert img.pixels.shape == (440, 440)
    assert img.meta["photometric"] == "MONOCHROME1" and img.meta["body_part"] == "CHEST"


def test_hip_reports_its_body_part(shared_data):
    img = read_image(_shared(shared_data, "wg04-RG2_JPLL.dcm"))
    assert img.meta["body_part"] == "HIP"
    assert img.meta["bits_stored"] == 10 and img.pixels.max() <= 1023


def test_dx_inverse_bone_bright(shared_data):
    """MONOCHROME1 + INVERSE (veterinary thorax): inverted once, the spine (top third) is brighter than the lung."""
    img = read_image(_shared(shared_data, "dx-thorax-inverse.dcm"))
    raw = read_image(_shared(shared_data, "dx-thorax-inverse.dcm"), correct_photometric=False)
    np.testing.assert_array_equal(img.pixels, raw.pixels.max() + raw.pixels.min() - raw.pixels)
    x = standardize(img, StandardizeConfig(size=96))
    # the image is wider than tall: content rows ~ 10..86; air outside the animal (top corners) is dark
    assert x[12:20, 5:90].mean() < x[40:70, 5:90].mean()
    r = standardize(raw, StandardizeConfig(size=96))
    assert r[12:20, 5:90].mean() > r[40:70, 5:90].mean()  # uncorrected, the air is bright


def test_file_meta_without_preamble_reads():
    """Some writers drop the 128-byte preamble but keep 'DICM' and the file meta."""
    data = make_dicom(RAMP12, bits_stored=12)
    img = read_image(data[128:])
    np.testing.assert_array_equal(img.pixels, RAMP12.astype(np.float32))


@pytest.mark.parametrize("syntax", ["JPEG2000Lossless", "RLELossless"])
def test_compressed_monochrome1_12_bit(syntax):
    """Compressed pixel data (encoded here by pydicom/pylibjpeg) decodes losslessly, then is inverted."""
    import pydicom.uid

    stored = (np.arange(48 * 40, dtype=np.uint16).reshape(48, 40) * 2) % 4096
    ds = make_dataset(stored, bits_stored=12, photometric="MONOCHROME1")
    try:
        ds.compress(getattr(pydicom.uid, syntax), stored)
    except RuntimeError as exc:  # encoder plugin missing in this environment
        pytest.skip(f"cannot encode {syntax} here: {exc}")
    data = to_bytes(ds)
    raw = read_image(data, correct_photometric=False)
    np.testing.assert_array_equal(raw.pixels, stored.astype(np.float32))
    assert raw.meta["transfer_syntax"] == getattr(pydicom.uid, syntax).name
    np.testing.assert_array_equal(read_image(data).pixels, stored.max() + stored.min() - stored.astype(np.float32))


def test_ybr_jpeg_colour_dicom_becomes_luminance():
    """A colour secondary capture (JPEG baseline, YBR_FULL_422) reads as the luminance of its RGB."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 40)
    rgb[..., 1] = 120
    rgb[..., 2] = np.linspace(255, 0, 32)[:, None]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    ds = make_dataset(rgb, photometric="YBR_FULL_422")
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    img = read_image(to_bytes(ds))
    assert img.pixels.shape == (32, 40)
    lum = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(img.pixels - lum).mean() < 2.0


def test_palette_colour_dicom_uses_its_lut():
    idx = np.arange(16, dtype=np.uint8).reshape(4, 4)
    ds = make_dataset(idx, photometric="PALETTE COLOR")
    ramp = (np.arange(256) * 257).astype("<u2")  # 16-bit entries
    # (descriptor tag, data tag, scale) for red, green, blue
    for descriptor, lut, scale in ((0x00281101, 0x00281201, 1.0), (0x00281102, 0x00281202, 0.5),
                                   (0x00281103, 0x00281203, 0.0)):
        ds.add(DataElement(descriptor, "US", [256, 0, 16]))
        ds.add(DataElement(lut, "OW", (ramp * scale).astype("<u2").tobytes()))
    img = read_image(to_bytes(ds))
    expected = (0.299 + 0.587 * 0.5) * (idx.astype(float) * 257)
    np.testing.assert_allclose(img.pixels, expected, rtol=1e-3, atol=2)
