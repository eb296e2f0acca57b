#!/usr/bin/env python
"""Cost breakdown of one ``POST /v1/search`` and the throughput limit it sets on this machine.

Times every stage of a request with the real code, in process, over the index that
``scripts/bench_api.py`` builds (``.cache/bench_index``) and the same 512-px PNG queries:
multipart parse (``search_api.uploads.read_upload``), decode, standardize, sha256, the forward
pass at batch 1 and per image at batch 2..16, FAISS, SQLite, vote, the two PNG encodes, the
response model and its JSON, and the client's own work (the benchmark client shares the CPU).
Then one in-process request through the ASGI app (FastAPI, no socket) gives the framework's share.

For each stage: median wall ms and median CPU ms (``time.process_time``: all threads, so a
forward pass on 2 threads counts twice). The limit is ``cores / CPU per request`` with the
forward pass at batch 16: what the cores could serve if nothing else ran and nothing waited.

    .venv/bin/python scripts/profile_request.py --out .cache/profile.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `cxr serve` sets it, before torch loads

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("profile_request")


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """Median wall and CPU milliseconds of ``fn()`` over ``reps`` calls, and its last result."""
    walls, cpus, out = [], [], None
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus), out


def over(items: list[Any], fn: Callable[[Any], Any], reps: int) -> tuple[float, float, list[Any]]:
    """Median wall/CPU ms of ``fn(item)`` over every item, ``reps`` times each."""
    walls, cpus, outs = [], [], []
    for item in items:
        w, c, o = timed(lambda: fn(item), reps)
        walls.append(w)
        cpus.append(c)
        outs.append(o)
    return statistics.median(walls), statistics.median(cpus), outs


_LOOP = asyncio.new_event_loop()  # one loop, as in the server (asyncio.run per call adds its own costs)


def multipart(img: bytes, k: int) -> tuple[bytes, str]:
    import httpx

    req = httpx.Request("POST", "http://x/v1/search", files={"file": ("q.png", img, "image/png")}, data={"k": str(k)})
    return req.read(), req.headers["content-type"]


def parse_upload(body: bytes, ctype: str) -> Any:
    from starlette.requests import Request

    from search_api.uploads import read_upload

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/search", "headers": [
        (b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())], "query_string": b""}
    return _LOOP.run_until_complete(read_upload(Request(scope, receive), 20 * 2**20))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_api import default_data, load_queries

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=Path, default=ROOT / ".cache" / "bench_index")
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--queries", type=int, default=48)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--reps", type=int, default=5, help="repetitions per image and stage")
    p.add_argument("--forward-reps", type=int, default=20)
    p.add_argument("--torch-threads", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                   help="intra-op thread counts to time the forward pass with (the first is used after)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "cxr.audit"):  # one line per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import numpy as np
    import torch

    from embed.image import read_image
    from embed.standardize import standardize
    from embed.torchdata import to_uint8
    from index.engine import SearchEngine, _Query, _upsample01
    from index.schemas import Hit
    from index.voting import knn_vote, prognosis_summary
    from search_api.render import attention_png, grey_png
    from search_api.results import search_response

    if not (args.index / "manifest.json").is_file():
        raise SystemExit(f"no index at {args.index}: run scripts/bench_api.py once (it builds it)")
    engine = SearchEngine.open(args.index)
    queries = load_queries(args.data, args.queries, args.size)
    cfg = engine.embedder.std_cfg
    rows: list[tuple[str, float, float]] = []
    R = args.reps

    bodies = [multipart(q, args.k) for q in queries]
    rows.append(("client: build the multipart body (httpx)", *over(queries, lambda q: multipart(q, args.k), R)[:2]))
    rows.append(("multipart parse (read_upload)", *over(bodies, lambda b: parse_upload(*b), R)[:2]))
    w, c, imgs = over(queries, read_image, R)
    rows.append(("decode (embed.image.read_image)", w, c))
    w, c, stds = over(imgs, lambda im: to_uint8(standardize(im, cfg)).astype(np.float32) / 255.0, R)
    rows.append(("standardize (+ 8-bit rounding)", w, c))
    rows.append(("sha256 of the upload", *over(queries, lambda q: hashlib.sha256(q).hexdigest(), R)[:2]))

    emb = engine.embedder
    batch = np.stack(stds[:16])
    for _ in range(3):
        emb.embed_batch(batch)  # warm-up: oneDNN primitives for each shape
        emb.embed_batch(batch[:1])
    fw: dict[tuple[int, int], tuple[float, float]] = {}
    for threads in args.torch_threads:
        torch.set_num_threads(threads)
        for _ in range(2):
            emb.embed_batch(batch)
        for b in (1, 2, 4, 8, 16):
            w, c, _ = timed(lambda b=b: emb.embed_batch(batch[:b]), args.forward_reps)
            fw[threads, b] = (w / b, c / b)
            rows.append((f"forward, batch {b}, {threads} torch thread(s) (per image)", w / b, c / b))
    torch.set_num_threads(args.torch_threads[0])

    vec, att = emb.embed_batch(batch[:1])
    q = _Query(vec[0], None, None)
    rows.append(("FAISS + exclusions (engine._neighbours)",
                 *timed(lambda: engine._neighbours(q, args.k, None, True, False), R * 20)[:2]))
    sims, ids, _ = engine._neighbours(q, args.k, None, True, False)
    sha = hashlib.sha256(queries[0]).hexdigest()
    rows.append(("SQLite: own-image lookup + k rows", *timed(
        lambda: (engine.store.sha_to_id_one(sha), engine.store.get(ids.tolist())), R * 20)[:2]))
    cases = {r.id: r for r in engine.store.get(ids.tolist())}
    hits = [Hit(case=cases[int(i)], similarity=float(s), rank=n) for n, (s, i) in enumerate(zip(sims, ids), 1)]
    rows.append(("vote + prognosis summary", *timed(lambda: (knn_vote(hits), prognosis_summary(hits)), R * 20)[:2]))
    std0 = stds[0]
    w1, c1, att01 = timed(lambda: _upsample01(att[0], std0.shape[0]), R * 20)
    w2, c2, _ = timed(lambda: attention_png(att01, std0.shape[0]), R * 20)
    rows.append(("attention map: upsample + RGBA PNG", w1 + w2, c1 + c2))
    w3, c3, _ = timed(lambda: grey_png(std0), R * 20)
    rows.append(("query PNG (standardized, grey)", w3, c3))

    result = engine.search(queries[0], k=args.k)
    w, c, resp = timed(lambda: search_response(result, args.k, "x"), R * 20)
    rows.append(("response model (base64 + pydantic), PNGs excluded", max(0.0, w - w2 - w3), max(0.0, c - c2 - c3)))
    from fastapi.encoders import jsonable_encoder

    w, c, body = timed(lambda: json.dumps(jsonable_encoder(resp)).encode(), R * 20)
    rows.append(("JSON of the answer (FastAPI: jsonable_encoder + json.dumps)", w, c))
    rows.append(("client: parse the JSON answer", *timed(lambda: json.loads(body), R * 20)[:2]))

    e2e = in_process_request(engine, queries, args.k, R, args.torch_threads[0])
    server = [r for r in rows if not r[0].startswith("client") and not r[0].startswith("forward")]
    client = [r for r in rows if r[0].startswith("client")]
    t0 = args.torch_threads[0]
    other_cpu = sum(r[2] for r in server)
    framework = (max(0.0, e2e[0] - sum(r[1] for r in server) - fw[t0, 1][0] - sum(r[1] for r in client)),
                 max(0.0, e2e[1] - other_cpu - fw[t0, 1][1] - sum(r[2] for r in client)))
    rows.append(("framework: FastAPI routing, deps, thread hops (in-process request - stages)", *framework))
    other_cpu += framework[1] + sum(r[2] for r in client)
    cores = os.cpu_count() or 1
    limits = {f"{t} torch thread(s), batch {b}": round(cores * 1000 / (other_cpu + fw[t, b][1]), 1)
              for t in args.torch_threads for b in (1, 16)}
    report = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{cores}-core CPU, no GPU",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "loadavg_1m": round(os.getloadavg()[0], 1),
        "stages": [{"stage": n, "wall_ms": round(w, 2), "cpu_ms": round(c, 2)} for n, w, c in rows],
        "in_process_request_ms": {"wall": round(e2e[0], 2), "cpu": round(e2e[1], 2)},
        "cpu_ms_per_request_besides_the_model": round(other_cpu, 2),
        "limit_rps": limits,
    }
    print("| stage | wall ms | CPU ms |")
    print("|---|---|---|")
    for n, w, c in rows:
        print(f"| {n} | {w:.2f} | {c:.2f} |")
    print(f"| one request in process (ASGI, k={args.k}, attention on) | {e2e[0]:.2f} | {e2e[1]:.2f} |")
    print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    engine.close()
    return 0


def in_process_request(engine: Any, queries: list[bytes], k: int, reps: int, threads: int) -> tuple[float, float]:
    """Median wall/CPU ms of one full /v1/search through the ASGI app (no socket), one at a time.

    No batching window: a lone request's cost, not the wait for company.
    """
    import httpx

    from search_api.app import create_app
    from search_api.settings import APISettings

    settings = APISettings(index_dir=engine.index_dir, api_keys="k", batch_window_ms=0, model_threads=threads)
    app = create_app(settings, engine=engine)

    async def run() -> tuple[float, float]:
        walls, cpus = [], []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers={"X-API-Key": "k"}) as http:
                for i in range(len(queries) * reps):
                    c0, t0 = time.process_time(), time.perf_counter()
                    r = await http.post("/v1/search", files={"file": ("q.png", queries[i % len(queries)], "image/png")},
                                        data={"k": str(k)})
                    r.json()
                    walls.append((time.perf_counter() - t0) * 1000)
                    cpus.append((time.process_time() - c0) * 1000)
                    r.raise_for_status()
        return statistics.median(walls[len(queries):]), statistics.median(cpus[len(queries):])

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
