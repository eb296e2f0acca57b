#!/usr/bin/env python
"""FAISS and Milvus (Lite) answer the same: top-10 overlap, hit sets under filters, votes.

Indexes the shared corpus once with the released model on FAISS (exact, ``flat``), moves a
copy of the folder to Milvus Lite with ``rebuild_index(backend="milvus")`` (same vectors, no
re-embedding, Milvus FLAT = exact), then sends the same query images to both engines:
unfiltered, under several filters and same-patient-only. Prints per-check figures and
writes them as JSON.

    nice python scripts/compare_backends.py --data ../shared/data --work /tmp/cmp --queries 50
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

FILTERS: dict[str, dict] = {
    "view=PA": {"view": ["PA"]},
    "sex=F": {"sex": "F"},
    "age 40-70": {"age_min": 40, "age_max": 70},
    "source=kermany": {"source": ["kermany"]},
    "finding=Pneumonia": {"finding": ["Pneumonia"]},
    "AP + M + COVID-19": {"view": ["AP"], "sex": "M", "finding": ["COVID-19"]},
}


def overlap(a: list[int], b: list[int]) -> float:
    return 1.0 if not a and not b else len(set(a) & set(b)) / max(len(a), len(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--work", type=Path, required=True, help="folder for the two indexes (reused when present)")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from cli.commands.demo import dataset_specs
    from index.builder import build_index, rebuild_index
    from index.engine import SearchEngine

    faiss_dir, milvus_dir = args.work / "faiss", args.work / "milvus"
    t = time.perf_counter()
    if not (faiss_dir / "manifest.json").is_file():
        build_index(dataset_specs(args.data), faiss_dir, index_type="flat", progress=False,
                    dataset_opts={})
    build_s = time.perf_counter() - t
    shutil.rmtree(milvus_dir, ignore_errors=True)
    shutil.copytree(faiss_dir, milvus_dir)
    t = time.perf_counter()
    rebuild_index(milvus_dir, index_type="flat", backend="milvus", milvus_uri=str(args.work / "cases.db"))
    to_milvus_s = time.perf_counter() - t

    fai = SearchEngine.open(faiss_dir)
    mil = SearchEngine.open(milvus_dir, embedder=fai.embedder)
    ids = fai.store.all_ids()
    rng = np.random.default_rng(0)
    qids = rng.choice(ids, size=min(args.queries, len(ids)), replace=False)
    paths = [fai.store.image_path(int(i)) for i in qids]
    res: dict[str, list[float]] = {"top10_overlap": [], "vote_max_abs_diff": []}
    same_sets = {name: 0 for name in FILTERS}
    same_sets["same_patient_only"] = 0
    n_patient = 0
    prognosis_equal = 0
    lat = {"faiss": [], "milvus": []}
    for path in paths:
        for name, eng in (("faiss", fai), ("milvus", mil)):
            t = time.perf_counter()
            eng.search(path, k=args.k, with_attention=False)
            lat[name].append((time.perf_counter() - t) * 1000)
        a = fai.search(path, k=args.k, with_attention=False)
        b = mil.search(path, k=args.k, with_attention=False)
        res["top10_overlap"].append(overlap([h.case.id for h in a.hits], [h.case.id for h in b.hits]))
        keys = set(a.vote) | set(b.vote)
        res["vote_max_abs_diff"].append(max((abs(a.vote.get(f, 0) - b.vote.get(f, 0)) for f in keys), default=0.0))
        prognosis_equal += a.prognosis == b.prognosis
        for name, f in FILTERS.items():
            fa = {h.case.id for h in fai.search(path, k=args.k, filters=f, with_attention=False).hits}
            fb = {h.case.id for h in mil.search(path, k=args.k, filters=f, with_attention=False).hits}
            same_sets[name] += fa == fb
        if a.query_id is not None and fai.store.patient_of(a.query_id):
            n_patient += 1
            pa = {h.case.id for h in fai.search(path, k=args.k, same_patient_only=True, with_attention=False).hits}
            pb = {h.case.id for h in mil.search(path, k=args.k, same_patient_only=True, with_attention=False).hits}
            same_sets["same_patient_only"] += pa == pb
    n = len(paths)
    summary = {
        "cases": int(len(ids)), "queries": n, "k": args.k,
        "build_faiss_s": round(build_s, 1), "rebuild_to_milvus_lite_s": round(to_milvus_s, 1),
        "mean_top10_overlap": round(float(np.mean(res["top10_overlap"])), 4),
        "min_top10_overlap": round(float(np.min(res["top10_overlap"])), 4),
        "vote_max_abs_diff": float(np.max(res["vote_max_abs_diff"])),
        "prognosis_equal": f"{prognosis_equal}/{n}",
        "same_filtered_hit_sets": {k: f"{v}/{n_patient if k == 'same_patient_only' else n}" for k, v in same_sets.items()},
        "engine_p50_ms": {k: round(float(np.median(v)), 1) for k, v in lat.items()},
    }
    fai.close()
    mil.close()
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
