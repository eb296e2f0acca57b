"""Standardization: config contract, intensity handling, geometry, speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embed.errors import CXRError
from embed.image import CXRImage, read_image
from embed.standardize import StandardizeConfig, load_standardized, standardize, to_grey, to_png_bytes

RNG = np.random.default_rng(3)


# ----------------------------------------------------------------------------- config

def test_config_defaults_follow_the_contract():
    cfg = StandardizeConfig()
    assert cfg.to_dict() == {"size": 224, "clip_low_pct": 0.0, "clip_high_pct": 99.0, "equalize": "none",
                             "clahe_clip": 2.0}


def test_config_round_trip_and_fingerprint():
    cfg = StandardizeConfig(size=128, equalize="clahe", clahe_clip=3)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert StandardizeConfig.from_dict(d) == cfg
    assert StandardizeConfig.from_dict(d).fingerprint() == cfg.fingerprint()
    assert len(cfg.fingerprint()) == 16 and int(cfg.fingerprint(), 16) >= 0
    # ints and floats normalise: equal settings, equal fingerprint
    assert StandardizeConfig(clip_high_pct=99).fingerprint() == StandardizeConfig(clip_high_pct=99.0).fingerprint()
    assert cfg.fingerprint() != StandardizeConfig(size=128, equalize="clahe", clahe_clip=2).fingerprint()
    assert StandardizeConfig().fingerprint() != StandardizeConfig(size=256).fingerprint()


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        StandardizeConfig().size = 10  # type: ignore[misc]


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(CXRError, match="unknown standardization setting.*'gamma'"):
        StandardizeConfig.from_dict({"size": 224, "gamma": 2.2})


@pytest.mark.parametrize(
    "kw",
    [{"size": 0}, {"size": 22.5}, {"clip_low_pct": 50, "clip_high_pct": 40}, {"clip_high_pct": 101},
     {"equalize": "CLAHE!"}, {"clahe_clip": 0}, {"clip_low_pct": "1"}],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(CXRError):
        StandardizeConfig(**kw)


# ----------------------------------------------------------------------------- behaviour

def test_output_shape_type_and_range():
    out = standardize(RNG.normal(1000, 300, (50, 80)).astype(np.float32), StandardizeConfig(size=32))
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.flags.c_contiguous


def test_percentile_clip_top_one_percent():
    """A few burnt-in white labels must not squash the anatomy: the top 1 % is clipped to 1."""
    img = np.tile(np.linspace(0, 100, 100, dtype=np.float32), (100, 1))  # ramp, 100x100
    img[:3, :10] = 10_000  # 30 px = 0.3 % extreme label
    out = standardize(img, StandardizeConfig(size=100))
    assert np.all(out[:3, :10] == 1.0)
    ramp = out[50, 10:]
    assert ramp.max() > 0.95 and ramp.min() < 0.15  # the ramp still spans (almost) the whole range
    no_clip = standardize(img, StandardizeConfig(size=100, clip_high_pct=100))
    assert no_clip[50, 10:].max() < 0.02  # without clipping the label crushes it


def test_low_percentile_clip():
    img = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (10, 1))
    out = standardize(img, StandardizeConfig(size=200, clip_low_pct=10, clip_high_pct=90))
    row = out[out.shape[0] // 2]
    nz = row  # image fills the width
    assert np.isclose(nz[:15].max(), 0.0) and np.isclose(nz[-15:].min(), 1.0)


def test_constant_image_gives_zeros_without_warnings():
    with np.errstate(all="raise"):
        out = standardize(np.full((30, 40), 7.0, np.float32), StandardizeConfig(size=16))
    assert np.all(out == 0)


def test_aspect_preserved_and_centred_black_padding():
    img = np.full((50, 100), 5.0, np.float32)
    img[:, :50] = 1.0  # left half dark, right half bright
    out = standardize(img, StandardizeConfig(size=40))
    rows = np.where(out.max(axis=1) > 0)[0]
    assert (rows.min(), rows.max()) == (10, 29)  # 20 rows of content, centred
    assert np.all(out[:10] == 0) and np.all(out[30:] == 0)
    assert np.allclose(out[15, :18], 0) and np.allclose(out[15, 22:], 1)


def test_tall_image_padded_left_and_right():
    img = RNG.random((90, 30)).astype(np.float32) + 1
    out = standardize(img, StandardizeConfig(size=30))
    cols = np.where(out.max(axis=0) > 0)[0]
    assert (cols.min(), cols.max()) == (10, 19)


def test_small_image_is_enlarged():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = standardize(img, StandardizeConfig(size=64, clip_high_pct=100))
    assert out.shape == (64, 64)
    assert np.all(np.diff(out[32], axis=0) >= -1e-6)  # linear interpolation keeps the ramp monotone
    assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(0.0)


def test_rgb_is_converted_by_luminance():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:10] = (255, 0, 0)
    rgb[10:] = (0, 0, 255)
    grey = to_grey(rgb)
    np.testing.assert_allclose(grey[0, 0], 0.299 * 255, rtol=1e-3)
    np.testing.assert_allclose(grey[-1, 0], 0.114 * 255, rtol=1e-3)
    rgba = np.dstack([rgb, np.zeros((20, 20), np.uint8)])
    np.testing.assert_array_equal(to_grey(rgba), grey)
    out = standardize(rgb, StandardizeConfig(size=20, clip_high_pct=100))
    assert out[0, 0] == pytest.approx(1.0) and out[-1, 0] == pytest.approx(0.0)


def test_accepts_cxrimage():
    arr = RNG.random((10, 10)).astype(np.float32)
    np.testing.assert_array_equal(standardize(CXRImage(arr, {}, "png"), StandardizeConfig(size=10)),
                                  standardize(arr, StandardizeConfig(size=10)))


@pytest.mark.parametrize("mode", ["hist", "clahe"])
def test_equalization_spreads_a_skewed_histogram(mode):
    img = (RNG.random((128, 128)) ** 4).astype(np.float32)  # most pixels dark
    base = standardize(img, StandardizeConfig(size=128, clip_high_pct=100))
    eq = standardize(img, StandardizeConfig(size=128, clip_high_pct=100, equalize=mode))
    assert eq.shape == (128, 128) and eq.min() >= 0 and eq.max() <= 1
    assert eq.mean() > base.mean() + (0.2 if mode == "hist" else 0.05)  # dark mass pushed up (CLAHE is clip-limited)
    # order is preserved (both are monotone on intensity) for global hist
    if mode == "hist":
        order = np.argsort(base.ravel())
        assert np.all(np.diff(eq.ravel()[order]) >= -1e-6)


def test_clahe_clip_changes_output():
    img = (RNG.random((64, 64)) ** 3).astype(np.float32)
    a = standardize(img, StandardizeConfig(size=64, equalize="clahe", clahe_clip=1.0))
    b = standardize(img, StandardizeConfig(size=64, equalize="clahe", clahe_clip=8.0))
    assert not np.allclose(a, b)


def test_nan_pixels_do_not_poison_output():
    img = RNG.random((20, 20)).astype(np.float32)
    img[3, 3] = np.nan
    out = standardize(img, StandardizeConfig(size=20))
    assert np.isfinite(out).all()


def test_to_png_bytes_round_trip():
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    data = to_png_bytes(arr)
    back = read_image(data)
    assert back.format == "png" and back.pixels.shape == (8, 8)
    np.testing.assert_allclose(back.pixels, np.rint(arr * 255), atol=0)
    assert read_image(to_png_bytes(np.full((3, 3), 2.0))).pixels.max() == 255  # clipped, not wrapped


def test_load_standardized_equals_read_then_standardize():
    from PIL import Image
    import io

    arr = RNG.integers(0, 256, (40, 30), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    cfg = StandardizeConfig(size=24)
    np.testing.assert_array_equal(load_standardized(buf.getvalue(), cfg), standardize(read_image(buf.getvalue()), cfg))


def test_large_image_standardizes_to_target():
    """A 3000x2500 16-bit radiograph comes out at the configured size in [0, 1] (speed: scripts/bench_embed.py)."""
    img = RNG.integers(0, 4096, (3000, 2500)).astype(np.uint16)
    out = standardize(img, StandardizeConfig(equalize="clahe"))
    assert out.shape == (224, 224) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_shared_png_and_jpeg_standardize(shared_data):
    pngs = sorted((shared_data / "nih-chestxray14-subset").rglob("*.png"))[:3]
    jpgs = sorted((shared_data / "chest_xray").rglob("*.jpeg"))[:3]
    if not pngs and not jpgs:
        pytest.skip("no PNG/JPEG in the shared data")
    for path in pngs + jpgs:
        out = load_standardized(path, StandardizeConfig(size=64))
        assert out.shape == (64, 64) and 0.1 < out.mean() < 0.9
