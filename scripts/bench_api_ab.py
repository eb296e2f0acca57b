#!/usr/bin/env python
"""One-client latency of two API servers, measured side by side (A/B, interleaved).

Starts server A from this tree and server B from another checkout (``--ref``, e.g. the
unbatched main: ``git archive <sha> | tar -x -C /tmp/ref``) over the same index, then one
client sends the same query PNGs to A and B in turn, so both see the same load on a shared
machine, and reports p50/p95 per server. Used for "p50 at one client does not get worse
by more than the batching window" (docs/benchmarks.md).

    .venv/bin/python scripts/bench_api_ab.py --ref /tmp/ref --requests 300
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_api import default_data, free_port, load_queries, pct, wait_ready  # noqa: E402

log = logging.getLogger("bench_api_ab")


def start(tree: Path, index: Path, key: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, CXR_API_API_KEYS=key, PYTHONPATH=str(tree))
    env.pop("CXR_API_API_KEYS_FILE", None)
    cmd = [sys.executable, "-m", "cli", "serve", "--index", str(index), "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    import httpx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", type=Path, required=True, help="the other checkout (server B)")
    p.add_argument("--index", type=Path, default=ROOT / ".cache" / "bench_index")
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--requests", type=int, default=300, help="requests per server")
    p.add_argument("-k", type=int, default=10)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    queries = load_queries(args.data, 48, 512)
    key = secrets.token_urlsafe(24)
    servers = {"A (this tree)": start(ROOT, args.index, key, ROOT / ".cache" / "ab_a.log"),
               "B (--ref)": start(args.ref, args.index, key, ROOT / ".cache" / "ab_b.log")}
    lat: dict[str, list[float]] = {name: [] for name in servers}
    errors = dict.fromkeys(servers, 0)
    load0 = os.getloadavg()[0]
    try:
        for proc, url in servers.values():
            wait_ready(url, proc, 300)
        clients = {name: httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60)
                   for name, (_, url) in servers.items()}
        for i in range(args.requests + 5):
            img = queries[i % len(queries)]
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                t0 = time.perf_counter()
                r = clients[name].post("/v1/search", files={"file": ("q.png", img, "image/png")}, data={"k": str(args.k)})
                dt = (time.perf_counter() - t0) * 1000
                if i < 5:  # warm-up
                    continue
                if r.status_code == 200 and r.json().get("count", 0) > 0:
                    lat[name].append(dt)
                else:
                    errors[name] += 1
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(20)
    print(f"load average (1 min) {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| server | requests | errors | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|---|---|")
    for name, values in lat.items():
        print(f"| {name} | {len(values) + errors[name]} | {errors[name]} | {pct(values, 50):.1f} | "
              f"{pct(values, 95):.1f} | {statistics.fmean(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
