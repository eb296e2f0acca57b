"""Build, extend, shrink and compact an index; every change is a new generation (see index.generations).

A generation holds ``manifest.json``, ``store.sqlite`` (metadata), ``index.faiss``
and ``vectors.npy``/``ids.npy`` (the raw embeddings, so rebuilds never re-embed).
Every change runs inside the index's writer lock and reads the live generation there.
Cases are deduplicated by content sha256: building or adding the same images twice
adds nothing, and a case keeps its id across rebuilds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embed.pipeline import embed_paths
from index.backend import backend_params, create_filled, drop_replaced, open_backend
from index.embedding import hash_files
from index.generations import crash_point, live_generation, writing
from index.manifest import Manifest, check_compatible, std_dict, std_fingerprint
from index.selection import IVF_TYPES, IndexSpec, choose_index
from index.store import STORE_FILE, SQLiteStore, StoredCase
from index.tuning import DEFAULT_RECALL, apply, tune
from index.vectors import VectorTable, save_vectors

if TYPE_CHECKING:  # annotations only (imported where used, lazily)
    from embed.inference import Embedder
    from embed.pipeline import Runner

log = logging.getLogger(__name__)

#: Keys of CaseRecord.extra never stored: file names and locations can identify a patient
#: (user datasets name files after people or record numbers); images are served by id only.
_PRIVATE_EXTRA = frozenset({"filename", "file", "file_name", "filepath", "file_path", "path", "image_path", "folder"})


def _public_extra(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k.lower() not in _PRIVATE_EXTRA}


@dataclass
class BuildReport:
    """What a build/add did: counts, and the rows and images that were skipped, with reasons."""

    index_dir: str
    total: int = 0
    added: int = 0
    duplicates: int = 0
    reused_vectors: int = 0
    skipped_rows: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    index_type: str = ""
    reason: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.duplicates} duplicates skipped", f"{len(self.unreadable)} unreadable"]
        if self.skipped_rows:
            parts.append("dataset rows skipped: " + ", ".join(f"{k} {v}" for k, v in self.skipped_rows.items()))
        return (f"index {self.index_dir}: {self.total} cases ({'; '.join(parts)}); "
                f"{self.index_type} index ({self.reason}); {self.seconds:.1f} s")


def open_embedder(model: str | Path | None = None, device: str | None = None, batch_size: int = 32) -> Embedder:
    """An Embedder for ``model``, or for the released model when none is given."""
    from embed.inference import Embedder

    return Embedder.from_checkpoint(model, device=device, batch_size=batch_size)


def _load_records(datasets: Sequence[Any], report: BuildReport, dataset_opts: dict[str, Any] | None) -> list[Any]:
    """KIND:PATH specs -> CaseRecords (records given directly pass through); skipped rows counted."""
    if datasets and not isinstance(datasets[0], str):
        return list(datasets)
    from embed.datasets import load_datasets

    load = load_datasets(list(datasets), **(dataset_opts or {}))
    report.skipped_rows = dict(Counter(s.reason for s in load.skipped))
    return list(load.records)


def _new_cases(
    records: list[Any],
    embedder: Embedder,
    report: BuildReport,
    *,
    known: dict[str, int],
    next_id: int,
    reuse: VectorTable | None = None,
    keep_known: bool = False,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    runner: Runner | None = None,
) -> tuple[list[StoredCase], np.ndarray]:
    """Hash, deduplicate and embed records into StoredCases with vectors.

    ``known`` maps sha256 -> id of cases already indexed: they are skipped (add), or kept
    with their old id and, where ``reuse`` holds their vector, not re-embedded (build).
    """
    shas = hash_files([r.image_path for r in records])
    chosen: list[tuple[Any, str, int]] = []
    seen: set[str] = set()
    for rec, sha in zip(records, shas):
        if sha is None:
            report.unreadable.append((rec.case_id, "file missing or unreadable"))
            continue
        if sha in seen or (sha in known and not keep_known):
            report.duplicates += 1
            continue
        seen.add(sha)
        if sha in known:
            cid = known[sha]
        else:
            cid, next_id = next_id, next_id + 1
        chosen.append((rec, sha, cid))
    dim = int(embedder.embed_dim)
    vectors = np.zeros((len(chosen), dim), np.float32)
    ok = np.zeros(len(chosen), bool)
    todo: list[int] = []
    for j, (_, _, cid) in enumerate(chosen):
        if reuse is not None and reuse.has(cid):
            vectors[j] = reuse.get(np.array([cid]))[0]
            ok[j] = True
            report.reused_vectors += 1
        else:
            todo.append(j)
    out = embed_paths(embedder, [chosen[j][0].image_path for j in todo], batch_size=batch_size,
                      workers=workers, progress=progress, runner=runner)
    for p, vec in zip(out.positions, out.vectors):
        vectors[todo[p]] = vec
        ok[todo[p]] = True
    for f in out.failures:
        report.unreadable.append((chosen[todo[f.pos]][0].case_id, f.reason))
    cases = [
        StoredCase(id=cid, sha256=sha, image_path=str(rec.image_path), ref=rec.case_id,
                   **{**rec.case_fields(), "extra": _public_extra(rec.extra)})
        for (rec, sha, cid), good in zip(chosen, ok) if good
    ]
    return cases, vectors[ok]


def _write(tmp: Path, store: SQLiteStore, ids: np.ndarray, vectors: np.ndarray, spec: IndexSpec,
           manifest: Manifest) -> Any:
    """Write vectors, the backend index and the manifest (last: its presence marks a complete folder).

    FAISS writes ``index.faiss`` into ``tmp``; Milvus fills a new collection that the manifest names.
    """
    save_vectors(tmp, ids, vectors)
    crash_point("vectors written")
    if manifest.backend == "faiss" and not len(ids):
        spec = IndexSpec("flat", reason="empty index")
    vindex = create_filled(manifest, spec, store, ids, vectors)
    if vindex.kind == "faiss" and vindex.spec.type != "flat":  # knobs measured on the index's own vectors
        target = float(vindex.spec.params.get("recall_target") or DEFAULT_RECALL)
        vindex.spec.params = apply(vindex.spec.params, tune(vindex, vectors, ids, recall=target))
    if vindex.kind == "faiss":
        vindex.save(tmp)
    crash_point("faiss index written")
    manifest.index_type = vindex.spec.type
    manifest.index_params = dict(vindex.spec.params)
    manifest.counts = {"cases": store.count(), "deleted": store.count(include_deleted=True) - store.count(),
                       "vectors": vindex.ntotal}
    manifest.updated_unix = time.time()
    store.close()
    try:
        manifest.write(tmp)
    except BaseException:
        if vindex.kind == "milvus":
            vindex.drop()
        raise
    return vindex


def _spec(n: int, dim: int, requested: str, recall: float | None = None) -> IndexSpec:
    spec = choose_index(n, dim, override=requested)
    if recall is not None:
        spec.params["recall_target"] = float(recall)
    if spec.type in IVF_TYPES and n < int(spec.params["nlist"]):
        log.warning("only %d vectors: too few to train %s with %d lists; using an exact index", n, spec.type,
                    spec.params["nlist"])
        spec = IndexSpec("flat", reason=f"{n} vectors are too few for {requested}")
    spec.params["requested"] = requested
    log.info("index type %s (%s): %s", spec.type, spec.reason, {k: v for k, v in spec.params.items()})
    return spec


def build_index(
    datasets: Sequence[Any],
    out: str | Path,
    *,
    model: str | Path | None = None,
    embedder: Embedder | None = None,
    index_type: str = "auto",
    batch_size: int = 32,
    workers: int | None = None,
    keep_old: bool = False,
    progress: bool = True,
    dataset_opts: dict[str, Any] | None = None,
    recall: float | None = None,
    backend: str = "faiss",
    milvus_uri: str | None = None,
    runner: Runner | None = None,
    lock_timeout: float | None = None,
) -> BuildReport:
    """Build ``out`` from datasets (KIND:PATH specs or CaseRecords), replacing it atomically.

    Cases already in an existing ``out`` keep their ids; built with the same model, their
    vectors are reused instead of re-embedded. New cases get ids above any ever handed out.
    Approximate indices are tuned to ``recall`` (default: the existing index's target, else
    index.tuning.DEFAULT_RECALL). ``backend="milvus"`` puts the vectors in a new
    collection at ``milvus_uri`` (default: a Milvus Lite file ``OUT.milvus.db``).
    """
    t0 = time.time()
    out = Path(out).resolve()
    params = backend_params(backend, out, milvus_uri)
    if embedder is None:
        from embed.models import resolve_model_path

        model = resolve_model_path(model)  # recorded in the manifest below
    embedder = embedder or open_embedder(model, batch_size=batch_size)
    report = BuildReport(index_dir=str(out))
    records = _load_records(datasets, report, dataset_opts)
    with writing(out, lock_timeout=lock_timeout, create=True) as w:
        known: dict[str, int] = {}
        reuse: VectorTable | None = None
        next_id = 1
        old_manifest: Manifest | None = None
        src = w.source()
        if src is not None:
            old_manifest = Manifest.read(src)
            old = SQLiteStore(src / STORE_FILE, read_only=True)
            known, next_id = old.sha_to_id(), next_case_id(old_manifest, old)
            old.close()
            if recall is None:
                recall = old_manifest.index_params.get("recall_target")
            try:
                check_compatible(old_manifest, model_sha256=embedder.model_sha256, std_cfg=embedder.std_cfg,
                                 index_dir=out)
                reuse = VectorTable(src)
            except Exception as exc:  # noqa: BLE001 - another model: every image is embedded again
                log.info("existing index not reusable for vectors (%s): embedding every image", type(exc).__name__)
        cases, vectors = _new_cases(records, embedder, report, known=known, next_id=next_id, reuse=reuse,
                                    keep_known=True, batch_size=batch_size, workers=workers, progress=progress,
                                    runner=runner)
        ids = np.array([c.id for c in cases], dtype=np.int64)
        spec = _spec(len(ids), embedder.embed_dim, index_type, recall)
        manifest = Manifest(
            model_sha256=embedder.model_sha256, model_path=str(Path(model).resolve()) if model else None,
            model_name=str(getattr(getattr(embedder.model, "cfg", None), "name", "") or ""),
            embed_dim=int(embedder.embed_dim), std_config=std_dict(embedder.std_cfg),
            std_fingerprint=std_fingerprint(embedder.std_cfg), index_type=spec.type, faiss_version=_faiss_version(),
            history=[{"op": "build", "unix": time.time(), "added": len(cases)}],
            next_id=max(next_id, int(ids.max()) + 1 if len(ids) else 1), backend=backend, backend_params=params,
        )
        with w.new_generation(keep_old=keep_old) as tmp:
            store = SQLiteStore(tmp / STORE_FILE, create=True)
            store.add(cases)
            crash_point("store written")
            _write(tmp, store, ids, vectors, spec, manifest)
        if not keep_old:
            drop_replaced(old_manifest, manifest)
    report.total, report.added = len(cases), len(cases)
    report.index_type, report.reason, report.seconds = spec.type, spec.reason, time.time() - t0
    log.info(report.summary())
    return report


def _faiss_version() -> str:
    import faiss

    return str(getattr(faiss, "__version__", ""))


def next_case_id(manifest: Manifest, store: SQLiteStore) -> int:
    """The next id to hand out: the manifest's counter (ids only grow), or one above the largest stored id
    for an index written before the counter existed."""
    return max(int(manifest.next_id or 0), store.max_id() + 1, 1)


def _open_parts(index_dir: Path) -> tuple[Manifest, SQLiteStore, VectorTable]:
    manifest = Manifest.read(index_dir)
    store = SQLiteStore(index_dir / STORE_FILE, read_only=True)
    manifest.next_id = next_case_id(manifest, store)
    return manifest, store, VectorTable(index_dir, mmap=False)


@contextlib.contextmanager
def _undo_on_failure(undo: list[Any]) -> Iterator[None]:
    """Run the ``undo`` steps (in reverse) if the block fails: in-place Milvus edits follow the folder swap."""
    try:
        yield
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep undoing; the error that matters is re-raised
                log.error("could not undo a Milvus change (%s): rebuild the index with `cxr index rebuild`", exc)
        raise


def _existing(w: Any) -> Path:
    """The live generation a change starts from (add/remove/rebuild need one)."""
    src = w.source()
    if src is None:
        live_generation(w.index_dir)  # raises the clear "no index here" error
    return src


def add_to_index(
    index_dir: str | Path,
    datasets: Sequence[Any],
    *,
    model: str | Path | None = None,
    embedder: Embedder | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    dataset_opts: dict[str, Any] | None = None,
    runner: Runner | None = None,
    lock_timeout: float | None = None,
) -> BuildReport:
    """Add new cases (by content hash) to an existing index built with the same model.

    Runs inside the index's writer lock: a concurrent add waits, then adds to this one's result.
    """
    t0 = time.time()
    index_dir = Path(index_dir).resolve()
    report = BuildReport(index_dir=str(index_dir))
    with writing(index_dir, lock_timeout=lock_timeout) as w:
        src = _existing(w)
        manifest, store, table = _open_parts(src)
        embedder = embedder or open_embedder(model or manifest.model_path, batch_size=batch_size)
        check_compatible(manifest, model_sha256=embedder.model_sha256, std_cfg=embedder.std_cfg,
                         index_dir=index_dir)
        records = _load_records(datasets, report, dataset_opts)
        known = store.sha_to_id()
        deleted = set(store.deleted_ids().tolist())
        revive = sorted({known[s] for s in hash_files([r.image_path for r in records]) if s in known} & deleted)
        cases, vectors = _new_cases(records, embedder, report, known=known, next_id=manifest.next_id,
                                    batch_size=batch_size, workers=workers, progress=progress, runner=runner)
        report.duplicates -= len(revive)
        new_ids = np.array([c.id for c in cases], dtype=np.int64)
        manifest.next_id = max(manifest.next_id, int(new_ids.max()) + 1 if len(new_ids) else 0)
        undo: list[Any] = []
        with _undo_on_failure(undo), w.new_generation() as tmp:
            new_store = store.backup_to(tmp / STORE_FILE)
            store.close()
            new_store.add(cases)
            if revive:
                new_store.revive(revive)
            crash_point("store written")
            vindex = open_backend(src, manifest, mmap=False, use_gpu=False)
            if vindex.kind == "milvus":  # in place; undone below if the generation is not committed
                vindex.insert(new_store.get(new_ids.tolist()), vectors)
                undo.append(lambda: vindex.delete(new_ids))
            else:
                vindex.add(vectors, new_ids)
                vindex.save(tmp)
            crash_point("faiss index written")
            save_vectors(tmp, np.concatenate([table.ids, new_ids]).astype(np.int64),
                         np.concatenate([table.vectors, vectors]))
            crash_point("vectors written")
            manifest.counts = {"cases": new_store.count(), "vectors": vindex.ntotal,
                               "deleted": new_store.count(include_deleted=True) - new_store.count()}
            manifest.history.append({"op": "add", "unix": time.time(), "added": len(cases), "revived": len(revive)})
            manifest.updated_unix = time.time()
            new_store.close()
            manifest.write(tmp)
    report.added, report.total = len(cases) + len(revive), manifest.counts["cases"]
    report.index_type, report.reason, report.seconds = manifest.index_type, "existing index", time.time() - t0
    suggested = choose_index(report.total, manifest.embed_dim)
    if suggested.type != manifest.index_type and manifest.index_params.get("requested", "auto") == "auto":
        log.info("the index now holds %d cases: `cxr index rebuild` would switch it to %s", report.total, suggested.type)
    log.info(report.summary())
    return report


def remove_from_index(index_dir: str | Path, *, ids: Sequence[int] | None = None,
                      sources: Sequence[str] | None = None, lock_timeout: float | None = None) -> int:
    """Remove cases by id and/or source; HNSW indices tombstone them until `cxr index rebuild`.

    Removed ids are never handed out again (the manifest's ``next_id`` only grows).
    """
    index_dir = Path(index_dir).resolve()
    with writing(index_dir, lock_timeout=lock_timeout) as w:
        src = _existing(w)
        manifest, store, table = _open_parts(src)
        targets = set(store.existing_ids(ids or []).tolist())
        if sources:
            targets |= set(store.ids_for_source(sources).tolist())
        if not targets:
            store.close()
            return 0
        gone = np.array(sorted(targets), dtype=np.int64)
        undo: list[Any] = []
        with _undo_on_failure(undo), w.new_generation() as tmp:
            new_store = store.backup_to(tmp / STORE_FILE)
            store.close()
            vindex = open_backend(src, manifest, mmap=False, use_gpu=False)
            if vindex.kind == "milvus":  # in place; put back below if the generation is not committed
                vindex.delete(gone)
                undo.append(lambda: vindex.insert(new_store.get(gone.tolist()), table.get(gone)))
                new_store.delete(gone)
                keep = ~np.isin(table.ids, gone)
                save_vectors(tmp, table.ids[keep], table.vectors[keep])
            elif vindex.can_remove:
                vindex.remove(gone)
                new_store.delete(gone)
                keep = ~np.isin(table.ids, gone)
                save_vectors(tmp, table.ids[keep], table.vectors[keep])
            else:
                new_store.mark_deleted(gone)
                save_vectors(tmp, table.ids, table.vectors)
            crash_point("store and vectors written")
            if vindex.kind == "faiss":
                vindex.save(tmp)
            crash_point("faiss index written")
            manifest.counts = {"cases": new_store.count(), "vectors": vindex.ntotal,
                               "deleted": new_store.count(include_deleted=True) - new_store.count()}
            manifest.history.append({"op": "remove", "unix": time.time(), "removed": len(gone)})
            manifest.updated_unix = time.time()
            new_store.close()
            manifest.write(tmp)
    log.info("removed %d cases from %s%s", len(gone), index_dir,
             "" if manifest.index_type != "hnsw" else " (tombstoned: run `cxr index rebuild` to compact)")
    return len(gone)


def rebuild_index(index_dir: str | Path, *, index_type: str | None = None, keep_old: bool = False,
                  recall: float | None = None, backend: str | None = None, milvus_uri: str | None = None,
                  lock_timeout: float | None = None) -> BuildReport:
    """Recreate the FAISS index (or Milvus collection) from the stored vectors: compacts tombstones, may change
    the type, tunes again to ``recall`` (default: the target the index was tuned to), and with ``backend``
    moves the vectors to another backend without re-embedding any image."""
    t0 = time.time()
    index_dir = Path(index_dir).resolve()
    with writing(index_dir, lock_timeout=lock_timeout) as w:
        manifest, store, table = _open_parts(_existing(w))
        live = store.all_ids()
        dead = store.deleted_ids()
        requested = index_type or str(manifest.index_params.get("requested", manifest.index_type))
        spec = _spec(len(live), manifest.embed_dim, requested,
                     recall if recall is not None else manifest.index_params.get("recall_target"))
        old_manifest = manifest.model_copy(deep=True)
        if backend is not None or milvus_uri is not None:
            manifest.backend = backend or manifest.backend
            manifest.backend_params = backend_params(manifest.backend, index_dir, milvus_uri)
        with w.new_generation(keep_old=keep_old) as tmp:
            new_store = store.backup_to(tmp / STORE_FILE)
            store.close()
            new_store.delete(dead)
            crash_point("store written")
            manifest.history.append({"op": "rebuild", "unix": time.time(), "compacted": len(dead)})
            _write(tmp, new_store, live, table.get(live), spec, manifest)
        if not keep_old:
            drop_replaced(old_manifest, manifest)
    report = BuildReport(index_dir=str(index_dir), total=len(live), index_type=spec.type, reason=spec.reason,
                         seconds=time.time() - t0)
    log.info("rebuilt %s: %d cases, %d tombstones dropped, %s index", index_dir, len(live), len(dead), spec.type)
    return report
