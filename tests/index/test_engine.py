"""SearchEngine: exact results, filters that still return k, same-patient rules, vote, images, errors."""

from __future__ import annotations

import numpy as np
import pytest

from index.engine import SearchEngine
from index.errors import CaseNotFoundError, QueryError
from index.schemas import SearchFilters
from index.vectors import VectorTable
from index.voting import knn_vote


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def engine(request, built_index, embedder):
    """Every engine test runs on both backends: FAISS in the folder and Milvus Lite."""
    folder = built_index if request.param == "faiss" else request.getfixturevalue("built_milvus_index")
    eng = SearchEngine.open(folder, embedder=embedder)
    yield eng
    eng.close()


def expected(built_index, query_vec, allowed) -> list[int]:
    t = VectorTable(built_index)
    allowed = np.array(sorted(allowed))
    sims = t.get(allowed) @ query_vec
    return allowed[np.argsort(-sims, kind="stable")].tolist()


def test_image_query_matches_brute_force(engine, built_index, records):
    q = engine.embed(records[7].image_path)
    # The index embeds through the uint8 standardized-image cache, the query at float precision:
    # the same image gives the same vector up to that 1/255 quantization.
    np.testing.assert_allclose(q, VectorTable(built_index).get(np.array([8]))[0], atol=2e-3)
    res = engine.search(records[7].image_path, k=5, exclude_same_patient=False)
    # The very image is indexed (id 8): it is the query's own case, never a hit.
    assert res.query_id == 8
    assert [h.case.id for h in res.hits] == expected(built_index, q, set(range(1, 31)) - {8})[:5]
    assert [h.rank for h in res.hits] == [1, 2, 3, 4, 5]
    sims = [h.similarity for h in res.hits]
    assert sims == sorted(sims, reverse=True)
    assert res.vote == knn_vote(res.hits)
    assert res.attention.shape == res.query_image.shape == (64, 64)
    assert 0.0 <= res.attention.min() and res.attention.max() <= 1.0


def test_attention_upsampled_and_normalised():
    from index.engine import _upsample01

    a = _upsample01(np.array([[0.1, 0.2], [0.3, 0.4]]), 8)
    assert a.shape == (8, 8) and a.min() == 0.0 and a.max() == pytest.approx(1.0)
    assert a[0, 0] < a[-1, -1]  # the bright corner stays bright
    assert not _upsample01(np.full((2, 2), 0.25), 4).any()  # a flat map highlights nothing


def test_same_patient_excluded_by_default(engine, records):
    # records i belong to patient i // 3: ids 1..3 patient 0, 4..6 patient 1, ...
    res = engine.search(5, k=29, with_attention=False)
    ids = {h.case.id for h in res.hits}
    assert not ids & {4, 5, 6} and len(res.hits) == 27
    res = engine.search(5, k=29, exclude_same_patient=False, with_attention=False)
    assert {4, 6} <= {h.case.id for h in res.hits} and 5 not in {h.case.id for h in res.hits}


def test_same_patient_only(engine):
    res = engine.search(5, k=10, same_patient_only=True, with_attention=False)
    assert sorted(h.case.id for h in res.hits) == [4, 6]
    assert all(h.case.patient == engine.get_case(5).patient for h in res.hits)


def test_same_patient_only_needs_a_known_patient(engine, tmp_path):
    from tests.index.conftest import write_png

    img = write_png(tmp_path / "new.png", seed=999)
    with pytest.raises(QueryError, match="patient"):
        engine.search(str(img), same_patient_only=True)


@pytest.mark.parametrize("filters", [
    SearchFilters(view=["PA"]),
    SearchFilters(sex="M"),
    SearchFilters(age_min=25, age_max=45),
    SearchFilters(finding=["Effusion"]),
    SearchFilters(source=["synthetic"], view=["ap"]),
])
def test_filters_return_k_when_k_match(engine, built_index, filters):
    allowed = set(engine.store.ids_matching(filters).tolist()) - {1}
    k = min(5, len(allowed))
    res = engine.search(1, k=k, filters=filters, exclude_same_patient=False, with_attention=False)
    assert len(res.hits) == k
    assert [h.case.id for h in res.hits] == expected(built_index, engine.embed(1), allowed)[:k]


def test_filters_as_dict_and_fewer_matches_than_k(engine):
    res = engine.search(1, k=10, filters={"finding": ["Effusion"], "sex": "M"}, with_attention=False)
    assert 0 < len(res.hits) < 10
    assert all("Effusion" in h.case.findings and h.case.sex == "M" for h in res.hits)


def test_prognosis_summary_over_hits(engine):
    res = engine.search(2, k=10, with_attention=False)
    known = [h.case.prognosis.get("survival") for h in res.hits if h.case.prognosis.get("survival") is not None]
    assert res.prognosis["survival"].known == len(known)
    assert res.prognosis["survival"].positive == sum(known)


def test_id_query_gets_attention_from_its_image(engine):
    res = engine.search(3, k=2)
    assert res.attention is not None and res.attention.shape == (64, 64)
    assert engine.search(3, k=2, with_attention=False).attention is None


def test_cases_images_and_stats(engine):
    row = engine.get_case(3)
    assert row.id == 3 and "image_path" not in row.model_dump()
    assert engine.get_case(12345) is None
    png = engine.case_image(3)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import cv2

    small = cv2.imdecode(np.frombuffer(engine.case_image(3, size=32), np.uint8), cv2.IMREAD_UNCHANGED)
    assert small.shape == (32, 32)
    with pytest.raises(CaseNotFoundError):
        engine.case_image(12345)
    st = engine.stats()
    assert st.cases == 30 and st.index_type == "flat" and st.vectors == 30
    assert (st.backend, st.faiss_device) in (("faiss", "cpu"), ("faiss", "gpu"), ("milvus", "milvus"))


def test_bad_queries(engine, tmp_path):
    with pytest.raises(CaseNotFoundError):
        engine.search(999)
    with pytest.raises(QueryError):
        engine.search(1, k=0)
    with pytest.raises(QueryError, match="not found"):
        engine.search(str(tmp_path / "missing.png"))
    from embed.errors import NotAnImageError

    with pytest.raises(NotAnImageError):
        engine.search(b"hello, not an image")


def test_classify_is_the_vote(engine):
    assert engine.classify(4, k=5) == engine.search(4, k=5, with_attention=False).vote


def test_concurrent_searches(engine):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: [h.case.id for h in engine.search(i, k=3, with_attention=False).hits],
                                [1, 2, 3, 4] * 3))
    assert results[:4] == results[4:8] == results[8:]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_filtered_search_through_faiss_selector_matches_exact(tmp_path, image_dir, embedder, tiny_ckpt, monkeypatch, kind):
    import index.engine as engine_mod
    from index.builder import build_index
    from tests.index.conftest import make_records

    out = tmp_path / kind
    build_index(make_records(image_dir, 40), out, model=tiny_ckpt, embedder=embedder, index_type=kind,
                workers=0, progress=False)
    eng = SearchEngine.open(out, embedder=embedder)
    f = SearchFilters(view=["PA"])
    exact = eng.search(3, k=5, filters=f, with_attention=False)
    assert exact.meta["exact"]
    monkeypatch.setattr(engine_mod, "EXACT_SUBSET_MAX", 0)  # force the FAISS selector path
    approx = eng.search(3, k=5, filters=f, with_attention=False)
    assert not approx.meta["exact"] or kind == "ivf"  # IVF may fall back to exact when lists run short
    assert len(approx.hits) == 5 and all(h.case.view == "PA" for h in approx.hits)
    assert {h.case.id for h in approx.hits} == {h.case.id for h in exact.hits}
