#!/usr/bin/env python
"""Benchmark the FAISS index types (and, with --milvus, Milvus) on synthetic clustered unit vectors.

For each corpus size and index type: build time, bytes per vector (file size),
single-query p50/p99 latency, batched queries per second, and recall@10 against
exact search; IVF is swept over nprobe and HNSW over efSearch, so the smallest
setting that reaches the recall target can be read off. Also reports which
configuration the automatic rule (index.selection.choose_index) picks and whether
it meets the target (p50 <= 5 ms at recall@10 >= 0.95).

    nice python scripts/bench_index.py --sizes 10000 100000 1000000 --out bench_index.json
    nice python scripts/bench_index.py --sizes 100000 --types flat ivf hnsw --milvus   # FAISS vs Milvus Lite
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from index.faiss_index import VectorIndex, normalize
from index.selection import IndexSpec, choose_index, spec_for


def clustered(n: int, dim: int, seed: int, centers: int, latent: int = 32) -> np.ndarray:
    """Unit vectors like a trained encoder's: clusters in a low-dimensional latent space, projected to ``dim``.

    Trained embeddings have a low intrinsic dimension (tens), far from isotropic noise in 256-d,
    which would make every approximate index look worse than it is on real data. The centres and
    the projection depend only on a fixed seed, so corpus and queries (``seed``) share them.
    """
    base = np.random.default_rng(12345)
    c = base.standard_normal((centers, latent), dtype=np.float32)
    w = base.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        z = c[rng.integers(0, centers, m)] + 0.5 * rng.standard_normal((m, latent), dtype=np.float32)
        out[s:s + m] = z @ w + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return normalize(out)


def latency(vi: VectorIndex, q: np.ndarray, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        vi.search(q[i:i + 1], 10)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)]))


def run_one(kind: str, spec: IndexSpec, x: np.ndarray, ids: np.ndarray, q: np.ndarray, truth: np.ndarray,
            n_single: int, sweep: list[int]) -> list[dict]:
    t0 = time.perf_counter()
    vi = VectorIndex.build(spec, x, ids, x.shape[1])
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as td:
        size = vi.save(td).stat().st_size
    rows = []
    if kind == "ivfpq":  # what the engine does: 10k candidates re-scored exactly from the stored vectors
        from index.engine import RERANK_FACTOR
        from index.vectors import rerank

        fetch = max(10 * RERANK_FACTOR, 200)
        base_search = vi.search

        def reranked(qq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            s_, i_ = base_search(qq, fetch)
            out = [rerank(qq[j], i_[j], x[np.clip(i_[j] - 1, 0, None)], k) for j in range(len(qq))]
            return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

        vi.search = reranked  # type: ignore[method-assign]
    knob = {"ivf": "nprobe", "ivfpq": "nprobe", "hnsw": "efSearch"}.get(kind)
    values = [v for v in sweep if knob is None or kind == "hnsw" or v <= spec.params["nlist"]] if knob else [None]
    for v in values:
        if knob:
            vi.spec.params[knob] = v
        t = time.perf_counter()
        _, got = vi.search(q, 10)
        qps = len(q) / (time.perf_counter() - t)
        p50, p99 = latency(vi, q, n_single)
        row = {"n": len(x), "type": kind, "params": {k: vv for k, vv in vi.spec.params.items() if k != "requested"},
               "build_s": round(build_s, 2), "bytes_per_vector": round(size / len(x), 1),
               "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "batch_qps": round(qps, 1),
               "recall_at_10": round(recall(got, truth), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def run_milvus(kind: str, spec: IndexSpec, x: np.ndarray, ids: np.ndarray, q: np.ndarray, truth: np.ndarray,
               n_single: int, uri: str) -> dict:
    """The same measurements on a Milvus collection (Milvus Lite for a .db path): build = insert + index."""
    from index.milvus_index import UNKNOWN_AGE, UNKNOWN_DAY, MilvusIndex

    t0 = time.perf_counter()
    mi = MilvusIndex.create(uri, spec, x.shape[1])
    blank = {"view": "", "sex": "", "source": "bench", "patient": "", "age": UNKNOWN_AGE, "day_offset": UNKNOWN_DAY,
             "findings": [], "case": {}}
    for s in range(0, len(x), 5_000):
        mi.client.insert(mi.collection, [{"id": int(i), "vector": v.tolist(), **blank}
                                         for i, v in zip(ids[s:s + 5_000], x[s:s + 5_000])])
    mi.client.flush(mi.collection)
    mi.client.load_collection(mi.collection)
    mi.search(q[0], 10)  # the first search waits for the index to be built
    build_s = time.perf_counter() - t0
    _, got = mi.search_batch(q, 10)
    times = []
    for i in range(n_single):
        t = time.perf_counter()
        mi.search(q[i], 10)
        times.append((time.perf_counter() - t) * 1000)
    row = {"n": len(x), "type": f"milvus-{kind}", "params": {k: v for k, v in spec.params.items() if k != "requested"},
           "build_s": round(build_s, 2), "bytes_per_vector": None,
           "p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
           "batch_qps": None, "recall_at_10": round(recall(got, truth), 4), "auto": False}
    print(json.dumps(row), flush=True)
    mi.drop()
    return row


def bench_gpu(n: int, dim: int, types: list[str], queries: int, nprobes: list[int], on_cpu: bool) -> list[dict]:
    """FAISS on a GPU: build, and search in batches of ``queries`` (time per query = batch time / batch size),
    recall@10 against exact GPU search. ``on_cpu`` runs the same steps with CPU classes (the dry run)."""
    import faiss

    from index.selection import ivf_nlist, pq_m

    res = None if on_cpu else faiss.StandardGpuResources()

    def make(kind: str, nlist: int) -> object:
        if kind == "flat":
            return faiss.IndexFlatIP(dim) if on_cpu else faiss.GpuIndexFlatIP(res, dim)
        if kind == "ivf":
            if on_cpu:
                return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            return faiss.GpuIndexIVFFlat(res, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if on_cpu:
            return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m(dim), 8, faiss.METRIC_INNER_PRODUCT)
        return faiss.GpuIndexIVFPQ(res, dim, nlist, pq_m(dim), 8, faiss.METRIC_INNER_PRODUCT)

    t = time.perf_counter()
    centers = max(100, n // 500)
    x = clustered(n, dim, 0, centers)
    q = clustered(queries, dim, 1, centers)
    print(f"# gpu n={n}: data {time.perf_counter() - t:.1f} s", flush=True)
    rows, truth = [], None
    for kind in ["flat"] + [k for k in types if k != "flat"]:
        nlist = ivf_nlist(n)
        index = make(kind, nlist)
        t = time.perf_counter()
        if kind != "flat":
            sample = x[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
            index.train(sample)
        for s in range(0, n, 1_000_000):
            index.add(x[s:s + 1_000_000])
        build_s = time.perf_counter() - t
        for nprobe in ([None] if kind == "flat" else [p for p in nprobes if p <= nlist]):
            if nprobe is not None:
                index.nprobe = nprobe
            index.search(q[: min(10, queries)], 10)  # warm-up
            t = time.perf_counter()
            _, got = index.search(q, 10)
            per_query_ms = (time.perf_counter() - t) * 1000 / len(q)
            if kind == "flat":
                truth = got
            row = {"n": n, "type": f"{'cpu' if on_cpu else 'gpu'}-{kind}", "nlist": None if kind == "flat" else nlist,
                   "nprobe": nprobe, "build_s": round(build_s, 2), "batch": len(q),
                   "ms_per_query": round(per_query_ms, 4), "recall_at_10": round(recall(got, truth), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del index
    return rows


def bench_engine(n: int, dim: int, queries: int) -> list[dict]:
    """End-to-end SearchEngine.search(case id) latency on a synthetic index folder with n cases:
    unfiltered, a broad filter (view PA, ~1/2), a rare one (finding present in ~1 %), same patient."""
    from index.engine import SearchEngine
    from index.manifest import Manifest
    from index.schemas import SearchFilters
    from index.selection import choose_index
    from index.store import STORE_FILE, SQLiteStore, StoredCase
    from index.vectors import VectorTable, save_vectors

    rng = np.random.default_rng(7)
    x = clustered(n, dim, 0, max(100, n // 500))
    ids = np.arange(1, n + 1, dtype=np.int64)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        folder = Path(td)
        t = time.perf_counter()
        store = SQLiteStore(folder / STORE_FILE, create=True)
        views, sexes = np.array(["PA", "AP"]), np.array(["M", "F"])
        for s in range(0, n, 50_000):
            store.add(StoredCase(id=int(i), sha256=f"{i:064x}", source="synthetic", image_path="-",
                                 patient=f"p_{i // 4:016x}", view=str(views[i % 2]), sex=str(sexes[(i // 2) % 2]),
                                 age=float(i % 90), findings=["Rare"] if i % 100 == 0 else ["Common"])
                      for i in range(s + 1, min(n, s + 50_000) + 1))
        store.close()
        spec = choose_index(n, dim, budget=8 * 1024**3)
        save_vectors(folder, ids, x)
        vi = VectorIndex.build(spec, x, ids, dim)
        vi.save(folder)
        m = Manifest(model_sha256="bench", embed_dim=dim, index_type=spec.type, index_params=spec.params)
        m.write(folder)
        print(f"# engine folder n={n}: {time.perf_counter() - t:.1f} s, {spec.type} {spec.params}", flush=True)
        vi = VectorIndex.load(folder, spec)
        engine = SearchEngine(folder, m, SQLiteStore(folder / STORE_FILE, read_only=True), vi, VectorTable(folder), None)
        cases = {"unfiltered": None, "view=PA": SearchFilters(view=["PA"]), "finding=Rare (1%)": SearchFilters(finding=["Rare"])}
        qids = rng.integers(1, n + 1, queries)
        for name, f in cases.items():
            times, counts = [], []
            for qid in qids:
                t = time.perf_counter()
                res = engine.search(int(qid), k=10, filters=f, with_attention=False)
                times.append((time.perf_counter() - t) * 1000)
                counts.append(len(res.hits))
            row = {"n": n, "engine_query": name, "p50_ms": round(float(np.percentile(times, 50)), 2),
                   "p99_ms": round(float(np.percentile(times, 99)), 2), "min_hits": int(min(counts))}
            rows.append(row)
            print(json.dumps(row), flush=True)
        engine.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--types", nargs="+", default=["flat", "ivf", "ivfpq", "hnsw"])
    ap.add_argument("--queries", type=int, default=500, help="batched queries (recall measured on these)")
    ap.add_argument("--single", type=int, default=200, help="single queries timed one by one")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (slow to build)")
    ap.add_argument("--threads", type=int, default=None,
                    help="FAISS OpenMP threads (default: what SearchEngine uses, index.faiss_index.search_threads())")
    ap.add_argument("--nlist", type=int, nargs="+", default=None, help="IVF list counts to try (default: the rule's)")
    ap.add_argument("--engine", type=int, nargs="*", default=[],
                    help="also time SearchEngine.search end to end (SQLite + filters) at these sizes")
    ap.add_argument("--milvus", nargs="*", default=None, metavar="TYPE",
                    help="also measure these index types on Milvus (default with no value: flat ivf hnsw) beside FAISS")
    ap.add_argument("--milvus-uri", default=None,
                    help="Milvus for --milvus: a Lite .db file (default: a temporary one) or http://host:19530")
    ap.add_argument("--milvus-single", type=int, default=50, help="single Milvus queries timed one by one")
    ap.add_argument("--gpu", action="store_true",
                    help="FAISS on the GPU instead (faiss-gpu): flat plus --types ivf/ivfpq at --sizes, "
                    "--queries per batch; scripts/gpu_check.sh runs it at 10^6 and 10^7")
    ap.add_argument("--gpu-on-cpu", action="store_true", help="with --gpu: the same steps on CPU classes (dry run)")
    ap.add_argument("--out", type=Path, default=None, help="write all rows as JSON here")
    args = ap.parse_args()

    import faiss

    from index.faiss_index import search_threads

    faiss.omp_set_num_threads(args.threads or search_threads())
    print(f"# faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs", flush=True)
    if args.gpu:
        if not args.gpu_on_cpu and faiss.get_num_gpus() == 0:
            raise SystemExit("--gpu needs faiss-gpu and a visible CUDA GPU (pip install 'cxr-search[gpu]'); "
                             "--gpu-on-cpu runs the same steps on the CPU")
        if args.gpu_on_cpu:
            faiss.omp_set_num_threads(os.cpu_count() or 1)
        gpu_rows = [r for n in args.sizes for r in bench_gpu(n, args.dim, args.types, args.queries, args.nprobe,
                                                               args.gpu_on_cpu)]
        if args.out:
            args.out.write_text(json.dumps(gpu_rows, indent=1))
        print("\n| N | type | nlist | nprobe | build s | batch | ms/query | recall@10 |")
        print("|---|---|---|---|---|---|---|---|")
        for r in gpu_rows:
            print(f"| {r['n']:,} | {r['type']} | {r['nlist'] or ''} | {r['nprobe'] or ''} | {r['build_s']} | "
                  f"{r['batch']} | {r['ms_per_query']} | {r['recall_at_10']} |")
        return
    all_rows: list[dict] = []
    for n in args.sizes:
        centers = max(100, n // 500)
        t = time.perf_counter()
        x = clustered(n, args.dim, 0, centers)
        q = clustered(args.queries, args.dim, 1, centers)  # same centres, new points
        ids = np.arange(1, n + 1, dtype=np.int64)
        flat = VectorIndex.build(IndexSpec("flat"), x, ids, args.dim)
        _, truth = flat.search(q, 10)
        print(f"# n={n}: data + ground truth {time.perf_counter() - t:.1f} s", flush=True)
        auto = choose_index(n, args.dim, budget=8 * 1024**3)
        print(f"# auto choice for n={n}: {auto.type} {auto.params} ({auto.reason})", flush=True)
        for kind in args.types:
            if kind == "hnsw" and n > args.hnsw_max:
                print(f"# skipping hnsw at n={n} (> --hnsw-max)", flush=True)
                continue
            if kind == "flat":
                spec = IndexSpec("flat")
                n_single = min(args.single, 50 if n >= 500_000 else args.single)
            else:
                spec = spec_for(kind, n, args.dim)
                n_single = args.single
            sweep = args.ef if kind == "hnsw" else args.nprobe
            specs = [spec]
            if kind in ("ivf", "ivfpq") and args.nlist:
                specs = []
                for nl in args.nlist:
                    sp = spec_for(kind, n, args.dim)
                    sp.params["nlist"] = nl
                    sp.params["train_size"] = min(n, max(sp.params["train_size"], 40 * nl))
                    specs.append(sp)
            rows = [r for sp in specs for r in run_one(kind, sp, x, ids, q, truth, n_single, sweep)]
            for r in rows:
                r["auto"] = (kind == auto.type and (kind == "flat" or r["params"].get("nprobe") == auto.params.get("nprobe")))
            all_rows += rows
        if args.milvus is not None:
            uri = args.milvus_uri or str(Path(tempfile.mkdtemp(prefix="bench_milvus_")) / "bench.db")
            for kind in args.milvus or ["flat", "ivf", "hnsw"]:
                spec = spec_for(kind, n, args.dim)
                all_rows.append(run_milvus(kind, spec, x, ids, q, truth, min(args.milvus_single, len(q)), uri))
        del x, flat
    engine_rows = [r for n in args.engine for r in bench_engine(n, args.dim, min(args.single, 100))]
    if args.out:
        args.out.write_text(json.dumps(all_rows + engine_rows, indent=1))
    print("\n| N | type | params | build s | bytes/vec | p50 ms | p99 ms | batch q/s | recall@10 | auto |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in all_rows:
        p = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k in ("nlist", "nprobe", "M", "efSearch", "pq_m"))
        r = {key: ("" if v is None else v) for key, v in r.items()}
        print(f"| {r['n']:,} | {r['type']} | {p} | {r['build_s']} | {r['bytes_per_vector']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['batch_qps']} | {r['recall_at_10']} | {'yes' if r['auto'] else ''} |")
    if engine_rows:
        print("\n| N | engine query (k=10, by case id) | p50 ms | p99 ms | min hits |")
        print("|---|---|---|---|---|")
        for r in engine_rows:
            print(f"| {r['n']:,} | {r['engine_query']} | {r['p50_ms']} | {r['p99_ms']} | {r['min_hits']} |")


if __name__ == "__main__":
    main()
