"""/v1/search and /v1/classify carry the OOD flag and the calibrated vote when the model has them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.search_api.conftest import API_KEY, FINDINGS, as_file, png_bytes


@pytest.fixture(scope="module")
def calibrated_client(tiny_index, tmp_path_factory):
    """The tiny index opened with a copy of its checkpoint that has a guard and a vote calibration beside it."""
    from fastapi.testclient import TestClient

    from embed.guard import OODGuard, guard_path, texture, thumbnails
    from embed.vote_calibration import VoteCalibration, calibration_path
    from index.engine import SearchEngine
    from search_api.app import create_app
    from search_api.settings import APISettings

    tmp = tmp_path_factory.mktemp("calibrated")
    ckpt = tmp / "tiny.pt"
    shutil.copy(tiny_index.checkpoint, ckpt)
    emb = tiny_index.engine.embedder
    stds = np.stack([emb.prepare_image(p)[0] for p in sorted((tiny_index.corpus / "images").glob("*.png"))])
    vecs, _ = emb.embed_batch(stds)
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -1)
    OODGuard.fit(thumbnails(stds), thumbnails(stds), sims.max(axis=1), model_sha256=emb.model_sha256,
                 n_components=8, alpha=0.01, val_texture=texture(stds), reference=vecs).save(guard_path(ckpt))
    rng = np.random.default_rng(0)
    votes = rng.random((300, len(FINDINGS)))
    VoteCalibration.fit(votes, rng.random(votes.shape) < votes**2, FINDINGS, k=10, model_sha256=emb.model_sha256,
                        train_patients=["a"]).save(calibration_path(ckpt))
    engine = SearchEngine.open(tiny_index.index_dir, model_path=ckpt)
    client = TestClient(create_app(APISettings(index_dir=tiny_index.index_dir, api_keys=API_KEY), engine=engine),
                        client=("127.0.0.1", 50000))
    client.headers["X-API-Key"] = API_KEY
    with client:
        yield client
    engine.close()


def test_search_of_an_indexed_like_film_is_not_flagged(calibrated_client, tiny_index):
    body = calibrated_client.post("/v1/search", files=as_file(tiny_index.image("gen_05_1.png")),
                                  data={"k": "5"}).json()
    assert body["ood"]["flagged"] is False and body["ood"]["reason"] is None
    assert 0.0 < body["ood"]["score"] <= 1.0 and body["ood"]["nearest_similarity"] is not None
    assert body["vote"]  # the raw vote stays, unchanged in name and meaning
    for finding, c in body["calibrated_vote"].items():
        assert c["raw"] == pytest.approx(body["vote"][finding])
        assert c["of"] == 5 and 1 <= c["neighbours"] <= 5
        assert c["probability"] is None or 0.0 <= c["probability"] <= 1.0


@pytest.mark.parametrize("route", ["/v1/search", "/v1/classify"])
def test_noise_and_blank_uploads_are_flagged(calibrated_client, route):
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (96, 96), dtype=np.uint8), np.full((96, 96), 200, np.uint8)):
        body = calibrated_client.post(route, files=as_file(png_bytes(img)), data={"k": "5"}).json()
        assert body["ood"]["flagged"] is True, body["ood"]
        assert body["ood"]["reason"] == "not a chest radiograph"
        assert "calibrated_vote" in body


def test_without_sidecars_the_fields_are_empty_not_missing(client, tiny_index):
    body = client.post("/v1/classify", files=as_file(tiny_index.image("gen_05_1.png")), data={"k": "5"}).json()
    assert body["ood"] is None and body["calibrated_vote"] == {}
