"""``cxr search``: similar cases for an image or an indexed case id, as a table in the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only
    from index.schemas import OODFlag


def _ood_line(ood: OODFlag) -> str:
    """One line on the guard's verdict; a flagged query's line starts with WARNING."""
    if ood.flagged:
        return (f"WARNING: {ood.reason} (in-distribution score {ood.score:.3f}); the neighbours and vote below "
                "are unreliable for this image")
    return f"in-distribution score {ood.score:.3f} (not flagged)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the most similar indexed cases to an image (or a case id)",
        description="Embed the query image (PNG, JPEG or DICOM) with the index's model and print the k most "
        "similar cases (rank, id, similarity, source, view, sex, age, findings, prognosis), the "
        "similarity-weighted vote of their findings and a summary of their outcomes. Filters restrict the "
        "candidates before the search, so k hits come back whenever k cases match. Cases of the query's own "
        "patient are left out (when known: indexed case, indexed image, DICOM with a patient id).",
    )
    p.add_argument("query", metavar="IMAGE_OR_ID", nargs="?", default=None,
                   help="image file, or the id of an indexed case (or search with a PACS study: --dicomweb)")
    p.add_argument("--index", type=Path, required=True, help="index folder (from `cxr index build`)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: the one the index was built with)")
    p.add_argument("-k", type=int, default=10, help="number of similar cases (default 10)")
    p.add_argument("--view", nargs="+", default=None, help="only these views, e.g. PA AP")
    p.add_argument("--sex", choices=("M", "F"), default=None, help="only this sex")
    p.add_argument("--age-min", type=float, default=None, help="youngest age in years")
    p.add_argument("--age-max", type=float, default=None, help="oldest age in years")
    p.add_argument("--source", nargs="+", default=None, help="only these sources, e.g. covid-chestxray")
    p.add_argument("--finding", nargs="+", default=None, help="only cases with any of these findings")
    p.add_argument("--same-patient", action="store_true",
                   help="only the same patient's other images (prior studies) instead of excluding them")
    p.add_argument("--include-same-patient", action="store_true",
                   help="do not leave out the query patient's other images")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g = p.add_argument_group("query from a PACS (DICOMweb; see docs/pacs.md)")
    g.add_argument("--dicomweb", metavar="URL", default=None, help="DICOMweb root of the PACS, e.g. "
                   "http://pacs:8042/dicom-web; the query film is fetched with WADO-RS")
    g.add_argument("--study", metavar="UID", default=None, help="Study Instance UID of the query (its PA film, "
                   "else AP, else the first CR/DX image)")
    g.add_argument("--series", metavar="UID", default=None, help="Series Instance UID of the query")
    g.add_argument("--dicomweb-auth", metavar="USER:PASSWORD", default=None,
                   help="credentials (better: the CXR_DICOMWEB_AUTH variable)")
    g.add_argument("--dicomweb-token", metavar="TOKEN", default=None, help="bearer token (or CXR_DICOMWEB_TOKEN)")
    g.add_argument("--store", action="store_true", help="send the similar cases back to the same PACS as a "
                   "Key Object Selection document (STOW-RS)")
    g.add_argument("--kos-out", type=Path, default=None, metavar="FILE",
                   help="also write the Key Object Selection document to this DICOM file")
    p.set_defaults(func=run)


def _query(raw: str) -> Any:
    """An existing file is an image; otherwise an integer is a case id."""
    if Path(raw).exists():
        return raw
    try:
        return int(raw)
    except ValueError:
        from index.errors import QueryError

        raise QueryError(f"{raw} is neither an image file nor a case id (an integer)") from None


def _fmt(v: Any, width: int) -> str:
    s = "-" if v is None or v == "" else str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def _table(res: Any) -> str:
    cols = [("rank", 4), ("id", 8), ("sim", 6), ("source", 18), ("view", 9), ("sex", 3), ("age", 5),
            ("findings", 34), ("prognosis", 30)]
    lines = ["  ".join(name.ljust(w) for name, w in cols)]
    for h in res.hits:
        c = h.case
        prog = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in c.prognosis.items() if v is not None)
        age = None if c.age is None else f"{c.age:g}"
        vals = [h.rank, c.id, f"{h.similarity:.3f}", c.source, c.view, c.sex, age, "|".join(c.findings), prog]
        lines.append("  ".join(_fmt(v, w).ljust(w) for v, (_, w) in zip(vals, cols)))
    return "\n".join(lines)


def _search_pacs(args: argparse.Namespace, engine: Any, filters: Any, flags: dict[str, bool]) -> Any:
    """Search with a PACS study or series; the KOS note goes back only to that same PACS."""
    from embed.dicomweb import PacsAuth, connect
    from index.errors import QueryError
    from index.pacs import search_study

    if not args.dicomweb or not (args.study or args.series) or args.query is not None:
        raise QueryError("a PACS query is --dicomweb URL with --study UID or --series UID (and no image)")
    client = connect(args.dicomweb, PacsAuth.from_options(args.dicomweb_auth, args.dicomweb_token))
    out = search_study(engine, client, study=args.study, series=args.series, k=args.k, filters=filters,
                       make_kos=bool(args.kos_out), store=args.store, **flags)
    if args.kos_out is not None:
        out.kos.save_as(args.kos_out, enforce_file_format=True)
    if out.kos is not None:
        where = "stored in the PACS (STOW-RS)" if out.stored else f"written to {args.kos_out}"
        print(f"key object note: {out.referenced} similar cases of this PACS referenced; {where}",
              file=sys.stderr)
    return out.result


def run(args: argparse.Namespace) -> int:
    from index.engine import SearchEngine
    from index.schemas import SearchFilters

    try:
        filters = SearchFilters(view=args.view, sex=args.sex, age_min=args.age_min, age_max=args.age_max,
                                source=args.source, finding=args.finding)
    except ValueError as exc:
        from index.errors import QueryError

        raise QueryError(f"bad filter: {exc}") from None
    engine = SearchEngine.open(args.index, model_path=args.model)
    flags = {"exclude_same_patient": not args.include_same_patient, "same_patient_only": args.same_patient}
    if args.dicomweb or args.study or args.series:
        res = _search_pacs(args, engine, filters, flags)
    elif args.query is None:
        from index.errors import QueryError

        raise QueryError("name the query: an image file, a case id, or --dicomweb URL --study UID")
    else:
        res = engine.search(_query(args.query), k=args.k, filters=filters, with_attention=False, **flags)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    if res.ood is not None:
        print(_ood_line(res.ood))
    if not res.hits:
        print("no matching cases (relax the filters?)")
        return 0
    print(_table(res))
    if res.calibrated:
        print("\nvote (calibrated probability, raw similarity-weighted share, neighbours with the finding):")
        for name, c in list(res.calibrated.items())[:10]:
            prob = "   - " if c.probability is None else f"{c.probability:5.2f}"
            print(f"  {prob}  (raw {c.raw:4.2f}, {c.neighbours}/{c.of} neighbours)  {name}")
    else:
        print("\nvote (similarity-weighted share of neighbours with each finding):")
        for name, score in list(res.vote.items())[:10]:
            print(f"  {score:5.2f}  {name}")
    known = {k: v for k, v in res.prognosis.items() if v.known}
    if known:
        print("\noutcomes among the neighbours:")
        for name, o in known.items():
            print(f"  {name}: {o.positive}/{o.known} positive ({o.share:.0%})")
    return 0
