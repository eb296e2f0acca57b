"""Time ``cxr demo`` from launch to a working page, then stop it with Ctrl-C (SIGINT).

"Working" means: the API's /health says the index is loaded, the page's
health endpoint answers and its HTML is served, and a first search through the
page's own HTTP client (ui.client) returns hits. Run it twice for the numbers
in docs/benchmarks.md:

    .venv/bin/python scripts/demo_timing.py --index /tmp/demo_index_cold --fresh   # cold: builds the index
    .venv/bin/python scripts/demo_timing.py --index /tmp/demo_index_cold           # warm: reuses it
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True, help="index folder given to cxr demo")
    ap.add_argument("--fresh", action="store_true", help="delete the index folder first (cold start)")
    ap.add_argument("--data", type=Path, default=None, help="passed to cxr demo --data")
    ap.add_argument("--model", type=Path, default=None, help="passed to cxr demo --model")
    ap.add_argument("--query", type=Path, default=None, help="image for the first search (default: a shared CXR)")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on kill too
    if args.fresh and args.index.exists():
        shutil.rmtree(args.index)
    api_port, ui_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "cli", "demo", "--index", str(args.index),
           "--api-port", str(api_port), "--ui-port", str(ui_port), "--ready-timeout", str(args.timeout)]
    if args.data:
        cmd += ["--data", str(args.data)]
    if args.model:
        cmd += ["--model", str(args.model)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            sys.stderr.write(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        return measure(args, proc, lines, t0, api_port, ui_port)
    finally:
        if proc.poll() is None:  # never leave the demo (and its children) behind
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def measure(args: argparse.Namespace, proc: subprocess.Popen, lines: list[str], t0: float,
            api_port: int, ui_port: int) -> int:
    """Poll until the page works, search once, then Ctrl-C the demo; print the figures as JSON."""
    api, ui = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
    t_api = t_ui = None
    while time.monotonic() - t0 < args.timeout and proc.poll() is None and (t_api is None or t_ui is None):
        try:
            if t_api is None and httpx.get(f"{api}/health", timeout=2).json().get("index_loaded"):
                t_api = time.monotonic() - t0
            if t_ui is None and httpx.get(f"{ui}/_stcore/health", timeout=2).status_code == 200 \
                    and "<html" in httpx.get(ui, timeout=5).text.lower():
                t_ui = time.monotonic() - t0
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)
    if t_api is None or t_ui is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        print(json.dumps({"ok": False, "api_ready_s": t_api, "page_ready_s": t_ui}))
        return 1
    key = None
    for _ in range(40):  # the key line is printed right after both answer
        m = re.search(r"shown once\): (\S+)", "".join(lines))
        if m:
            key = m.group(1)
            break
        time.sleep(0.25)
    sys.path.insert(0, str(ROOT))
    from ui.client import CXRClient, SearchParams

    query = args.query or next((ROOT.parent / "shared" / "data" / "chest_xray").rglob("*.jpeg"))
    with CXRClient(api, key) as client:
        t_s = time.monotonic()
        result = client.search(query.read_bytes(), SearchParams(k=10), filename=query.name)
        search_s = time.monotonic() - t_s
    t_working = time.monotonic() - t0
    t_stop = time.monotonic()
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rc = proc.wait(60)
    stop_s = time.monotonic() - t_stop
    ports_free = all(_port_free(p) for p in (api_port, ui_port))
    built = any("Index built" in ln for ln in lines)
    print(json.dumps({
        "ok": bool(result.get("hits")) and rc == 0 and ports_free,
        "index_built": built, "api_ready_s": round(t_api, 1), "page_ready_s": round(t_ui, 1),
        "first_search_s": round(search_s, 2), "working_page_s": round(t_working, 1),
        "hits": len(result.get("hits", [])), "exit_code_after_sigint": rc, "stop_s": round(stop_s, 1),
        "ports_free_after_stop": ports_free, "cpus": os.cpu_count(),
    }))
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


if __name__ == "__main__":
    sys.exit(main())
