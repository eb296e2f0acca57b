"""``cxr search``: similar cases for an image or an indexed case id, as a table in the terminal."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


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
    p.add_argument("query", metavar="IMAGE_OR_ID", help="image file, or the id of an indexed case")
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
    res = engine.search(_query(args.query), k=args.k, filters=filters,
                        exclude_same_patient=not args.include_same_patient,
                        same_patient_only=args.same_patient, with_attention=False)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    if not res.hits:
        print("no matching cases (relax the filters?)")
        return 0
    print(_table(res))
    print("\nvote (similarity-weighted share of neighbours with each finding):")
    for name, score in list(res.vote.items())[:10]:
        print(f"  {score:5.2f}  {name}")
    known = {k: v for k, v in res.prognosis.items() if v.known}
    if known:
        print("\noutcomes among the neighbours:")
        for name, o in known.items():
            print(f"  {name}: {o.positive}/{o.known} positive ({o.share:.0%})")
    return 0
