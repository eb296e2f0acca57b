"""``cxr index``: build, extend, shrink, compact and describe a similar-case index."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.commands.embed_cmd import add_runner_flags, make_runner

INDEX_TYPES = ("auto", "flat", "ivf", "ivfsq", "ivfpq", "hnsw", "gpu_cagra", "gpu_ivf_pq")


def _dataset_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="KIND:PATH",
                   help="datasets to index, e.g. covid-chestxray:data/covid-chestxray-dataset kermany:data/chest_xray")
    p.add_argument("--model", type=Path, default=None,
                   help="encoder checkpoint (default: the released model; for add: the model the index was built with)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes that read and standardize images (default: min(4, CPU cores))")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--include-ct", action="store_true", help="covid-chestxray: keep CT rows too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_runner_flags(p)
    g = p.add_argument_group("dicomweb:URL datasets (a PACS; see docs/pacs.md)")
    g.add_argument("--dicomweb-auth", default=None, metavar="USER:PASSWORD",
                   help="HTTP basic credentials of the PACS (better: the CXR_DICOMWEB_AUTH variable)")
    g.add_argument("--dicomweb-token", default=None, metavar="TOKEN",
                   help="bearer token, for cloud DICOM stores (better: the CXR_DICOMWEB_TOKEN variable)")
    g.add_argument("--modality", default=None, help="modalities to search, comma-separated (default CR,DX)")
    g.add_argument("--body-part", default=None, help="BodyPartExamined to ask the PACS for, e.g. CHEST")
    g.add_argument("--study-date-from", default=None, metavar="YYYY-MM-DD", help="first study date")
    g.add_argument("--study-date-to", default=None, metavar="YYYY-MM-DD", help="last study date")


def _lock_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                   help="when another command is changing this index, wait this long for it (default "
                   "CXR_INDEX_LOCK_TIMEOUT or 600; negative: wait for ever), then give up with a message")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build and maintain the similar-case index (FAISS + SQLite metadata)",
        description="An index folder holds the FAISS index, the metadata store (SQLite), the raw embeddings "
        "and a manifest naming the model, in one generation folder named by DIR/CURRENT. Every change writes a new "
        "generation and switches CURRENT atomically, one writer at a time (a second waits), so an interrupted "
        "command leaves the previous index live and a running server moves to the new one between requests. "
        "Images are deduplicated by content: indexing the same files twice adds nothing.",
    )
    sub = parser.add_subparsers(dest="index_command", metavar="ACTION")

    b = sub.add_parser("build", help="embed datasets and write a new index (replaces DIR atomically)",
                       description="Read the datasets (bad rows are skipped and reported), embed every image "
                       "with the model and write a fresh index to --out. Cases already in --out keep their ids "
                       "and, with the same model, are not embedded again.")
    _dataset_flags(b)
    b.add_argument("--out", type=Path, required=True, help="index folder to create or replace")
    b.add_argument("--index-type", choices=INDEX_TYPES, default="auto",
                   help="FAISS index: auto (exact up to 20k cases, then IVF; IVF-PQ when over the memory budget "
                   "CXR_INDEX_MEMORY_GB: IVF-SQ8, then IVF-PQ), flat (exact), ivf, ivfsq, ivfpq or hnsw (fast, but "
                   "removal needs a rebuild); with --backend milvus the same names map to FLAT, IVF_FLAT, IVF_PQ, "
                   "HNSW, plus gpu_cagra and gpu_ivf_pq on a Milvus server with GPUs")
    _recall_flag(b)
    b.add_argument("--keep-old", action="store_true", help="keep the previous index as DIR.old")
    _lock_flag(b)
    b.add_argument("--backend", choices=("faiss", "milvus"), default="faiss",
                   help="where the vectors live: faiss (a file in the index folder, default) or milvus "
                   "(a collection at --milvus-uri; filters run inside Milvus)")
    b.add_argument("--milvus-uri", default=None, metavar="URI",
                   help="with --backend milvus: a Milvus Lite file such as ./cases.db (embedded, one process) or "
                   "http://host:19530 (Milvus standalone or cluster); default OUT.milvus.db beside the folder")
    b.set_defaults(func=run)

    a = sub.add_parser("add", help="add new datasets to an existing index (same model)",
                       description="Embed only the images not yet in the index (by content hash) and add them.")
    _dataset_flags(a)
    a.add_argument("--index", type=Path, required=True, help="existing index folder")
    _lock_flag(a)
    a.set_defaults(func=run)

    r = sub.add_parser("remove", help="remove cases by id or by source",
                       description="Remove cases. Flat and IVF indices drop the vectors at once; HNSW indices "
                       "hide them (tombstones) until `cxr index rebuild`.")
    r.add_argument("--index", type=Path, required=True, help="index folder")
    r.add_argument("--ids", type=int, nargs="+", default=None, help="case ids to remove")
    r.add_argument("--source", nargs="+", default=None, help="remove every case of these sources")
    _lock_flag(r)
    r.set_defaults(func=run)

    rb = sub.add_parser("rebuild", help="recreate the FAISS index from the stored vectors (compact, change type)",
                        description="Rebuild the FAISS index from the embeddings kept in the folder, without "
                        "re-reading images: drops tombstoned cases and re-applies the index-type rule "
                        "(or --index-type).")
    rb.add_argument("--index", type=Path, required=True, help="index folder")
    rb.add_argument("--index-type", choices=INDEX_TYPES, default=None, help="new index type (default: as built)")
    rb.add_argument("--keep-old", action="store_true", help="keep the previous index as DIR.old")
    _lock_flag(rb)
    _recall_flag(rb)
    rb.add_argument("--backend", choices=("faiss", "milvus"), default=None,
                    help="move the vectors to this backend (no image is read again; default: as built)")
    rb.add_argument("--milvus-uri", default=None, metavar="URI",
                    help="with --backend milvus: Milvus Lite file (./cases.db) or http://host:19530")
    rb.set_defaults(func=run)

    t = sub.add_parser("tune", help="tune the search knobs (nprobe, efSearch, re-rank depth) to a recall target",
                       description="Hold out a sample of the indexed vectors as queries, find their exact "
                       "neighbours, sweep the index's search knobs and keep the fastest setting whose recall@k "
                       "reaches the target. Only the manifest changes; the engine searches with the new knobs "
                       "when it next opens the index. Builds and rebuilds tune automatically.")
    t.add_argument("--index", type=Path, required=True, help="index folder")
    _recall_flag(t)
    t.add_argument("-k", type=int, default=10, help="neighbours the recall is measured on (default 10)")
    t.add_argument("--queries", type=int, default=300, help="indexed vectors held out as queries (default 300)")
    t.add_argument("--json", action="store_true", help="print JSON")
    t.set_defaults(func=run)

    s = sub.add_parser("stats", help="counts per source, finding, view and sex; index type; size on disk",
                       description="Describe an index folder.")
    s.add_argument("--index", type=Path, required=True, help="index folder")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run)

    v = sub.add_parser("verify", help="check every index file against its checksum, and SQLite's integrity",
                       description="Compare each file of the live generation with the size and sha256 its "
                       "manifest recorded (and the manifest with the one CURRENT recorded), then run SQLite's "
                       "quick_check. Exit 0 when all is well, 1 when something is damaged.")
    v.add_argument("--index", type=Path, required=True, help="index folder")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=run)
    parser.set_defaults(func=run, _index_parser=parser)


def _recall(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a recall target is a number in (0, 1], not {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a recall target is a number in (0, 1], not {text}")
    return value


def _recall_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recall", type=_recall, default=None, metavar="R",
                   help="recall@10 the approximate index is tuned to (default: the index's previous target, "
                   "else 0.95)")


def _print_tuning(tuning: dict[str, Any]) -> None:
    knobs = ", ".join(f"{k}={v}" for k, v in tuning["params"].items()) or "exact search (nothing to tune)"
    print(f"tuned: {knobs}: recall@{tuning['k']} {tuning['recall']:.4f} (target {tuning['recall_target']}"
          f"{'' if tuning['target_met'] else ', NOT reached'}), p50 {tuning['p50_ms']:.3f} ms "
          f"on {tuning['queries']} held-out indexed vectors")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_stats(st: dict[str, Any]) -> None:
    print(f"cases: {st['cases']} ({st['patients']} patients; {st['deleted']} removed, awaiting rebuild)")
    params = {k: v for k, v in st["index_params"].items() if k != "tuning"}
    print(f"index: {st['index_type']} {json.dumps(params)}; embedding size {st['embed_dim']}; "
          f"model {st['model_sha256'][:12]}; {_human(st['size_bytes'])} on disk")
    if st["index_params"].get("tuning"):
        _print_tuning(st["index_params"]["tuning"])
    if st.get("backend") == "milvus":
        print(f"vectors in Milvus: {st['milvus']['uri']} collection {st['milvus']['collection']}")
    for title, key in (("source", "by_source"), ("view", "by_view"), ("sex", "by_sex"), ("finding", "by_finding")):
        counts = st[key]
        print(f"by {title}:")
        for name, n in list(counts.items())[:25]:
            print(f"  {n:8d}  {name}")
        if len(counts) > 25:
            print(f"  ... {len(counts) - 25} more")


def _report(rep: Any) -> None:
    print(rep.summary())
    if rep.unreadable:
        print(f"unreadable images ({len(rep.unreadable)}), first ones:")
        for ref, reason in rep.unreadable[:10]:
            print(f"  {ref}: {reason}")


def _dicomweb_opts(args: argparse.Namespace) -> dict[str, Any]:
    """The dicomweb reader's options from the flags; unset ones are left out."""
    names = {"dicomweb_auth": "dicomweb_auth", "dicomweb_token": "dicomweb_token", "modality": "modality",
             "body_part": "body_part", "study_date_from": "date_from", "study_date_to": "date_to"}
    opts = {dest: getattr(args, flag) for flag, dest in names.items() if getattr(args, flag, None)}
    if getattr(args, "no_progress", False):
        opts["progress"] = False
    return opts


def _known_refs(index_dir: Path, source: str) -> set[str]:
    """Case ids of ``source`` already in the index, so the PACS reader skips them before fetching."""
    from index.errors import IndexMissingError
    from index.generations import pin
    from index.store import STORE_FILE, SQLiteStore

    try:
        pinned = pin(index_dir)  # the live generation (a hint only: the add itself deduplicates again)
    except IndexMissingError:
        return set()
    try:
        store = SQLiteStore(pinned.path / STORE_FILE, read_only=True)
        try:
            return store.refs_for_source(source)
        finally:
            store.close()
    finally:
        pinned.close()


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "index_command", None)
    if not action:
        args._index_parser.print_help()
        return 0
    from index import builder

    opts: dict[str, Any] = {"include_ct": True} if getattr(args, "include_ct", False) else {}
    opts.update(_dicomweb_opts(args))
    if action == "add" and any(s.lower().startswith("dicomweb:") for s in args.specs):
        opts["known_refs"] = _known_refs(args.index, "dicomweb")
    if action == "build":
        rep = builder.build_index(
            args.specs, args.out, model=args.model, index_type=args.index_type, batch_size=args.batch_size,
            workers=args.workers, keep_old=args.keep_old, progress=not args.no_progress, dataset_opts=opts,
            lock_timeout=args.lock_timeout, recall=args.recall,
            backend=args.backend, milvus_uri=args.milvus_uri, runner=make_runner(args),
            embedder=builder.open_embedder(args.model, device=args.device, batch_size=args.batch_size),
        )
        _report(rep)
    elif action == "add":
        rep = builder.add_to_index(
            args.index, args.specs, model=args.model, batch_size=args.batch_size, workers=args.workers,
            progress=not args.no_progress, dataset_opts=opts, runner=make_runner(args), lock_timeout=args.lock_timeout,
            embedder=(builder.open_embedder(args.model, device=args.device, batch_size=args.batch_size)
                      if args.model else None),
        )
        _report(rep)
    elif action == "remove":
        if not args.ids and not args.source:
            from embed.errors import CXRError

            raise CXRError("say what to remove: --ids ID ... or --source NAME ...")
        n = builder.remove_from_index(args.index, ids=args.ids, sources=args.source,
                                      lock_timeout=args.lock_timeout)
        print(f"removed {n} cases from {args.index}")
    elif action == "rebuild":
        rep = builder.rebuild_index(args.index, index_type=args.index_type, keep_old=args.keep_old,
                                    recall=args.recall, backend=args.backend, milvus_uri=args.milvus_uri,
                                    lock_timeout=args.lock_timeout)
        print(f"rebuilt {rep.index_dir}: {rep.total} cases, {rep.index_type} index ({rep.reason}); {rep.seconds:.1f} s")
    elif action == "tune":
        from index.tuning import tune_index

        tuning = tune_index(args.index, recall=args.recall, k=args.k, queries=args.queries).to_manifest()
        if args.json:
            print(json.dumps(tuning, indent=2))
        else:
            _print_tuning(tuning)
    elif action == "stats":
        from index.describe import index_stats

        st = index_stats(args.index)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            _print_stats(st)
    elif action == "verify":
        return _verify(args)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from index.errors import IndexCorruptError
    from index.generations import live_generation, verify_index

    try:
        live_generation(args.index)  # no index at all: the usual error, exit 2
    except IndexCorruptError:
        pass  # a damaged pointer is reported below like any other damage
    rep = verify_index(args.index)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"index {args.index}, generation {rep['generation']}: {'OK' if rep['ok'] else 'DAMAGED'}")
        for name, status in dict(rep["files"]).items():
            print(f"  {status:18s} {name}")
        print(f"  {str(rep['sqlite_quick_check'])[:18]:18s} SQLite quick_check")
        for line in [*rep["problems"], *rep["notes"]]:
            print(f"  - {line}")
    return 0 if rep["ok"] else 1
