"""The Milvus backend (Milvus Lite here): build/add/remove/rebuild/stats, filters as expressions, CLI,
atomicity, and one run against a real Milvus server (the embedded ``milvus`` package) where it starts.

The search behaviour itself (exact hits, filters, same patient, vote) is checked on both backends
by tests/index/test_engine.py, whose ``engine`` fixture is parametrized over FAISS and Milvus.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus/milvus-lite not installed: pip install 'cxr-search[distributed]'")

from cli.main import main  # noqa: E402
from embed.errors import IndexStateError  # noqa: E402
from index.builder import add_to_index, build_index, index_stats, rebuild_index, remove_from_index  # noqa: E402
from index.engine import SearchEngine  # noqa: E402
from index.filters import filters_to_milvus  # noqa: E402
from index.manifest import Manifest  # noqa: E402
from index.milvus_index import connect  # noqa: E402
from index.schemas import SearchFilters  # noqa: E402
from index.selection import IndexTypeError  # noqa: E402
from index.vectors import VectorTable  # noqa: E402


def collections(index_dir) -> list[str]:
    m = Manifest.read(index_dir)
    return sorted(connect(m.backend_params["uri"]).list_collections())


def brute_force(index_dir, q: np.ndarray, allowed: set[int], k: int) -> list[int]:
    t = VectorTable(index_dir)
    ids = np.array(sorted(allowed))
    return ids[np.argsort(-(t.get(ids) @ q), kind="stable")][:k].tolist()


def test_filters_become_milvus_expressions():
    assert filters_to_milvus(None) == "" and filters_to_milvus(SearchFilters()) == ""
    expr = filters_to_milvus(SearchFilters(view=["PA", "ap"], sex="F", age_min=30, age_max=40.5,
                                           source=["Kermany"], finding=["Pneumonia", "COVID-19"]))
    assert expr == ('view in ["pa", "ap"] and sex == "f" and age >= 0.0 and age >= 30.0 and age <= 40.5 '
                    'and source in ["kermany"] and array_contains_any(findings, ["pneumonia", "covid-19"])')
    # A value cannot break out of its string literal.
    assert filters_to_milvus(SearchFilters(view=['PA" or id > 0 or "'])) == r'view in ["pa\" or id > 0 or \""]'


def test_odd_filter_values_match_nothing_instead_of_failing(tmp_path, records, embedder, tiny_ckpt):
    """Control characters and lone surrogates cannot be written as Milvus literals: they must match nothing
    (as on FAISS), never raise (the API would answer 500)."""
    out = tmp_path / "idx"
    build_index(records[:8], out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False,
                backend="milvus", milvus_uri=str(tmp_path / "cases.db"))
    eng = SearchEngine.open(out, embedder=embedder)
    try:
        for odd in ("PA\x01", "\ud800", "P\\A"):
            res = eng.search(1, k=5, filters={"view": [odd]}, exclude_same_patient=False, with_attention=False)
            assert res.hits == []
        assert eng.search(1, k=5, filters={"view": ["PA\tx", "pa"]}, exclude_same_patient=False,
                          with_attention=False).hits  # a tab is a legal literal; "pa" still matches
    finally:
        eng.close()


def test_build_add_remove_rebuild_stats(tmp_path, records, embedder, tiny_ckpt):
    out = tmp_path / "idx"
    uri = str(tmp_path / "cases.db")
    build_index(records[:20], out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False,
                backend="milvus", milvus_uri=uri)
    m = Manifest.read(out)
    assert m.backend == "milvus" and m.backend_params["uri"] == uri and not (out / "index.faiss").exists()
    first = m.backend_params["collection"]
    assert collections(out) == [first]

    rep = add_to_index(out, records[20:], embedder=embedder, workers=0, progress=False)
    assert rep.added == 10
    assert remove_from_index(out, ids=[1, 2]) == 2
    st = index_stats(out)
    assert st["cases"] == 28 and st["backend"] == "milvus" and st["milvus"]["collection"] == first
    eng = SearchEngine.open(out, embedder=embedder)
    try:
        assert eng.vindex.ntotal == 28
        q = eng.embed(10)
        res = eng.search(10, k=5, exclude_same_patient=False, with_attention=False)
        assert [h.case.id for h in res.hits] == brute_force(out, q, set(range(3, 31)) - {10}, 5)
        hits = eng.search(10, k=30, filters={"view": "pa", "age_min": 30}, with_attention=False).hits
        want = {r_id for r_id, r in enumerate(records, 1) if r.view == "PA" and r.age >= 30} - {1, 2, 10, 11, 12}
        assert {h.case.id for h in hits} == want
    finally:
        eng.close()

    rebuild_index(out, index_type="hnsw")  # a new collection swapped in, the old one dropped
    m2 = Manifest.read(out)
    assert m2.index_type == "hnsw" and collections(out) == [m2.backend_params["collection"]] != [first]
    assert index_stats(out)["cases"] == 28
    rebuild_index(out, backend="faiss")  # back to FAISS without re-embedding: the collection is dropped
    assert index_stats(out)["backend"] == "faiss" and (out / "index.faiss").is_file()
    assert connect(uri).list_collections() == []


def test_index_types_each_backend_refuses(tmp_path, records, embedder, tiny_ckpt):
    with pytest.raises(IndexTypeError, match="Milvus Lite supports"):
        build_index(records[:5], tmp_path / "a", embedder=embedder, model=tiny_ckpt, workers=0, progress=False,
                    backend="milvus", milvus_uri=str(tmp_path / "a.db"), index_type="gpu_cagra")
    with pytest.raises(IndexTypeError, match="only on the Milvus backend"):
        build_index(records[:5], tmp_path / "b", embedder=embedder, model=tiny_ckpt, workers=0, progress=False,
                    index_type="gpu_ivf_pq")
    with pytest.raises(IndexStateError, match="ending in .db"):
        build_index(records[:5], tmp_path / "c", embedder=embedder, model=tiny_ckpt, workers=0, progress=False,
                    backend="milvus", milvus_uri=str(tmp_path / "cases.sqlite"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_failed_build_keeps_the_live_index_and_leaves_no_collection(tmp_path, records, embedder, tiny_ckpt,
                                                                     monkeypatch):
    out = tmp_path / "idx"
    kw = dict(model=tiny_ckpt, embedder=embedder, workers=0, progress=False, backend="milvus")
    build_index(records[:6], out, **kw)
    before = collections(out)

    def boom(self, folder):
        raise OSError("disk full")

    monkeypatch.setattr(Manifest, "write", boom)
    with pytest.raises(OSError):
        build_index(records[:9], out, **kw)
    monkeypatch.undo()
    assert collections(out) == before and index_stats(out)["cases"] == 6


def test_cli_build_search_stats_on_milvus(tmp_path, image_dir, tiny_ckpt, capsys):
    folder = tmp_path / "imgs" / "Normal"
    folder.mkdir(parents=True)
    for p in sorted(image_dir.glob("img_000*.png"))[:6]:
        shutil.copy(p, folder / p.name)
    out, uri = tmp_path / "idx", tmp_path / "cases.db"
    common = ["--model", str(tiny_ckpt), "--workers", "0", "--no-progress"]
    assert main(["index", "build", *common, "--out", str(out), "--backend", "milvus", "--milvus-uri", str(uri),
                 f"imagefolder:{tmp_path / 'imgs'}"]) == 0
    assert "6 cases" in capsys.readouterr().out
    assert main(["index", "stats", "--index", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["backend"] == "milvus" and st["milvus"]["uri"] == str(uri)
    assert main(["search", "--index", str(out), "2", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 3
    assert main(["index", "build", *common, "--out", str(out), "--milvus-uri", str(uri), "x:y"]) == 2
    assert "--backend milvus" in capsys.readouterr().err


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A real Milvus standalone (the embedded ``milvus`` package) on a free port; skipped where it cannot run."""
    try:
        from milvus import MilvusServer
    except ImportError:
        pytest.skip("the embedded Milvus server package is not installed (pip install milvus); "
                    "Milvus Lite covers the other tests")
    from tests.search_api.conftest import free_port

    server = MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus_server")))
    server.listen_port = free_port()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any start failure means: not on this machine
        pytest.skip(f"the embedded Milvus server did not start here ({type(exc).__name__}: {exc})")
    yield f"http://127.0.0.1:{server.listen_port}"
    server.stop()


def test_milvus_server_gives_the_faiss_results(milvus_server, tmp_path, records, embedder, tiny_ckpt, built_index):
    """A Milvus standalone server (not Lite) answers like FAISS: same hits unfiltered and filtered."""
    out = tmp_path / "idx"
    build_index(records, out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False, backend="milvus",
                milvus_uri=milvus_server)
    assert remove_from_index(out, ids=[30]) == 1
    mil, fai = SearchEngine.open(out, embedder=embedder), SearchEngine.open(built_index, embedder=embedder)
    try:
        for q in (4, 17):
            for f in (None, {"sex": "F"}, {"finding": ["pneumonia"], "age_max": 60}):
                a = mil.search(q, k=8, filters=f, with_attention=False)
                b = fai.search(q, k=8, filters=f, with_attention=False)
                want = [h.case.id for h in b.hits if h.case.id != 30]
                got = [h.case.id for h in a.hits]
                assert len(got) == 8 and got[:len(want)] == want
    finally:
        mil.close()
        fai.close()
