"""``cxr datasets``: list the dataset kinds and inspect datasets before training or indexing."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list dataset kinds; inspect datasets (counts per source, finding, view, sex, prognosis)",
        description="Read datasets named KIND:PATH (e.g. covid-chestxray:data/covid-chestxray-dataset "
        "kermany:data/chest_xray imagefolder:data/nih-chestxray14-subset) and report what they hold "
        "and which rows were skipped and why. Reader options go after '?' "
        "(imagefolder:PATH?patient_pattern=(\\d{8})_\\d{3}) or as flags below. See docs/datasets.md.",
    )
    sub = parser.add_subparsers(dest="datasets_command", metavar="ACTION")
    kinds = sub.add_parser("kinds", help="list the dataset kinds and their options",
                           description="List every registered dataset reader with its options.")
    kinds.set_defaults(func=run)
    insp = sub.add_parser(
        "inspect",
        help="count records per source, finding, view, sex and prognosis field; report skipped rows",
        description="Read the datasets and print counts per source, finding, view, sex, how many rows "
        "have each prognosis field, and the skipped rows (count per reason; the full list with --skipped).",
    )
    insp.add_argument("specs", nargs="+", metavar="KIND:PATH", help="datasets to read, e.g. kermany:data/chest_xray")
    insp.add_argument("--skipped", action="store_true", help="list every skipped row with its reason")
    insp.add_argument("--include-ct", action="store_true", help="covid-chestxray: keep CT rows too")
    insp.add_argument("--uncertain", choices=("ones", "zeros", "ignore"), default=None,
                      help="chexpert: how to read -1 (uncertain) labels (default: ignore)")
    insp.add_argument("--verify", choices=("exists", "header", "decode"), default=None,
                      help="how hard to check each image: exists, header (magic bytes, default), decode (slow)")
    insp.add_argument("--json", action="store_true", help="print the counts as JSON")
    insp.set_defaults(func=run)
    parser.set_defaults(func=run, _datasets_parser=parser)


def _summary(load: Any) -> dict[str, Any]:
    from embed.datasets import PROGNOSIS_FIELDS

    by_source: dict[str, dict[str, Any]] = {}
    for rec in load.records:
        s = by_source.setdefault(rec.source, {
            "records": 0, "patients": set(), "findings": Counter(), "views": Counter(), "sex": Counter(),
            "prognosis": {f: Counter() for f in PROGNOSIS_FIELDS}, "no_findings_label": 0,
        })
        s["records"] += 1
        if rec.patient:
            s["patients"].add(rec.patient)
        s["findings"].update(rec.findings)
        if not rec.findings:
            s["no_findings_label"] += 1
        s["views"][rec.view or "unknown"] += 1
        s["sex"][rec.sex or "unknown"] += 1
        for f, v in rec.prognosis.items():
            if v is not None:
                s["prognosis"][f]["known"] += 1
                s["prognosis"][f]["yes" if v else "no"] += 1
    out = {}
    for src, s in sorted(by_source.items()):
        out[src] = {
            "records": s["records"],
            "patients": len(s["patients"]),
            "unlabelled": s["no_findings_label"],
            "findings": dict(s["findings"].most_common()),
            "views": dict(s["views"].most_common()),
            "sex": dict(s["sex"].most_common()),
            "prognosis": {f: dict(c) for f, c in s["prognosis"].items() if c},
        }
    return {"sources": out, "records": len(load.records), "skipped": load.skipped_counts()}


def _print_counter(title: str, counts: dict[str, int]) -> None:
    print(f"  {title}:")
    for k, v in counts.items():
        print(f"    {v:7d}  {k}")


def run(args: argparse.Namespace) -> int:
    from embed.datasets import describe_kinds, load_datasets
    from embed.datasets.base import reader_options

    action = getattr(args, "datasets_command", None)
    if action is None:
        args._datasets_parser.print_help()
        return 0
    if action == "kinds":
        for kind, desc in describe_kinds().items():
            opts = ", ".join(reader_options(kind)) or "-"
            print(f"{kind:16s} {desc}\n{'':16s} options: {opts}")
        return 0
    opts = {"include_ct": args.include_ct or None, "uncertain": args.uncertain, "verify": args.verify}
    load = load_datasets(args.specs, **opts)
    summary = _summary(load)
    if args.json:
        if args.skipped:
            summary["skipped_rows"] = [{"ref": s.ref, "reason": s.reason, "detail": s.detail} for s in load.skipped]
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    print(f"{summary['records']} records from {len(summary['sources'])} source(s)")
    for src, s in summary["sources"].items():
        print(f"\n{src}: {s['records']} records, {s['patients']} patients, {s['unlabelled']} without findings")
        _print_counter("findings", s["findings"])
        _print_counter("views", s["views"])
        _print_counter("sex", s["sex"])
        if s["prognosis"]:
            print("  prognosis (rows with a value: yes / no):")
            for f, c in s["prognosis"].items():
                print(f"    {c.get('known', 0):7d}  {f}: {c.get('yes', 0)} / {c.get('no', 0)}")
    total = sum(summary["skipped"].values())
    print(f"\nskipped: {total} rows")
    for reason, n in sorted(summary["skipped"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:7d}  {reason}")
    if args.skipped:
        for s in load.skipped:
            print(f"  {s.ref}: {s.reason}{' (' + s.detail + ')' if s.detail else ''}")
    elif total:
        print("  (list them with --skipped)")
    return 0
