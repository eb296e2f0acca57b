"""SQLite metadata store: round trip, filters, deletion, privacy of the image location, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from embed.errors import IndexStateError
from index.schemas import CaseRow, SearchFilters
from index.store import MetadataStore, SQLiteStore, StoredCase


def case(i: int, **kw) -> StoredCase:
    base = dict(id=i, sha256=f"{i:064x}", source="covid-chestxray" if i % 2 else "kermany",
                image_path=f"/secret/place/{i}.png", ref=f"src/{i}.png", patient=f"p_{i // 2:016x}",
                view="PA" if i % 3 else "AP", sex="F" if i % 2 else "M", age=float(10 * i), day_offset=1.0,
                findings=["Pneumonia", "COVID-19"] if i % 2 else ["No Finding"],
                prognosis={"survival": i % 4 == 1, "intubated": None}, licence="CC BY", extra={"k": i})
    base.update(kw)
    return StoredCase(**base)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.sqlite", create=True)
    s.add(case(i) for i in range(1, 11))
    yield s
    s.close()


def test_roundtrip_and_no_image_path_in_rows(store):
    assert isinstance(store, MetadataStore)
    row = store.get_one(5)
    assert isinstance(row, CaseRow)
    assert row.findings == ["COVID-19", "Pneumonia"] and row.prognosis == {"intubated": None, "survival": True}
    assert row.age == 50.0 and row.extra == {"k": 5}
    assert "image_path" not in row.model_dump() and "/secret/" not in row.model_dump_json()
    assert store.image_path(3) == "/secret/place/3.png"
    assert [r.id for r in store.get([5, 2, 99, 1])] == [5, 2, 1]  # order kept, unknown left out


def test_sha_is_unique(store):
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError):
        store.add([case(11, sha256=f"{1:064x}")])


@pytest.mark.parametrize("filters, expected", [
    (SearchFilters(view=["pa"]), [1, 2, 4, 5, 7, 8, 10]),
    (SearchFilters(sex="M"), [2, 4, 6, 8, 10]),
    (SearchFilters(age_min=25, age_max=60), [3, 4, 5, 6]),
    (SearchFilters(source=["KERMANY"]), [2, 4, 6, 8, 10]),
    (SearchFilters(finding=["covid-19", "Effusion"]), [1, 3, 5, 7, 9]),
    (SearchFilters(view=["AP"], finding=["No Finding"]), [6]),
    (SearchFilters(), list(range(1, 11))),
])
def test_filters(store, filters, expected):
    assert store.ids_matching(filters).tolist() == expected
    # the engine's in-memory columns agree with SQL
    assert np.flatnonzero(store.filter_columns().mask(filters)).tolist() == expected


def test_filter_columns_skip_deleted_and_unknown_age(store):
    store.mark_deleted([2])
    store.add([case(11, age=None)])
    cols = store.filter_columns()
    assert not cols.mask(None)[2] and cols.mask(None)[11]
    assert not cols.mask(SearchFilters(age_min=0))[11]


def test_tombstones_hidden_then_revived_and_delete(store):
    assert store.mark_deleted([2, 3]) == 2
    assert store.get_one(2) is None and 2 not in store.ids_matching(None).tolist()
    assert store.deleted_ids().tolist() == [2, 3] and store.count() == 8 and store.count(include_deleted=True) == 10
    store.revive([3])
    assert store.get_one(3) is not None
    store.delete([4])
    assert store.count(include_deleted=True) == 9
    assert store.ids_matching(SearchFilters(finding=["No Finding"])).tolist() == [6, 8, 10]


def test_stats_counts(store):
    st = store.stats()
    assert st["cases"] == 10 and st["by_source"] == {"covid-chestxray": 5, "kermany": 5}
    assert st["by_finding"]["No Finding"] == 5 and st["patients"] == 6


def test_concurrent_readers(store, tmp_path):
    ro = SQLiteStore(tmp_path / "store.sqlite", read_only=True)
    errors: list[Exception] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert len(ro.ids_matching(SearchFilters(sex="F"))) == 5
                assert ro.get_one(7).id == 7
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ro.close()
    assert not errors


def test_missing_store_is_index_state_error(tmp_path):
    with pytest.raises(IndexStateError, match="cxr index build"):
        SQLiteStore(tmp_path / "nope.sqlite")


def test_filter_validation():
    assert SearchFilters(sex=" F ").sex == "F"
    for bad in ("female", "m", "M' OR 1=1 --"):
        with pytest.raises(ValueError, match="sex must be"):
            SearchFilters(sex=bad)
    with pytest.raises(ValueError):
        SearchFilters(age_min=50, age_max=20)
    with pytest.raises(ValueError):
        SearchFilters(sex="x")


def test_connections_of_ended_threads_are_closed(store, tmp_path):
    """Thread pools retire idle threads: their SQLite connections must not pile up."""
    ro = SQLiteStore(tmp_path / "store.sqlite", read_only=True)
    for _ in range(20):  # 20 short-lived threads, one after another
        t = threading.Thread(target=lambda: ro.get_one(3))
        t.start()
        t.join()
    ro.get_one(3)  # a connection made now prunes those of the ended threads
    assert len(ro._conns) <= 2
    ro.close()
