"""Index lifecycle: generations survive a kill at every step, one writer at a time, corruption is
caught at load, readers keep their generation, ids never come back, leftovers are cleaned."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from embed.errors import IndexStateError
from index.builder import add_to_index, build_index, rebuild_index, remove_from_index
from index.describe import index_stats
from index.engine import SearchEngine
from index.errors import IndexCorruptError, IndexMissingError
from index.generations import CRASH_ENV, live_generation, read_pointer
from index.lock import IndexBusyError, writer_lock
from index.manifest import Manifest
from tests.index.conftest import make_records, write_png

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def gens(index: Path) -> list[str]:
    return sorted(p.name for p in index.iterdir() if p.name.startswith("gen-"))


def count(index: Path) -> int:
    return index_stats(index)["cases"]


# -- ids ---------------------------------------------------------------------------------------
def test_removed_ids_are_never_handed_out_again(tmp_path, embedder, tiny_ckpt):
    recs = make_records(tmp_path / "img", 7)
    out = tmp_path / "idx"
    build_index(recs[:5], out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    assert remove_from_index(out, ids=[5]) == 1
    add_to_index(out, recs[5:6], embedder=embedder, workers=0, progress=False)
    engine = SearchEngine.open(out, embedder=embedder)
    assert engine.get_case(5) is None and engine.get_case(6) is not None
    assert engine.get_case(6).sha256 != engine.get_case(4).sha256
    engine.close()
    # The counter survives a rebuild and a fresh build over the same folder, too.
    remove_from_index(out, ids=[6])
    rebuild_index(out, index_type="hnsw")
    build_index(recs[:4] + recs[6:7], out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    assert Manifest.read(out).next_id == 8
    engine = SearchEngine.open(out, embedder=embedder)
    assert [engine.get_case(i) is not None for i in range(1, 8)] == [True] * 4 + [False, False, True]
    engine.close()


# -- kill at every step ------------------------------------------------------------------------
def _child(op: str, index: str, crash_at: int, ckpt: str, img_dir: str) -> None:
    """Run one change in a fresh process, killed (os._exit) at its crash_at-th step."""
    import logging

    logging.disable(logging.CRITICAL)
    os.environ[CRASH_ENV] = str(crash_at)
    if op == "add":
        from embed.inference import Embedder

        emb = Embedder.from_checkpoint(ckpt, device="cpu")
        add_to_index(index, make_records(Path(img_dir), 4, start=500, source="new"), embedder=emb, workers=0,
                     progress=False)
    elif op == "remove":
        remove_from_index(index, ids=[1, 2, 3])
    else:
        rebuild_index(index, index_type="hnsw", keep_old=True)


@pytest.fixture(scope="module")
def forkserver():
    """Children forked from a server that has imported torch and faiss but run nothing: each starts fast."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "faiss", "index.builder", "embed.inference", "tests.index.test_generations"])
    return ctx


@pytest.mark.parametrize("op,old,new", [("add", 30, 34), ("remove", 30, 27), ("rebuild", "flat", "hnsw")])
def test_a_kill_at_every_step_leaves_the_old_or_the_new_index(op, old, new, forkserver, built_index, tmp_path,
                                                               embedder, tiny_ckpt):
    img_dir = tmp_path / "new_images"
    make_records(img_dir, 4, start=500)
    outcomes = []
    for step in range(1, 60):
        index = tmp_path / f"idx{step}"
        shutil.copytree(built_index, index)
        proc = forkserver.Process(target=_child, args=(op, str(index), step, str(tiny_ckpt), str(img_dir)))
        proc.start()
        proc.join(120)
        assert proc.exitcode in (0, 137), proc.exitcode
        state = count(index) if op != "rebuild" else Manifest.read(index).index_type
        assert state in (old, new), (step, state)
        outcomes.append(state)
        # Still a working index: it opens (checksums verified), answers, and takes the next change,
        # which also clears whatever the killed writer left behind.
        engine = SearchEngine.open(index, embedder=embedder)
        assert len(engine.search(10, k=5, with_attention=False).hits) == 5
        engine.close()
        remove_from_index(index, ids=[10])
        assert count(index) == (state if op != "rebuild" else 30) - 1
        assert not [p.name for p in index.iterdir() if ".tmp-" in p.name] and len(gens(index)) == 1
        shutil.rmtree(index)
        if proc.exitcode == 0:
            break
    print(op, "kill points:", len(outcomes) - 1, outcomes)
    assert proc.exitcode == 0, "the change never completed"
    assert len(outcomes) >= 9  # every step was a kill point: lock, staging, files, seal, rename, pointer, cleanup
    assert outcomes[0] == old and outcomes[-1] == new and old in outcomes[:-1]


# -- one writer at a time ----------------------------------------------------------------------
def test_two_concurrent_cli_adds_keep_every_case(tmp_path, tiny_ckpt):
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(5):
        write_png(a / "Normal" / f"a{i}.png", seed=700 + i)
        write_png(b / "Pneumonia" / f"b{i}.png", seed=800 + i)
    write_png(tmp_path / "base" / "Normal" / "base.png", seed=900)
    index = tmp_path / "idx"
    common = ["--model", str(tiny_ckpt), "--workers", "0", "--no-progress"]
    assert main(["index", "build", *common, "--out", str(index), f"imagefolder:{tmp_path / 'base'}"]) == 0
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with writer_lock(index):  # both start while the lock is held: they must wait, then run one after the other
        procs = []
        for d, log in zip((a, b), logs):
            with open(log, "w") as fh:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "cli", "index", "add", *common, "--index", str(index), f"imagefolder:{d}"],
                    cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 180
        while not all("waiting for it" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [log.read_text() for log in logs]
            time.sleep(0.2)
    for p in procs:
        p.wait(timeout=300)
    outs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert count(index) == 11
    assert sum("5 added" in o for o in outs) == 2
    assert len(gens(index)) == 1


def test_a_writer_that_cannot_get_the_lock_says_who_holds_it(index_copy):
    with writer_lock(index_copy):
        with pytest.raises(IndexBusyError, match=r"being changed by pid \d+.*--lock-timeout"):
            remove_from_index(index_copy, ids=[1], lock_timeout=0.2)
    assert count(index_copy) == 30
    assert remove_from_index(index_copy, ids=[1], lock_timeout=0.2) == 1


# -- readers pin a generation ------------------------------------------------------------------
def test_an_open_engine_keeps_its_generation_until_closed(index_copy, embedder):
    engine = SearchEngine.open(index_copy, embedder=embedder)
    first = engine.generation
    before = [h.case.id for h in engine.search(7, k=29, exclude_same_patient=False, with_attention=False).hits]
    remove_from_index(index_copy, ids=list(range(1, 11)))
    assert gens(index_copy) == [first, read_pointer(index_copy).generation]  # pinned: kept on disk
    assert engine.stats().cases == 30 and engine.get_case(1) is not None
    assert [h.case.id for h in engine.search(7, k=29, exclude_same_patient=False,
                                             with_attention=False).hits] == before
    engine.close()
    remove_from_index(index_copy, ids=[11])
    assert gens(index_copy) == [read_pointer(index_copy).generation]  # unpinned: cleaned by the next writer
    fresh = SearchEngine.open(index_copy, embedder=embedder)
    assert fresh.stats().cases == 19 and fresh.get_case(1) is None
    fresh.close()


def test_readers_opening_while_a_writer_commits_never_fail(index_copy):
    errors: list[str] = []
    counts: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                counts.append(count(index_copy))
            except Exception as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 9):
            remove_from_index(index_copy, ids=[i])
    finally:
        stop.set()
        t.join(60)
    assert not errors and counts and set(counts) <= set(range(22, 31))
    assert count(index_copy) == 22


# -- corruption ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["store.sqlite", "index.faiss", "vectors.npy", "ids.npy", "manifest.json"])
def test_flipped_bytes_in_any_index_file_are_a_clear_error_at_load(name, index_copy, embedder, capsys):
    path = live_generation(index_copy)[0] / name
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=rf"damaged: {name}.*cxr index verify"):
        SearchEngine.open(index_copy, embedder=embedder)
    assert main(["index", "verify", "--index", str(index_copy), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert not rep["ok"] and rep["files"][name] == "checksum mismatch"
    assert main(["index", "stats", "--index", str(index_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "damaged" in err and "Traceback" not in err
    with pytest.raises(IndexCorruptError):  # a writer refuses to build on a damaged generation
        remove_from_index(index_copy, ids=[1])


def test_verify_passes_on_a_sound_index(index_copy, capsys):
    assert main(["index", "verify", "--index", str(index_copy)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "store.sqlite" in out and "quick_check" in out


def test_damaged_pointer_and_missing_generation(index_copy, embedder, capsys):
    gen = live_generation(index_copy)[0]
    (index_copy / "CURRENT").write_text("{garbage")
    with pytest.raises(IndexCorruptError, match="CURRENT is damaged"):
        SearchEngine.open(index_copy, embedder=embedder)
    assert main(["index", "verify", "--index", str(index_copy)]) == 1
    capsys.readouterr()
    (index_copy / "CURRENT").write_text(json.dumps({"generation": gen.name, "manifest_sha256": "0" * 64}))
    shutil.rmtree(gen)
    with pytest.raises(IndexMissingError, match="is missing"):
        SearchEngine.open(index_copy, embedder=embedder)


# -- leftovers and older folders ---------------------------------------------------------------
def test_stale_temporary_folders_of_dead_processes_are_cleaned(index_copy):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    leftovers = [index_copy / f"gen-000007.tmp-{pid}-abc123", index_copy.parent / f"{index_copy.name}.tmp-{pid}-def456"]
    for p in leftovers:
        p.mkdir()
        (p / "store.sqlite").write_bytes(b"half written")
    (index_copy / f"CURRENT.tmp-{pid}").write_text("{}")
    live_sibling = index_copy.parent / f"{index_copy.name}.tmp-{os.getpid()}-aaaaaa"  # a live process's: kept
    live_sibling.mkdir()
    remove_from_index(index_copy, ids=[1])
    assert not any(p.exists() for p in leftovers) and not (index_copy / f"CURRENT.tmp-{pid}").exists()
    assert live_sibling.is_dir() and count(index_copy) == 29


def test_a_folder_from_before_generations_is_read_and_converted(tmp_path, built_index, embedder):
    legacy = tmp_path / "legacy"
    shutil.copytree(live_generation(built_index)[0], legacy)  # manifest.json etc. directly in the folder
    assert read_pointer(legacy).generation == "legacy"
    engine = SearchEngine.open(legacy, embedder=embedder)
    assert engine.stats().cases == 30
    remove_from_index(legacy, ids=[2])
    assert engine.get_case(2) is not None  # the open engine still reads its files, kept while pinned
    assert (legacy / "store.sqlite").is_file()
    engine.close()
    remove_from_index(legacy, ids=[3])
    assert sorted(p.name for p in legacy.iterdir() if not p.name.startswith(".")) == ["CURRENT", "gen-000002"]
    assert count(legacy) == 28


def test_keep_old_leaves_a_complete_previous_index(index_copy, embedder):
    rebuild_index(index_copy, index_type="hnsw", keep_old=True)
    old = index_copy.with_name("index.old")
    assert Manifest.read(old).index_type == "flat" and Manifest.read(index_copy).index_type == "hnsw"
    engine = SearchEngine.open(old, embedder=embedder)
    assert engine.stats().cases == 30
    engine.close()


def test_build_refuses_a_folder_of_other_files(tmp_path, records, embedder, tiny_ckpt):
    out = tmp_path / "photos"
    write_png(out / "holiday.png", 1)
    with pytest.raises(IndexStateError, match="not a cxr index"):
        build_index(records[:3], out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["holiday.png"]
    np.testing.assert_equal(out.is_dir(), True)
