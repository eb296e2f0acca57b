"""A running server follows the index's generations: no request mixes two, the new one is picked up,
a removed folder or a damaged index is a clear 503 / ``/health`` reason, never a 500."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from index.builder import remove_from_index
from index.generations import live_generation, read_pointer
from index.store import SQLiteStore
from tests.search_api.conftest import API_KEY, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEADER = "x-index-generation"


def live_ids(index: Path) -> set[int]:
    store = SQLiteStore(live_generation(index)[0] / "store.sqlite", read_only=True)
    try:
        return set(store.all_ids().tolist())
    finally:
        store.close()


def wait_until(cond, what: str, proc=None, log=None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None:
            assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what}:\n" + (log.read_text()[-3000:] if log else "")
        time.sleep(0.2)


@pytest.fixture()
def served(tiny_index, tmp_path):
    """`cxr serve` over a private copy of the index: (url, index folder, process, log)."""
    index = tmp_path / "live"
    shutil.copytree(tiny_index.index_dir, index)
    if not (live_generation(index)[0] / "index.faiss").is_file():
        pytest.skip("Milvus Lite serves one process: the live-server test runs on the FAISS backend")
    port = free_port()
    env = dict(os.environ, CXR_API_API_KEYS=API_KEY, PYTHONPATH=str(PROJECT_ROOT))
    env.pop("CXR_API_API_KEYS_FILE", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--index", str(index), "--model",
                                 str(tiny_index.checkpoint), "--host", "127.0.0.1", "--port", str(port),
                                 "--log-level", "warning"], cwd=PROJECT_ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).json()["index_loaded"]
        except (httpx.HTTPError, ValueError):
            return False

    try:
        wait_until(ready, "server not ready", proc, log)
        yield url, index, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_four_clients_never_see_a_mix_while_the_index_changes(served):
    url, index, proc, log = served
    truth = {read_pointer(index).generation: live_ids(index)}
    seen: list[tuple[str, str, object]] = []
    stop = threading.Event()
    errors: list[str] = []

    def client(worker: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
            i = 0
            while not stop.is_set():
                i += 1
                cid = 1 + (worker * 7 + i) % 12
                kind = i % 3
                if kind == 0:
                    r = c.get("/v1/stats")
                    value: object = r.json()["cases"] if r.status_code == 200 else None
                elif kind == 1:
                    r = c.get(f"/v1/cases/{cid}")
                    value = (cid, r.status_code)
                else:
                    r = c.get(f"/v1/cases/{cid}/similar", params={"k": 100, "same_patient": "include",
                                                                  "attention": "false"})
                    value = (cid, r.status_code, sorted(h["case"]["id"] for h in r.json().get("hits", []))
                             if r.status_code == 200 else None)
                if r.status_code not in (200, 404) or HEADER not in r.headers:
                    errors.append(f"{r.status_code} {r.headers.get(HEADER)} {r.text[:200]}")
                seen.append((r.headers.get(HEADER, ""), ["stats", "case", "similar"][kind], value))

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(seen) >= 20, "no answers before the change", proc, log)
        remove_from_index(index, ids=list(range(1, 9)))  # cases 1..8 go; the server is mid-traffic
        new = read_pointer(index).generation
        truth[new] = live_ids(index)
        wait_until(lambda: sum(g == new for g, _, _ in seen) >= 20, "the new generation was never served",
                   proc, log)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:5]
    assert set(truth) == {g for g, _, _ in seen} and len(truth[new]) == 16
    for gen, kind, value in seen:
        ids = truth[gen]
        if kind == "stats":
            assert value == len(ids), (gen, value)
        elif kind == "case":
            cid, status = value
            assert status == (200 if cid in ids else 404), (gen, value)
        else:
            cid, status, hits = value
            assert status == (200 if cid in ids else 404), (gen, value)
            if status == 200:
                assert hits == sorted(ids - {cid}), (gen, value)  # every other case of that generation, no more
    # Once switched, never back.
    firsts = [i for i, (g, _, _) in enumerate(seen) if g == new]
    assert all(g == new for g, _, _ in seen[firsts[0] + 8:])
    # The old generation is released and removed by the next writer.
    remove_from_index(index, ids=[9])
    wait_until(lambda: httpx.get(f"{url}/v1/stats", headers={"X-API-Key": API_KEY}).json()["cases"] == 15,
               "second change not picked up", proc, log)
    remove_from_index(index, ids=[10])
    assert len([p for p in index.iterdir() if p.name.startswith("gen-")]) <= 2

    # The folder removed: /health says so and /v1 answers 503, not 500.
    shutil.rmtree(index)
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["index_loaded"] is False and health["reason"] == "index_missing"
    r = httpx.get(f"{url}/v1/stats", headers={"X-API-Key": API_KEY}, timeout=10)
    assert r.status_code == 503 and r.json()["error"] and str(index) not in r.text


def test_damaged_index_is_reported_at_start_and_a_damaged_new_generation_is_not_served(tiny_index, tmp_path):
    from fastapi.testclient import TestClient

    from search_api.app import create_app
    from search_api.settings import APISettings

    index = tmp_path / "idx"
    shutil.copytree(tiny_index.index_dir, index)
    faiss_file = live_generation(index)[0] / "index.faiss"
    if not faiss_file.is_file():
        pytest.skip("the Milvus backend keeps no index.faiss (its store and vectors are checked the same way)")
    good = faiss_file.read_bytes()
    faiss_file.write_bytes(good[:100] + bytes(b ^ 0xFF for b in good[100:4196]) + good[4196:])
    settings = APISettings(index_dir=index, model_path=tiny_index.checkpoint, api_keys=API_KEY)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as c:
        health = c.get("/health").json()
        assert health["index_loaded"] is False and health["reason"] == "index_corrupt"
        r = c.get("/v1/stats", headers={"X-API-Key": API_KEY})
        assert r.status_code == 503 and r.json()["error"] == "index_corrupt"

    faiss_file.write_bytes(good)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as c:
        c.headers["X-API-Key"] = API_KEY
        assert c.get("/health").json()["index_loaded"] is True
        first = c.get("/v1/stats")
        assert first.json()["cases"] == 24
        remove_from_index(index, ids=[1])
        new_faiss = live_generation(index)[0] / "index.faiss"  # damaged after the writer sealed it
        data = bytearray(new_faiss.read_bytes())
        data[200:260] = bytes(60)
        new_faiss.write_bytes(bytes(data))
        wait_until(lambda: (c.get("/health").json()["reason"] or "")== "reload_failed:index_corrupt",
                   "the damaged generation was not reported")
        r = c.get("/v1/stats")
        assert r.status_code == 200 and r.json()["cases"] == 24 and r.headers[HEADER] == first.headers[HEADER]
