"""Index builds: idempotent, ids stable, add/remove/rebuild consistent, atomic on failure, model checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embed.errors import ConfigMismatchError, IndexStateError
from index.builder import add_to_index, build_index, index_stats, rebuild_index, remove_from_index
from index.engine import SearchEngine
from index.faiss_index import VectorIndex
from index.manifest import Manifest
from index.selection import IndexSpec
from index.store import SQLiteStore
from index.vectors import VectorTable
from tests.index.conftest import make_records, write_png


def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def ids_in(folder) -> list[int]:
    s = SQLiteStore(folder / "store.sqlite", read_only=True)
    try:
        return s.all_ids().tolist()
    finally:
        s.close()


def test_build_writes_consistent_folder(built_index, records):
    m = Manifest.read(built_index)
    assert m.counts == {"cases": 30, "deleted": 0, "vectors": 30}
    assert m.index_type == "flat" and m.embed_dim == 32 and len(m.model_sha256) == 64
    assert m.std_config["size"] == 64 and m.std_fingerprint
    t = VectorTable(built_index)
    assert t.ids.tolist() == ids_in(built_index) == list(range(1, 31))
    np.testing.assert_allclose(np.linalg.norm(t.vectors, axis=1), 1.0, atol=1e-5)
    st = index_stats(built_index)
    assert st["by_source"] == {"synthetic": 30} and st["size_bytes"] > 0


def test_build_twice_adds_nothing_and_keeps_ids(index_copy, records, embedder, tiny_ckpt):
    before = VectorTable(index_copy, mmap=False)
    rep = build_index(records, index_copy, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    assert rep.total == 30 and rep.reused_vectors == 30  # nothing re-embedded
    after = VectorTable(index_copy, mmap=False)
    assert after.ids.tolist() == before.ids.tolist()
    np.testing.assert_array_equal(after.vectors, before.vectors)
    assert not list(index_copy.parent.glob("index.tmp-*")) and not list(index_copy.parent.glob("index.old*"))


def test_duplicate_content_and_unreadable_files_are_reported(tmp_path, embedder, tiny_ckpt):
    recs = make_records(tmp_path / "img", 4)
    dup = make_records(tmp_path / "img", 1)[0]  # same file content again under another case id
    dup.case_id = "synthetic/copy.png"
    bad = make_records(tmp_path / "bad", 1, start=50)[0]
    bad.image_path = str(tmp_path / "bad" / "junk.png")
    (tmp_path / "bad" / "junk.png").write_bytes(b"not an image at all")
    rep = build_index(recs + [dup, bad], tmp_path / "idx", embedder=embedder, model=tiny_ckpt, workers=0,
                      progress=False)
    assert rep.total == 4 and rep.duplicates == 1
    assert [r for r, _ in rep.unreadable] == [bad.case_id]


def test_interrupted_build_leaves_old_index_intact(index_copy, records, embedder, tiny_ckpt, monkeypatch):
    before = snapshot(index_copy)
    calls = {"n": 0}
    real = embedder.embed_tensor

    def failing(x):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("simulated crash after the first batch")
        return real(x)

    monkeypatch.setattr(embedder, "embed_tensor", failing)
    more = make_records(index_copy.parent / "more", 20, start=100)
    with pytest.raises(RuntimeError, match="simulated"):
        build_index(records + more, index_copy, model=tiny_ckpt, embedder=embedder, batch_size=8, workers=0,
                    progress=False)
    assert calls["n"] == 2
    assert snapshot(index_copy) == before
    assert not list(index_copy.parent.glob("index.tmp-*"))
    monkeypatch.undo()
    engine = SearchEngine.open(index_copy, embedder=embedder)
    assert engine.stats().cases == 30


def test_add_remove_rebuild_keep_ids_and_results_consistent(index_copy, embedder, tiny_ckpt):
    new = make_records(index_copy.parent / "new", 6, start=200, source="other")
    rep = add_to_index(index_copy, new, embedder=embedder, workers=0, progress=False)
    assert rep.added == 6 and rep.total == 36
    assert ids_in(index_copy) == list(range(1, 37))
    assert add_to_index(index_copy, new, embedder=embedder, workers=0, progress=False).added == 0  # idempotent
    engine = SearchEngine.open(index_copy, embedder=embedder)
    table = VectorTable(index_copy)
    res = engine.search(33, k=36, exclude_same_patient=False, with_attention=False)
    sims = table.get(np.array(ids_in(index_copy))) @ table.get(np.array([33]))[0]
    order = [i + 1 for i in np.argsort(-sims) if i + 1 != 33]
    assert {h.case.id for h in res.hits} == set(order)
    np.testing.assert_allclose([h.similarity for h in res.hits], np.sort(sims)[::-1][1:], atol=1e-5)

    assert remove_from_index(index_copy, sources=["other"]) == 6
    assert remove_from_index(index_copy, ids=[1, 2, 999]) == 2
    assert ids_in(index_copy) == list(range(3, 31))
    m = Manifest.read(index_copy)
    assert m.counts == {"cases": 28, "deleted": 0, "vectors": 28}
    assert VectorTable(index_copy).ids.tolist() == list(range(3, 31))
    res = SearchEngine.open(index_copy, embedder=embedder).search(5, k=40, exclude_same_patient=False)
    assert len(res.hits) == 27 and not {1, 2} & {h.case.id for h in res.hits}

    rebuild_index(index_copy, index_type="ivf")  # no re-embedding: from the stored vectors
    m = Manifest.read(index_copy)
    assert m.index_type == "ivf" and m.index_params["requested"] == "ivf" and m.counts["vectors"] == 28
    assert ids_in(index_copy) == list(range(3, 31))
    assert VectorIndex.load(index_copy, IndexSpec("ivf", m.index_params)).ntotal == 28


def test_hnsw_remove_tombstones_until_rebuild(tmp_path, records, embedder, tiny_ckpt):
    out = tmp_path / "hnsw"
    build_index(records, out, model=tiny_ckpt, embedder=embedder, index_type="hnsw", workers=0, progress=False)
    remove_from_index(out, ids=[4, 5])
    m = Manifest.read(out)
    assert m.index_type == "hnsw" and m.counts == {"cases": 28, "deleted": 2, "vectors": 30}
    engine = SearchEngine.open(out, embedder=embedder)
    hits = engine.search(7, k=29, exclude_same_patient=False, with_attention=False).hits
    assert len(hits) == 27 and not {4, 5} & {h.case.id for h in hits}
    add_to_index(out, [records[3]], embedder=embedder, workers=0, progress=False)  # id 4 comes back
    assert Manifest.read(out).counts["deleted"] == 1
    rebuild_index(out)
    m = Manifest.read(out)
    assert m.counts == {"cases": 29, "deleted": 0, "vectors": 29} and m.index_type == "hnsw"
    assert 5 not in ids_in(out) and 4 in ids_in(out)


def test_model_mismatch_is_refused(built_index, other_ckpt, records):
    from embed.inference import Embedder

    other = Embedder.from_checkpoint(other_ckpt, device="cpu")
    with pytest.raises(ConfigMismatchError, match="cxr index build"):
        SearchEngine.open(built_index, embedder=other)
    with pytest.raises(ConfigMismatchError):
        add_to_index(built_index, records[:1], embedder=other, workers=0, progress=False)


def test_standardization_mismatch_is_refused(index_copy, embedder):
    path = index_copy / "manifest.json"
    d = json.loads(path.read_text())
    d["std_fingerprint"] = "0123456789abcdef"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigMismatchError, match="standardization"):
        SearchEngine.open(index_copy, embedder=embedder)


def test_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path, records, embedder, tiny_ckpt):
    out = tmp_path / "photos"
    write_png(out / "holiday.png", 1)
    with pytest.raises(IndexStateError, match="not a cxr index"):
        build_index(records[:3], out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    assert (out / "holiday.png").is_file()


def test_incomplete_folder_is_index_state_error(tmp_path, embedder):
    (tmp_path / "idx").mkdir()
    with pytest.raises(IndexStateError, match="cxr index build"):
        SearchEngine.open(tmp_path / "idx", embedder=embedder)


def test_ivf_index_built_and_searched_memory_mapped(tmp_path, embedder, tiny_ckpt, image_dir):
    recs = make_records(image_dir, 40)
    out = tmp_path / "ivf"
    build_index(recs, out, model=tiny_ckpt, embedder=embedder, index_type="ivf", workers=0, progress=False)
    m = Manifest.read(out)
    assert m.index_type == "ivf" and m.index_params["nlist"] <= 40 and m.index_params["trained_on"] == 40
    engine = SearchEngine.open(out, embedder=embedder)
    assert engine.vindex.read_only  # memory-mapped
    hits = engine.search(10, k=5, with_attention=False).hits
    assert len(hits) == 5 and 10 not in {h.case.id for h in hits}


def test_too_few_vectors_for_ivf_fall_back_to_exact(tmp_path, records, embedder, tiny_ckpt):
    out = tmp_path / "small"
    build_index(records[:10], out, model=tiny_ckpt, embedder=embedder, index_type="ivf", workers=0, progress=False)
    assert Manifest.read(out).index_type == "flat"


def test_file_names_in_extra_are_not_stored(tmp_path, embedder, tiny_ckpt):
    recs = make_records(tmp_path / "img", 2)
    recs[0].extra = {"filename": "Doe_Jane_MRN123.png", "folder": "images", "doi": "10.1/x"}
    out = tmp_path / "idx"
    build_index(recs, out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    engine = SearchEngine.open(out, embedder=embedder)
    assert engine.get_case(1).extra == {"doi": "10.1/x"}
    assert b"Doe_Jane" not in (out / "store.sqlite").read_bytes()
