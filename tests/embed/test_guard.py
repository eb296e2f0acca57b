"""The out-of-distribution guard: generated non-chest images are flagged, chest films are not."""

from __future__ import annotations

import io

import numpy as np
import pytest

from embed.guard import NOT_CXR, UNLIKE_INDEX, OODGuard, guard_path, is_uniform, thumbnails
from embed.models import RELEASED_MODEL_PATH

DICOM_FLAGGED = ["wg04-RG2_JPLL.dcm", "cr-modality-lut-sequence.dcm", "dx-thorax-inverse.dcm",
                 "modality-lut-sequence.dcm", "voi-lut-sequence.dcm"]  # hip, dental, dog thorax, two test patterns
DICOM_HUMAN_CHEST = ["CR-MONO1-10-chest.dcm", "rsna-cr-chest.dcm", "siim-cr-chest.dcm", "wg04-RG1_J2KI.dcm",
                     "wg04-RG1_JLSN.dcm"]


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _photo(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A natural-looking RGB landscape: sky gradient, sun, mountain ridge, textured grass."""
    import cv2

    y = np.linspace(0, 1, size)[:, None, None]
    img = np.broadcast_to((1 - y) * np.array([235, 190, 120]) + y * np.array([255, 240, 210]), (size, size, 3)).copy()
    cv2.circle(img, (int(size * 0.75), int(size * 0.2)), size // 12, (120, 230, 255), -1)
    ridge = np.array([[0, size * 0.55]] + [[x, size * (0.35 + 0.15 * np.sin(x / 17.0) + 0.05 * rng.random())]
                                            for x in range(0, size + 8, 8)] + [[size, size * 0.6], [size, size], [0, size]])
    cv2.fillPoly(img, [ridge.astype(np.int32)], (90, 110, 100))
    grass = rng.normal(0, 25, (size // 3, size, 3)) + np.array([40, 140, 60])
    img[size - size // 3:] = grass
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0), 0, 255).astype(np.uint8)


def _generated(kind: str, rng: np.random.Generator) -> np.ndarray:
    size = 256
    if kind == "noise":
        return rng.integers(0, 256, (size, size), dtype=np.uint8)
    if kind == "gradient":
        return np.tile(np.linspace(0, 255, size, dtype=np.float32), (size, 1)).astype(np.uint8)
    if kind == "radial-gradient":
        yy, xx = np.mgrid[:size, :size]
        return (255 * np.hypot(yy - size / 2, xx - size / 2) / (size / 1.4)).clip(0, 255).astype(np.uint8)
    if kind == "photo":
        return _photo(rng, size)
    if kind == "blank":
        return np.full((size, size), 128, np.uint8)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def released():
    from embed.inference import Embedder

    if not guard_path(RELEASED_MODEL_PATH).is_file():
        pytest.fail("the released model ships without its guard: run `cxr calibrate` (embed/models/released.guard.npz)")
    return Embedder.from_checkpoint(None, device="cpu"), OODGuard.load(guard_path(RELEASED_MODEL_PATH))


@pytest.mark.parametrize("kind", ["noise", "gradient", "radial-gradient", "photo", "blank"])
def test_generated_non_radiographs_are_flagged(released, kind):
    embedder, guard = released
    q = embedder.embed_image(_png(_generated(kind, np.random.default_rng(3))))
    verdict = guard.check(q.standardized, guard.nearest_reference(q.embedding), q.meta.get("chroma"))
    assert verdict.flagged, (kind, verdict)
    assert verdict.reason in (NOT_CXR, UNLIKE_INDEX)
    assert verdict.score < guard.alpha


def test_uniform_image_is_not_a_chest_radiograph_before_any_model(released):
    _, guard = released
    v = guard.check(np.full((128, 128), 0.5, np.float32), None)
    assert v.flagged and v.reason == NOT_CXR and v.score == 0.0
    assert is_uniform(np.zeros((8, 8))) and not is_uniform(np.random.default_rng(0).random((8, 8)))


def test_guard_belongs_to_the_released_model(released):
    embedder, guard = released
    assert guard.model_sha256 == embedder.model_sha256
    assert guard.reference is not None and guard.reference.shape[1] == embedder.embed_dim


def test_fit_sets_thresholds_on_validation_films_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 1024))
    train = base + 0.3 * rng.normal(size=(300, 1024))
    val = base + 0.3 * rng.normal(size=(400, 1024))
    nn = rng.uniform(0.8, 1.0, 400)
    guard = OODGuard.fit(train, val, nn, model_sha256="abc", n_components=8, alpha=0.01)
    flagged = [guard.check(None, s).flagged for s in nn]
    assert np.mean(flagged) <= 0.01 + 1e-9  # thresholds from these films: at most alpha of them
    far = guard.pixel_distance(rng.normal(size=(5, 1024)) * 3)
    assert (far > guard.pixel_ref.max()).all()  # off the training subspace scores beyond every validation film
    back = OODGuard.load(guard.save(tmp_path / "m.guard.npz"))
    assert back.model_sha256 == "abc"
    np.testing.assert_allclose(back.pixel_ref, guard.pixel_ref, rtol=1e-5)
    assert back.check(None, 0.5).reason == UNLIKE_INDEX


def test_thumbnails_are_z_scored():
    t = thumbnails(np.random.default_rng(0).integers(0, 255, (2, 128, 128), dtype=np.uint8))
    assert t.shape == (2, 1024)
    np.testing.assert_allclose(t.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(t.std(axis=1), 1, atol=1e-3)


@pytest.mark.parametrize("name", DICOM_FLAGGED + DICOM_HUMAN_CHEST)
def test_shared_dicom_folder(released, shared_data, name):
    """The hip, the dental film, the dog's thorax (its tags say CHEST) and the test patterns are flagged;
    the human chest films are not."""
    embedder, guard = released
    path = shared_data / "dicom" / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    q = embedder.embed_image(path)
    verdict = guard.check(q.standardized, guard.nearest_reference(q.embedding), q.meta.get("chroma"))
    assert verdict.flagged == (name in DICOM_FLAGGED), verdict
