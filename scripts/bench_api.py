#!/usr/bin/env python
"""Load benchmark of the search API: a real uvicorn server, N concurrent clients, real images.

Starts ``cxr serve`` (one worker) on 127.0.0.1 with a generated API key over an
index of the shared corpus (built into ``.cache/bench_index`` with the released
model if absent), then for each concurrency level runs that many clients that
POST real 512-px PNGs to ``/v1/search`` for a bounded time. Reports p50/p95/p99
latency, throughput, errors, the CPU time per request of the server and of the
clients (from /proc and ``time.process_time``: on a shared machine, what the
request costs rather than how long it waited), the server's RSS at the start and
end of the highest level, and the server's batch sizes. Query images are held in
memory only.

    nice -n 10 .venv/bin/python scripts/bench_api.py --levels 1,4,16 --seconds 20 --last-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_api")


def default_data() -> Path:
    return Path(os.environ.get("CXR_SHARED_DATA", ROOT.parent / "shared" / "data"))


def corpus_specs(data: Path) -> list[str]:
    specs = [f"covid-chestxray:{data / 'covid-chestxray-dataset'}", f"kermany:{data / 'chest_xray'}",
             f"imagefolder:{data / 'nih-chestxray14-subset'}"]
    return [s for s in specs if Path(s.split(":", 1)[1]).is_dir()]


def ensure_model(arg: str | None, cache: Path) -> tuple[Path, str]:
    """The given checkpoint, else the released one, else an untrained cxr_resnet18 (said in the report)."""
    if arg:
        return Path(arg), f"given checkpoint {Path(arg).name}"
    from embed.errors import ModelError
    from embed.models import resolve_model_path

    try:
        return resolve_model_path(None), "released model"
    except ModelError:  # this install lacks it: an untrained model still measures the API
        pass
    path = cache / "untrained_cxr_resnet18.pt"
    if not path.is_file():
        import torch

        from embed.models import create_model, get_config, save_checkpoint
        from embed.standardize import StandardizeConfig

        torch.manual_seed(0)
        cfg = get_config("cxr_resnet18")
        save_checkpoint(path, create_model(cfg).eval(), std_cfg=StandardizeConfig(size=cfg.input_size),
                        labels=["No Finding", "Pneumonia"])
    return path, "UNTRAINED cxr_resnet18 (released model absent)"


def ensure_index(index: Path, model: Path, data: Path, build: bool) -> None:
    """Build (or bring up to date: same model and standardization reuse the stored vectors) the index."""
    if not build and (index / "manifest.json").is_file():
        log.info("using the existing index %s as is", index)
        return
    cmd = [sys.executable, "-m", "cli", "index", "build", "--model", str(model), "--out", str(index),
           "--no-progress", "--workers", "2", *corpus_specs(data)]
    log.info("building the index: %s", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=3600)


def load_queries(data: Path, n: int, size: int) -> list[bytes]:
    """n real images from every source, as size x size PNG bytes (in memory only)."""
    import cv2

    from embed.image import read_image
    from embed.standardize import to_grey

    pools = [sorted((data / "nih-chestxray14-subset").rglob("*.png")),
             sorted((data / "chest_xray").rglob("*.jpeg")),
             sorted((data / "covid-chestxray-dataset" / "images").glob("*"))]
    picked: list[bytes] = []
    i = 0
    while len(picked) < n and any(pools):
        pool = pools[i % len(pools)]
        i += 1
        if not pool:
            continue
        path = pool.pop(len(pool) // 2)
        try:
            px = to_grey(read_image(path).pixels)
        except Exception:  # noqa: BLE001 - unreadable files are simply not used as queries
            continue
        px = cv2.resize(px, (size, size), interpolation=cv2.INTER_AREA)
        u8 = cv2.normalize(px, None, 0, 255, cv2.NORM_MINMAX).astype("uint8")
        ok, buf = cv2.imencode(".png", u8)
        if ok:
            picked.append(buf.tobytes())
    if not picked:
        raise SystemExit(f"no query images found under {data}")
    return picked


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Level:
    concurrency: int
    seconds: float
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    throughput_rps: float = 0.0
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    rss_max_mb: float | None = None
    server_cpu_ms_per_req: float | None = None
    client_cpu_ms_per_req: float | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


async def run_level(url: str, key: str, queries: list[bytes], conc: int, seconds: float, k: int,
                    server_pid: int | None, sample_rss: bool) -> Level:
    import httpx

    level = Level(concurrency=conc, seconds=seconds)
    lat: list[float] = []
    rss: list[float] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)

    async def client(idx: int, http: httpx.AsyncClient) -> None:
        n = idx
        while time.monotonic() < deadline:
            img = queries[n % len(queries)]
            n += conc
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/search", files={"file": ("q.png", img, "image/png")}, data={"k": str(k)})
                ok = r.status_code == 200 and r.json().get("count", 0) > 0
                kind = None if ok else f"http_{r.status_code}"
            except httpx.HTTPError as exc:
                ok, kind = False, type(exc).__name__
            dt = (time.perf_counter() - t0) * 1000
            level.requests += 1
            if ok:
                lat.append(dt)
            else:
                level.errors += 1
                level.error_kinds[kind] = level.error_kinds.get(kind, 0) + 1

    async def sampler() -> None:
        while time.monotonic() < deadline:
            rss.append(rss_mb(server_pid))
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120, limits=limits) as http:
        if sample_rss and server_pid:
            level.rss_start_mb = round(rss_mb(server_pid), 1)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(server_pid) if server_pid else None
        own0 = time.process_time()
        tasks = [client(i, http) for i in range(conc)]
        if sample_rss and server_pid:
            tasks.append(sampler())
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        if level.requests:
            level.client_cpu_ms_per_req = round((time.process_time() - own0) * 1000 / level.requests, 2)
            if cpu0 is not None:
                level.server_cpu_ms_per_req = round((cpu_seconds(server_pid) - cpu0) * 1000 / level.requests, 2)
        if sample_rss and server_pid:
            level.rss_end_mb = round(rss_mb(server_pid), 1)
            level.rss_max_mb = round(max(rss), 1) if rss else None
    level.p50_ms, level.p95_ms, level.p99_ms = (round(pct(lat, q), 1) for q in (50, 95, 99))
    level.mean_ms = round(statistics.fmean(lat), 1) if lat else float("nan")
    level.throughput_rps = round(len(lat) / elapsed, 2)
    return level


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> float:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            r = httpx.get(f"{url}/health", timeout=2)
            if r.status_code == 200:
                if not r.json().get("index_loaded"):
                    raise SystemExit(f"index not loaded: {r.json().get('reason')}")
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("server not ready in time")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=Path, default=ROOT / ".cache" / "bench_index", help="index folder (built if absent)")
    p.add_argument("--no-build", action="store_true", help="use --index as it is (default: build or update it)")
    p.add_argument("--model", default=None, help="checkpoint (default: released, else untrained cxr_resnet18)")
    p.add_argument("--data", type=Path, default=default_data(), help="shared data folder")
    p.add_argument("--levels", default="1,4,16", help="concurrency levels, comma-separated")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each level but the last")
    p.add_argument("--last-seconds", type=float, default=60.0, help="duration of the last (memory-growth) level")
    p.add_argument("--warmup", type=int, default=5, help="requests before measuring")
    p.add_argument("--queries", type=int, default=48, help="distinct query images")
    p.add_argument("--size", type=int, default=512, help="query PNG side in pixels")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment of the server, e.g. CXR_API_MAX_BATCH=1 for the unbatched baseline")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request

    cache = ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    model, model_note = ensure_model(args.model, cache)
    ensure_index(args.index, model, args.data, not args.no_build)
    queries = load_queries(args.data, args.queries, args.size)
    log.info("%d query PNGs of %dx%d px (mean %.0f kB)", len(queries), args.size, args.size,
             statistics.fmean(len(q) for q in queries) / 1024)

    key = secrets.token_urlsafe(24)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CXR_API_API_KEYS=key)
    env.pop("CXR_API_API_KEYS_FILE", None)
    for item in args.server_env:
        name, _, value = item.partition("=")
        env[name] = value
    cmd = [sys.executable, "-m", "cli", "serve", "--index", str(args.index), "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server_log = cache / "bench_api_server.log"
    with open(server_log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    results: list[Level] = []
    load_start = os.getloadavg()
    try:
        ready_s = wait_ready(url, proc, 300)
        log.info("server ready in %.1f s (pid %d, RSS %.0f MB)", ready_s, proc.pid, rss_mb(proc.pid))
        asyncio.run(_warm(url, key, queries, args.warmup, args.k))
        for i, conc in enumerate(levels):
            last = i == len(levels) - 1
            secs = args.last_seconds if last else args.seconds
            lv = asyncio.run(run_level(url, key, queries, conc, secs, args.k, proc.pid, last))
            results.append(lv)
            log.info("c=%d: %d req, %d errors, p50 %.1f / p95 %.1f / p99 %.1f ms, %.2f req/s%s", conc, lv.requests,
                     lv.errors, lv.p50_ms, lv.p95_ms, lv.p99_ms, lv.throughput_rps,
                     f", RSS {lv.rss_start_mb} -> {lv.rss_end_mb} MB (max {lv.rss_max_mb})" if last else "")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    batches = next((line.split("model batches: ", 1)[1] for line in server_log.read_text().splitlines()
                    if "model batches: " in line), None)
    if batches:
        log.info("server's forward passes (every request of the run, the warm-up ones included): %s", batches)
    report = {
        "server_env": args.server_env, "model_batches": batches,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{os.cpu_count()}-core CPU, no GPU ({platform.machine()})",
        "model": model_note, "index": str(args.index), "query_px": args.size, "k": args.k,
        "server_ready_s": round(ready_s, 1), "levels": [asdict(r) for r in results],
        "loadavg_1m_start_end": [round(load_start[0], 1), round(os.getloadavg()[0], 1)],
    }
    log.info("host load average (1 min) at start %.1f, at end %.1f: other processes share the CPU",
             *report["loadavg_1m_start_end"])
    print("| concurrency | seconds | requests | errors | p50 ms | p95 ms | p99 ms | req/s | CPU ms/req server + client "
          "| server RSS start→end (max) MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mem = f"{r.rss_start_mb} → {r.rss_end_mb} ({r.rss_max_mb})" if r.rss_start_mb is not None else ""
        print(f"| {r.concurrency} | {r.seconds:.0f} | {r.requests} | {r.errors} | {r.p50_ms} | {r.p95_ms} | "
              f"{r.p99_ms} | {r.throughput_rps} | {r.server_cpu_ms_per_req} + {r.client_cpu_ms_per_req} | {mem} |")
    if len(results) > 1 and results[0].throughput_rps:
        ratio = results[-1].throughput_rps / results[0].throughput_rps
        report["throughput_ratio_last_to_first"] = round(ratio, 2)
        print(f"\nthroughput at {results[-1].concurrency} clients / at {results[0].concurrency}: {ratio:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if all(r.errors == 0 for r in results) else 1


async def _warm(url: str, key: str, queries: list[bytes], n: int, k: int) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120) as http:
        for i in range(n):
            r = await http.post("/v1/search", files={"file": ("q.png", queries[i % len(queries)], "image/png")},
                                data={"k": str(k)})
            r.raise_for_status()


if __name__ == "__main__":
    sys.exit(main())
