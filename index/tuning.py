"""Tune an index's search knobs to a recall target on its own vectors, as autofaiss does.

A fixed rule (nprobe = nlist/32, efSearch = 64) cannot know the data: a trained model's
embeddings are clustered by class far more than synthetic vectors, so the nprobe that
reaches a recall target may be several times lower or higher. Instead a sample of the
indexed vectors is held out as queries, their exact top-k (themselves left out) found by
a flat scan, and the knobs swept: nprobe (IVF), efSearch (HNSW) and, for the compressed
IVF types, the re-rank depth too. The fastest setting whose recall@k reaches the target
wins; it is stored in the manifest's ``index_params`` with the measured recall and
latency (``tuning``), and the engine searches with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.faiss_index import VectorIndex, normalize, set_search_threads
from index.selection import IVF_TYPES, RERANK_TYPES, IndexTypeError, rerank_depth

log = logging.getLogger(__name__)

#: Recall@k the build tunes for unless told otherwise (``--recall``).
DEFAULT_RECALL = 0.95
#: Held-out queries: enough for recall to +-0.01 at k=10, few enough to tune 10^6 vectors in seconds.
DEFAULT_QUERIES = 300
#: Re-rank depths (candidates per neighbour); from 2, so the similarities shown are always exact.
RERANK_FACTORS = (2, 5, 10, 20, 50)
EF_VALUES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


@dataclass
class TuneResult:
    """The chosen knobs and what was measured for them (stored in the manifest as ``tuning``)."""

    params: dict[str, int]
    recall: float
    p50_ms: float
    recall_target: float
    target_met: bool
    k: int
    queries: int
    seconds: float = 0.0
    sweep: list[dict[str, Any]] = field(default_factory=list)

    def to_manifest(self) -> dict[str, Any]:
        return {**asdict(self), "unix": time.time()}


def _exact_topk(q: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Ids of the exact top-k by inner product, scanning ``vectors`` in chunks (bounded memory)."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(vectors), chunk):
        sims = q @ np.asarray(vectors[s:s + chunk], dtype=np.float32).T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        best_i = np.concatenate([best_i, ids[s:s + chunk][part]], axis=1)
        if best_s.shape[1] > k:
            top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def _drop_self(found: np.ndarray, qids: np.ndarray, k: int) -> list[set[int]]:
    """Per query, its first k results other than itself (the query is an indexed vector)."""
    return [set([int(i) for i in row if i != qid and i >= 0][:k]) for row, qid in zip(found, qids)]


class _Runner:
    """Search with given knobs, re-scoring compressed candidates exactly as the engine does."""

    def __init__(self, vindex: VectorIndex, lookup: Callable[[np.ndarray], np.ndarray], k: int) -> None:
        self.vindex, self.lookup, self.k = vindex, lookup, k

    def search(self, q: np.ndarray, knobs: dict[str, int]) -> np.ndarray:
        saved = dict(self.vindex.spec.params)
        self.vindex.spec.params.update(knobs, tuning={"k": self.k + 1})
        try:
            fetch = rerank_depth(self.vindex.spec, self.k + 1)
            _, found = self.vindex.search(q, fetch)
            if fetch > self.k + 1:
                out = np.full((len(q), self.k + 1), -1, np.int64)
                for j in range(len(q)):
                    cand = found[j][found[j] >= 0]
                    top = np.argsort(-(self.lookup(cand) @ q[j]), kind="stable")[: self.k + 1]
                    out[j, : len(top)] = cand[top]
                found = out
            return found
        finally:
            self.vindex.spec.params.clear()
            self.vindex.spec.params.update(saved)

    def p50(self, q: np.ndarray, knobs: dict[str, int]) -> float:
        """Median single-query latency with the engine's thread count (index.faiss_index.search_threads)."""
        import faiss

        before = faiss.omp_get_max_threads()
        set_search_threads()
        times = []
        try:
            for j in range(len(q)):
                t = time.perf_counter()
                self.search(q[j:j + 1], knobs)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            faiss.omp_set_num_threads(before)
        return float(np.percentile(times, 50))


def _grid(vindex: VectorIndex) -> list[list[dict[str, int]]]:
    """Knob settings, as lines of increasing cost: each line is swept until it reaches the target."""
    p = vindex.spec.params
    if vindex.spec.type in IVF_TYPES:
        nlist = int(p["nlist"])
        probes = [v for v in (2 ** e for e in range(0, 17)) if v < nlist] + [nlist]
        if vindex.spec.type in RERANK_TYPES:
            return [[{"nprobe": v, "rerank": f} for v in probes] for f in RERANK_FACTORS]
        return [[{"nprobe": v} for v in probes]]
    if vindex.spec.type == "hnsw":
        return [[{"efSearch": v} for v in EF_VALUES]]
    raise IndexTypeError(f"a {vindex.spec.type} index has no search knobs to tune")


def tune(vindex: VectorIndex, vectors: np.ndarray, ids: np.ndarray, *, recall: float = DEFAULT_RECALL, k: int = 10,
         queries: int = DEFAULT_QUERIES, seed: int = 0) -> TuneResult:
    """The fastest knob setting of ``vindex`` whose recall@k on held-out indexed vectors reaches ``recall``.

    Along each line of the grid the cost grows with the knob, so a line stops at the first
    setting reaching the target; the latency (median of single queries) of those candidates
    decides. When nothing reaches the target the most accurate setting is kept and
    ``target_met`` is false (logged as a warning).
    """
    if not 0 < recall <= 1:
        raise IndexTypeError(f"the recall target must be in (0, 1], not {recall}")
    if k < 1 or queries < 1:
        raise IndexTypeError(f"tuning needs k >= 1 and at least one query, not k={k}, queries={queries}")
    t0 = time.perf_counter()
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if vindex.spec.type == "flat" or n == 0:
        return TuneResult({}, 1.0, 0.0, recall, True, k, 0, time.perf_counter() - t0)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(queries, n), replace=False))
    q = normalize(np.asarray(vectors[rows]))
    qids = ids[rows]
    truth = _drop_self(_exact_topk(q, vectors, ids, k + 1), qids, k)
    order = np.argsort(ids)
    sorted_ids = ids[order]

    def lookup(cand: np.ndarray) -> np.ndarray:
        return np.asarray(vectors[order[np.searchsorted(sorted_ids, cand)]], dtype=np.float32)

    runner = _Runner(vindex, lookup, k)
    sweep: list[dict[str, Any]] = []
    met: list[dict[str, Any]] = []
    for line in _grid(vindex):
        for knobs in line:
            got = _drop_self(runner.search(q, knobs), qids, k)
            r = float(np.mean([len(g & t) / max(1, len(t)) for g, t in zip(got, truth)]))
            row: dict[str, Any] = {**knobs, "recall": round(r, 4)}
            sweep.append(row)
            if r >= recall:
                met.append(row)
                break
    pool = met or [max(sweep, key=lambda r: r["recall"])]
    for row in pool:
        row["p50_ms"] = round(runner.p50(q[:100], {kk: v for kk, v in row.items() if kk not in ("recall", "p50_ms")}), 4)
    best = min(pool, key=lambda r: r["p50_ms"])
    knobs = {kk: int(v) for kk, v in best.items() if kk not in ("recall", "p50_ms")}
    result = TuneResult(knobs, best["recall"], best["p50_ms"], recall, bool(met), k, len(rows),
                        round(time.perf_counter() - t0, 2), sweep)
    if not met:
        log.warning("no %s setting reaches recall@%d %.3f (best %.4f with %s): keeping the most accurate",
                    vindex.spec.type, k, recall, best["recall"], knobs)
    log.info("tuned %s index: %s -> recall@%d %.4f, p50 %.3f ms (%.1f s)", vindex.spec.type, knobs, k,
             result.recall, result.p50_ms, result.seconds)
    return result


def apply(params: dict[str, Any], result: TuneResult) -> dict[str, Any]:
    """``params`` with the tuned knobs and the ``tuning`` record (what the manifest stores)."""
    out = {**params, **result.params}
    out["recall_target"] = result.recall_target
    out["tuning"] = result.to_manifest()
    return out


def tune_index(index_dir: str | Path, *, recall: float | None = None, k: int = 10,
               queries: int = DEFAULT_QUERIES, lock_timeout: float | None = None) -> TuneResult:
    """Tune an index and commit the knobs as a new generation (index.generations).

    Only the manifest changes (the FAISS file holds no search knobs), but a generation is
    immutable and sealed with checksums, so the other files are copied (hard-linked where the
    file system allows) into the next generation under the writer lock; a running server picks
    the knobs up with that generation. ``recall`` defaults to the target the index was tuned to.
    """
    from index.generations import writing
    from index.pointer import CURRENT_FILE, MANIFEST_FILE
    from index.manifest import Manifest
    from index.selection import IndexSpec
    from index.vectors import VectorTable

    index_dir = Path(index_dir).resolve()
    with writing(index_dir, lock_timeout=lock_timeout) as w:
        src = w.source()
        if src is None:
            raise IndexTypeError(f"{index_dir} holds no index: build one with `cxr index build`")
        manifest = Manifest.read(src)
        if manifest.backend != "faiss":
            raise IndexTypeError(f"{index_dir} keeps its vectors in {manifest.backend}: only FAISS indices are "
                                 "tuned (a Milvus collection keeps its own search parameters)")
        target = float(recall if recall is not None else manifest.index_params.get("recall_target")
                       or DEFAULT_RECALL)
        spec = IndexSpec(manifest.index_type, dict(manifest.index_params))
        vindex = VectorIndex.load(src, spec, use_gpu=False)
        table = VectorTable(src)
        result = tune(vindex, table.vectors, table.ids, recall=target, k=k, queries=queries)
        if manifest.index_type != "flat":
            manifest.index_params = apply(manifest.index_params, result)
        manifest.history.append({"op": "tune", "unix": time.time(), "recall_target": target, **result.params,
                                 "recall": result.recall})
        manifest.updated_unix = time.time()
        with w.new_generation() as tmp:
            for f in src.iterdir():
                if f.is_file() and f.name not in (MANIFEST_FILE, CURRENT_FILE) and not f.name.startswith("."):
                    _link_or_copy(f, tmp / f.name)
            manifest.write(tmp)
    return result


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (generations are immutable, so sharing bytes is safe), else a copy."""
    import os
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
