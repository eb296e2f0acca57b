#!/usr/bin/env python
"""Benchmark the FAISS index types, and the build's own choice (rule + tuning), on two vector sets.

Vector sets: ``synthetic`` (clusters in a 32-d latent space projected to 256-d) and ``gmm``
(drawn from a Gaussian mixture fitted to the released model's embeddings of a real corpus,
read from an index folder's vectors.npy, re-normalised). For each corpus size, set and
index type: build time, bytes per vector, single-query p50/p99, batched queries per second
and recall@10 against exact search; IVF is swept over nlist and nprobe (HNSW over efSearch).
Then the configuration the build chooses (index.selection.choose_index, then index.tuning
on the index's own vectors, recall target 0.95) is measured on the same queries and set
beside the fastest configuration of the sweep that reaches recall@10 0.95.

The memory bandwidth is measured (a numpy streaming read; where the flat scan of the same run
reads faster, its rate) and each IVF-Flat p50 is shown beside its floor: a query reads
nprobe/nlist of the N*d*4 bytes of vectors.

    nice python scripts/bench_index.py --sizes 1000000 --corpus-index /tmp/corpus_idx --out bench_index.json
    nice python scripts/bench_index.py --sizes 100000 --data synthetic --types flat ivf hnsw --milvus   # FAISS vs Milvus Lite
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
from index.tuning import tune


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
            n_single: int, sweep: list[int], built: dict | None = None) -> list[dict]:
    t0 = time.perf_counter()
    vi = VectorIndex.build(spec, x, ids, x.shape[1])
    build_s = time.perf_counter() - t0
    if built is not None:
        built[(kind, spec.params.get("nlist"))] = (VectorIndex(vi.index, IndexSpec(kind, dict(spec.params)), use_gpu=False),
                                                   build_s)
    with tempfile.TemporaryDirectory() as td:
        size = vi.save(td).stat().st_size
    rows = []
    if kind in ("ivfsq", "ivfpq"):  # what the engine does: candidates re-scored exactly from the stored vectors
        from index.selection import rerank_depth
        from index.vectors import rerank

        fetch = rerank_depth(vi.spec, 10)
        base_search = vi.search

        def reranked(qq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            s_, i_ = base_search(qq, fetch)
            out = [rerank(qq[j], i_[j], x[np.clip(i_[j] - 1, 0, None)], k) for j in range(len(qq))]
            return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

        vi.search = reranked  # type: ignore[method-assign]
    knob = {"ivf": "nprobe", "ivfsq": "nprobe", "ivfpq": "nprobe", "hnsw": "efSearch"}.get(kind)
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


def gmm_sampler(corpus_index: Path, dim: int, components: int = 16, latent: int = 64):  # noqa: ANN201
    """A sampler of unit vectors from a Gaussian mixture fitted to a corpus's embeddings.

    The mixture is fitted in the corpus's top ``latent`` principal components (full covariances:
    2k points cannot fit 256x256 ones); the residual is isotropic noise of the corpus's residual
    variance. Samples are re-normalised, as the model's embeddings are.
    """
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    v = np.load(corpus_index / "vectors.npy").astype(np.float64)
    if v.shape[1] != dim:
        raise SystemExit(f"{corpus_index} holds {v.shape[1]}-d vectors; run with --dim {v.shape[1]}")
    pca = PCA(latent, random_state=0).fit(v)
    z = pca.transform(v)
    resid = float(np.mean((v - pca.inverse_transform(z)) ** 2))
    gm = GaussianMixture(components, covariance_type="full", random_state=0, reg_covar=1e-5).fit(z)
    print(f"# gmm: {len(v)} corpus vectors, {components} components in {latent} PCs "
          f"({pca.explained_variance_ratio_.sum():.2f} of the variance), residual var {resid:.2e}/dim", flush=True)

    def sample(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        gm.random_state = np.random.RandomState(seed)  # an int would restart every chunk: 10x duplicated data
        out = np.empty((n, dim), np.float32)
        for s in range(0, n, 100_000):
            m = min(100_000, n - s)
            zz, _ = gm.sample(m)
            zz = zz[rng.permutation(m)]  # sample() groups by component
            out[s:s + m] = pca.inverse_transform(zz) + np.sqrt(resid) * rng.standard_normal((m, dim))
        return normalize(out)

    return sample


def bandwidth() -> float:
    """Bytes per second of a numpy streaming read of 512 MiB, far beyond the caches (best of 5).

    The read is a matrix-vector product over (2^19, 256) float32, the same access pattern as a
    flat scan (BLAS sgemv, memory-bound); a plain ``sum`` is slower than memory here.
    """
    a = np.ones((2**19, 256), np.float32)
    v = np.ones(256, np.float32)
    best = min(_timed(lambda: a @ v) for _ in range(5))
    return a.nbytes / best


def _timed(f) -> float:  # noqa: ANN001
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def floor_ms(row: dict, bw: float, dim: int) -> float | None:
    p = row["params"]
    if row["type"] == "flat":
        return row["n"] * dim * 4 / bw * 1000
    if row["type"] == "ivf":
        return min(1.0, p["nprobe"] / p["nlist"]) * row["n"] * dim * 4 / bw * 1000
    return None


def chosen(n: int, dim: int, x: np.ndarray, ids: np.ndarray, q: np.ndarray, truth: np.ndarray, built: dict,
           n_single: int, target: float) -> dict:
    """What `cxr index build` does: the rule's index, tuned on its own vectors; measured on the bench queries."""
    spec = choose_index(n, dim, budget=8 * 1024**3)
    key = (spec.type, spec.params.get("nlist"))
    if key in built:
        vi, build_s = built[key]
    else:
        t0 = time.perf_counter()
        vi = VectorIndex.build(spec, x, ids, dim)
        build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = tune(vi, x, ids, recall=target) if spec.type != "flat" else None
    tune_s = time.perf_counter() - t0
    if res:
        vi.spec.params.update(res.params)
    _, got = vi.search(q, 10)
    p50, p99 = latency(vi, q, n_single)
    row = {"n": n, "type": spec.type, "params": {k: v for k, v in vi.spec.params.items() if k in ("nlist", "nprobe", "efSearch")},
           "build_s": round(build_s, 2), "tune_s": round(tune_s, 2), "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
           "recall_at_10": round(recall(got, truth), 4), "tuned_recall": res.recall if res else 1.0, "chosen": True}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--data", nargs="+", default=["synthetic", "gmm"], choices=["synthetic", "gmm"])
    ap.add_argument("--corpus-index", type=Path, default=None,
                    help="index folder whose vectors.npy (the released model's embeddings) the gmm set is fitted to")
    ap.add_argument("--types", nargs="+", default=["flat", "ivf"])
    ap.add_argument("--queries", type=int, default=300, help="batched queries (recall measured on these)")
    ap.add_argument("--single", type=int, default=200, help="single queries timed one by one")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (slow to build)")
    ap.add_argument("--threads", type=int, default=None,
                    help="FAISS OpenMP threads (default: what SearchEngine uses, index.faiss_index.search_threads())")
    ap.add_argument("--nlist", type=int, nargs="+", default=None,
                    help="IVF list counts to try (default: the rule's and a quarter of it)")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 target of the build's tuning")
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
    from index.selection import ivf_nlist

    faiss.omp_set_num_threads(args.threads or search_threads())
    bw = bandwidth()
    print(f"# faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs; "
          f"numpy streaming read {bw / 1e9:.2f} GB/s", flush=True)
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
    for data in args.data:
        if data == "gmm" and args.corpus_index is None:
            print("# skipping gmm: give --corpus-index DIR (an index built with the released model)", flush=True)
            continue
        sampler = gmm_sampler(args.corpus_index, args.dim) if data == "gmm" else None
        for n in args.sizes:
            centers = max(100, n // 500)
            t = time.perf_counter()
            x = sampler(n, 0) if sampler else clustered(n, args.dim, 0, centers)
            q = sampler(args.queries, 1) if sampler else clustered(args.queries, args.dim, 1, centers)
            ids = np.arange(1, n + 1, dtype=np.int64)
            flat = VectorIndex.build(IndexSpec("flat"), x, ids, args.dim)
            _, truth = flat.search(q, 10)
            print(f"# {data} n={n}: data + ground truth {time.perf_counter() - t:.1f} s", flush=True)
            rows: list[dict] = []
            built: dict = {}
            for kind in args.types:
                if kind == "hnsw" and n > args.hnsw_max:
                    print(f"# skipping hnsw at n={n} (> --hnsw-max)", flush=True)
                    continue
                if kind == "flat":
                    rows += run_one("flat", IndexSpec("flat"), x, ids, q, truth, min(args.single, 50), [])
                    continue
                specs = [spec_for(kind, n, args.dim)]
                if kind in ("ivf", "ivfsq", "ivfpq"):
                    specs = []
                    for nl in args.nlist or sorted({max(16, ivf_nlist(n) // 4), ivf_nlist(n)}):
                        sp = spec_for(kind, n, args.dim)
                        sp.params["train_size"] = min(n, max(sp.params["train_size"] * nl // sp.params["nlist"], 30 * nl))
                        sp.params["nlist"] = nl
                        specs.append(sp)
                for sp in specs:
                    rows += run_one(kind, sp, x, ids, q, truth, args.single, args.ef if kind == "hnsw" else args.nprobe,
                                    built)
            rows.append(chosen(n, args.dim, x, ids, q, truth, built, args.single, args.target))
            # the flat scan is itself a streaming read; where FAISS reads faster than numpy, its rate is the floor's
            flat_bw = max([n * args.dim * 4 / (r["p50_ms"] / 1000) for r in rows if r["type"] == "flat"], default=0.0)
            for r in rows:
                r["data"] = data
                r["floor_ms"] = floor_ms(r, max(bw, flat_bw), args.dim)
                r["bandwidth_gbs"] = round(max(bw, flat_bw) / 1e9, 2)
            all_rows += rows
            if args.milvus is not None:
                uri = args.milvus_uri or str(Path(tempfile.mkdtemp(prefix="bench_milvus_")) / "bench.db")
                for kind in args.milvus or ["flat", "ivf", "hnsw"]:
                    spec = spec_for(kind, n, args.dim)
                    row = run_milvus(kind, spec, x, ids, q, truth, min(args.milvus_single, len(q)), uri)
                    all_rows.append({**row, "data": data})
            del x, flat, built
    engine_rows = [r for n in args.engine for r in bench_engine(n, args.dim, min(args.single, 100))]
    if args.out:
        args.out.write_text(json.dumps({"bandwidth_gbs": bw / 1e9, "rows": all_rows + engine_rows}, indent=1))
    print(f"\n| data | N | type | params | build s | p50 ms | floor ms | recall@10 | chosen by the build |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in all_rows:
        p = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k in ("nlist", "nprobe", "M", "efSearch", "pq_m", "rerank"))
        fl = f"{r['floor_ms']:.3f}" if r.get("floor_ms") is not None else ""
        ch = f"yes (tuned in {r['tune_s']} s)" if r.get("chosen") else ""
        print(f"| {r['data']} | {r['n']:,} | {r['type']} | {p} | {r['build_s']} | {r['p50_ms']} | {fl} | "
              f"{r['recall_at_10']} | {ch} |")
    print()
    for data in args.data:
        for n in args.sizes:
            rs = [r for r in all_rows if r["data"] == data and r["n"] == n]
            ok = [r for r in rs if not r.get("chosen") and r["recall_at_10"] >= args.target]
            ch = [r for r in rs if r.get("chosen")]
            if ok and ch:
                best = min(ok, key=lambda r: r["p50_ms"])
                print(f"# {data} n={n}: chosen {ch[0]['params']} recall@10 {ch[0]['recall_at_10']} p50 {ch[0]['p50_ms']} ms; "
                      f"fastest in the sweep reaching {args.target}: {best['type']} {best['params']} p50 {best['p50_ms']} ms; "
                      f"ratio {ch[0]['p50_ms'] / best['p50_ms']:.2f}")
    if engine_rows:
        print("\n| N | engine query (k=10, by case id) | p50 ms | p99 ms | min hits |")
        print("|---|---|---|---|---|")
        for r in engine_rows:
            print(f"| {r['n']:,} | {r['engine_query']} | {r['p50_ms']} | {r['p99_ms']} | {r['min_hits']} |")


if __name__ == "__main__":
    main()
