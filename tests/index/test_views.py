"""View families, the frontal/lateral classifier (trained on generated data) and same-family search."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from index.engine import SearchEngine
from index.filters import FilterColumns
from index.schemas import SearchFilters
from index.views import (ViewClassifier, find_view_classifier, fit_view_classifier, patient_groups, view_family,
                         view_family_sql)

VIEWS = ["PA", "AP", "AP Supine", "LATERAL", "LL", "L", "RL", "pa", "OBLIQUE", None, ""]


def test_view_family_in_python_and_sql_agree():
    assert [view_family(v) for v in VIEWS] == ["frontal", "frontal", "frontal", "lateral", "lateral", "lateral",
                                               "lateral", "frontal", None, None, None]
    conn = sqlite3.connect(":memory:")
    for fam in ("frontal", "lateral"):
        got = [conn.execute(f"SELECT {view_family_sql('?', fam).replace('?', ':v')}", {"v": v}).fetchone()[0]
               for v in VIEWS]
        assert [bool(g) for g in got] == [view_family(v) == fam for v in VIEWS]


def test_filter_columns_keep_unknown_views_and_drop_the_other_family():
    rows = [(i, v, None, None, "s", 0) for i, v in enumerate(["PA", "LATERAL", None, "AP Supine", "OBLIQUE"], 1)]
    cols = FilterColumns(rows, [])
    assert np.flatnonzero(cols.mask(SearchFilters(view_family="frontal"))).tolist() == [1, 3, 4, 5]
    assert np.flatnonzero(cols.mask(SearchFilters(view_family="lateral"))).tolist() == [2, 3, 5]


def _fake_embeddings(n: int, rng: np.random.Generator, dim: int = 16) -> tuple[np.ndarray, list[str], list[str]]:
    """Two families a little apart along one axis, with noise: learnable but not trivially."""
    lateral = rng.random(n) < 0.25
    x = rng.normal(size=(n, dim))
    x[:, 0] += np.where(lateral, 2.0, -2.0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    views = ["LATERAL" if lat else ("PA" if i % 2 else "AP") for i, lat in enumerate(lateral)]
    groups = [f"p{i // 2}" for i in range(n)]  # two films per patient
    return x.astype(np.float32), views, groups


def test_classifier_learns_families_on_held_out_patients_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x, views, groups = _fake_embeddings(400, rng)
    clf = fit_view_classifier(x, views, groups, model_sha256="abc", threshold=0.5)
    assert clf.metrics["val_accuracy"] > 0.9 and clf.metrics["val_laterals"] > 0
    assert clf.metrics["val_patients"] == 200 and clf.metrics["val_films"] == 400
    assert patient_groups(["a", None, None]).tolist() == ["a", "__film1", "__film2"]
    # labels that carry no signal: cross-validated accuracy falls to the base rate, not a memorised 1.0
    noise = fit_view_classifier(rng.normal(size=(400, 16)), views, groups, model_sha256="abc", threshold=0.5)
    assert noise.metrics["val_accuracy"] < 0.8
    path = tmp_path / "m.view.json"
    clf.save(path)
    again = ViewClassifier.load(path)
    np.testing.assert_allclose(again.p_lateral(x[:5]), clf.p_lateral(x[:5]))
    fam, score = again.predict(x[0])
    assert fam == view_family(views[0]) and (score >= 0.5) == (fam == "lateral")
    # found beside a model "m.pt" only for the same model and dimension
    assert find_view_classifier("abc", 16, model_path=tmp_path / "m.pt") is not None
    assert find_view_classifier("other", 16, model_path=tmp_path / "m.pt") is None
    assert find_view_classifier("abc", 8, model_path=tmp_path / "m.pt") is None


def test_too_few_laterals_is_a_clear_error():
    with pytest.raises(ValueError, match="lateral"):
        fit_view_classifier(np.eye(8), ["PA"] * 6 + ["LATERAL"] * 2, list("abcdefgh"), model_sha256="x")


@pytest.fixture
def engine_with_views(index_copy, embedder):
    """The test index with every third case relabelled lateral, and a classifier that calls everything lateral."""
    from index.store import STORE_FILE

    from tests.conftest import edit_live_generation

    def relabel(gen):
        conn = sqlite3.connect(gen / STORE_FILE)
        conn.execute("UPDATE cases SET view = 'LATERAL' WHERE id % 3 = 0")
        conn.commit()
        conn.close()

    edit_live_generation(index_copy, relabel)
    eng = SearchEngine.open(index_copy, embedder=embedder)
    yield eng
    eng.close()


def test_search_keeps_the_query_view_family_by_default_and_widens_on_request(engine_with_views, records):
    eng = engine_with_views
    res = eng.search(3, k=20, with_attention=False)  # case 3 is lateral (indexed view)
    assert res.query_view.family == "lateral" and res.query_view.source == "index"
    assert res.hits and all(view_family(h.case.view) == "lateral" for h in res.hits)
    assert res.query_facts["view"] == "LATERAL"
    wide = eng.search(3, k=20, with_attention=False, view_scope="any")
    assert {view_family(h.case.view) for h in wide.hits} == {"frontal", "lateral"}
    given = eng.search(3, k=20, with_attention=False, query_view="PA")
    assert given.query_view.source == "given" and all(view_family(h.case.view) == "frontal" for h in given.hits)
    explicit = eng.search(3, k=20, with_attention=False, filters=SearchFilters(view=["AP"]))
    assert {h.case.view for h in explicit.hits} == {"AP"}  # an explicit view filter wins over the family


def test_uploaded_png_uses_the_classifier_and_says_when_it_is_indexed(engine_with_views, records, tmp_path):
    eng = engine_with_views
    res = eng.search(records[0].image_path, k=5, with_attention=False)
    assert res.query_id == 1  # identical to indexed case 1 (its own, recorded view: PA)
    assert res.query_view.source == "index" and res.query_view.family == "frontal"
    from tests.index.conftest import write_png

    fresh = write_png(tmp_path / "new.png", seed=999)
    res = eng.search(str(fresh), k=5, with_attention=False)
    assert res.query_id is None and res.query_view.source == "unknown"  # no classifier for the tiny model
    eng.view_classifier = ViewClassifier(weights=[0.0] * eng.manifest.embed_dim, bias=5.0, model_sha256="x")
    res = eng.search(str(fresh), k=5, with_attention=False)
    assert res.query_view.source == "classifier" and res.query_view.family == "lateral"
    assert all(view_family(h.case.view) == "lateral" for h in res.hits)


def test_list_cases_pages_through_filters(engine_with_views):
    total, page = engine_with_views.list_cases(SearchFilters(view_family="lateral"), offset=0, limit=4)
    assert total == 10 and [c.id for c in page] == [3, 6, 9, 12]
    total2, page2 = engine_with_views.list_cases(SearchFilters(view_family="lateral"), offset=8, limit=4)
    assert total2 == 10 and [c.id for c in page2] == [27, 30]
    total_all, _ = engine_with_views.list_cases(None, limit=1)
    assert total_all == 30
