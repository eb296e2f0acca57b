"""Tuning the search knobs to a recall target on the index's own vectors (index.tuning, `cxr index tune`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from index.faiss_index import VectorIndex, normalize
from index.selection import IndexSpec, spec_for

DIM = 32


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 fixed centres (the centres do not depend on ``seed``)."""
    centres = np.random.default_rng(99).standard_normal((40, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    return normalize(centres[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, DIM)).astype(np.float32))


def recall_at_10(vi: VectorIndex, x: np.ndarray, ids: np.ndarray, q: np.ndarray) -> float:
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    _, got = vi.search(q, 10)
    return float(np.mean([len(set(g) & set(ids[t])) / 10 for g, t in zip(got, truth)]))


@pytest.fixture(scope="module")
def ivf() -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    x = clustered(6000, 0)
    ids = np.arange(1, len(x) + 1, dtype=np.int64)
    spec = IndexSpec("ivf", {"nlist": 64, "nprobe": 64, "train_size": 6000})
    return VectorIndex.build(spec, x, ids, DIM), x, ids


@pytest.mark.parametrize("target", [0.9, 0.99])
def test_tuning_picks_the_cheapest_nprobe_meeting_the_target(ivf, target):
    from index.tuning import tune

    vi, x, ids = ivf
    res = tune(vi, x, ids, recall=target, queries=200)
    assert res.target_met and res.recall >= target
    nprobe = res.params["nprobe"]
    assert 1 <= nprobe <= 64 and vi.spec.params["nprobe"] == 64  # the index's own knobs are left alone
    tried = {row["nprobe"]: row["recall"] for row in res.sweep}
    assert tried[nprobe] == res.recall
    assert all(r < target for p, r in tried.items() if p < nprobe)  # every cheaper setting fell short
    # and the chosen knob holds on queries the tuning never saw (fresh points of the same distribution)
    vi.spec.params["nprobe"] = nprobe
    try:
        assert recall_at_10(vi, x, ids, clustered(200, 1)) >= target - 0.03
    finally:
        vi.spec.params["nprobe"] = 64


def test_compressed_index_tunes_nprobe_and_rerank_depth():
    from index.selection import rerank_depth
    from index.tuning import apply, tune

    x = clustered(4000, 2)
    ids = np.arange(10, 10 + len(x), dtype=np.int64)  # ids are not row numbers
    vi = VectorIndex.build(IndexSpec("ivfsq", {"nlist": 32, "nprobe": 1, "train_size": 4000, "rerank": 2}),
                           x, ids, DIM)
    res = tune(vi, x, ids, recall=0.97, queries=150)
    assert res.target_met and res.recall >= 0.97 and set(res.params) == {"nprobe", "rerank"}
    tuned = IndexSpec("ivfsq", apply(vi.spec.params, res))
    assert tuned.params["tuning"]["recall_target"] == 0.97 and tuned.params["recall_target"] == 0.97
    assert rerank_depth(tuned, 10) == rerank_depth(tuned, 1) == 10 * res.params["rerank"]


def test_unreachable_target_keeps_the_most_accurate_setting():
    from index.tuning import tune

    x = clustered(3000, 3)
    ids = np.arange(1, len(x) + 1, dtype=np.int64)
    vi = VectorIndex.build(spec_for("hnsw", len(x), DIM), x, ids, DIM)
    vi.spec.params.update(M=4)
    res = tune(vi, x, ids, recall=1.0, queries=100)
    assert res.recall == max(r["recall"] for r in res.sweep)
    assert res.target_met == (res.recall >= 1.0)


def _folder(tmp_path: Path, n: int = 3000) -> Path:
    """An index folder of generated vectors (store, vectors, manifest), as `cxr index build` writes one."""
    from index.manifest import Manifest
    from index.store import STORE_FILE, SQLiteStore, StoredCase
    from index.vectors import save_vectors

    folder = tmp_path / "idx"
    folder.mkdir()
    x = clustered(n, 4)
    ids = np.arange(1, n + 1, dtype=np.int64)
    store = SQLiteStore(folder / STORE_FILE, create=True)
    store.add([StoredCase(id=int(i), sha256=f"{i:064x}", source="synthetic", image_path="-", patient=f"p{i}")
               for i in ids])
    store.close()
    save_vectors(folder, ids, x)
    VectorIndex.build(IndexSpec("flat"), x, ids, DIM).save(folder)
    Manifest(model_sha256="test", embed_dim=DIM, index_type="flat").write(folder)
    return folder


def test_cli_tune_then_rebuild_keeps_the_tuned_target(tmp_path, capsys):
    from index.builder import rebuild_index
    from index.manifest import Manifest

    folder = _folder(tmp_path)
    rebuild_index(folder, index_type="ivf")  # tuned at build time to the default target
    first = Manifest.read(folder).index_params
    assert first["tuning"]["recall_target"] == 0.95 and first["tuning"]["recall"] >= 0.95
    assert first["nprobe"] == first["tuning"]["params"]["nprobe"]

    assert main(["index", "tune", "--index", str(folder), "--recall", "0.99", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recall_target"] == 0.99 and out["recall"] >= 0.99 and out["target_met"]
    params = Manifest.read(folder).index_params
    assert params["nprobe"] == out["params"]["nprobe"] >= first["nprobe"]
    # the knobs arrived as a new sealed generation: the index still verifies against its checksums
    assert main(["index", "verify", "--index", str(folder)]) == 0
    capsys.readouterr()
    assert main(["index", "stats", "--index", str(folder)]) == 0
    assert f"nprobe={params['nprobe']}: recall@10" in capsys.readouterr().out

    rebuild_index(folder)  # a rebuild re-trains the lists and tunes again, to the same target
    again = Manifest.read(folder)
    assert again.index_type == "ivf" and again.index_params["recall_target"] == 0.99
    assert again.index_params["tuning"]["recall"] >= 0.99
    assert again.index_params["nprobe"] == again.index_params["tuning"]["params"]["nprobe"]
    assert [h["op"] for h in again.history][-3:] == ["rebuild", "tune", "rebuild"]


def test_cli_tune_refuses_a_bad_target(tmp_path, capsys):
    folder = _folder(tmp_path, 200)
    with pytest.raises(SystemExit) as exc:
        main(["index", "tune", "--index", str(folder), "--recall", "1.5"])
    assert exc.value.code == 2 and "recall target" in capsys.readouterr().err
    assert main(["index", "tune", "--index", str(folder)]) == 0  # an exact index: nothing to tune
    assert "exact search" in capsys.readouterr().out
