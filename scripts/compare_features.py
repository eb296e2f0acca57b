#!/usr/bin/env python
"""Compare two `cxr embed` feature files: same rows, same metadata columns, embeddings within a tolerance.

Used to prove that a refactoring of the embedding pipeline leaves its output unchanged:
rows are matched by ``case_id`` (so row order does not matter), every non-embedding column
must be equal, and the largest absolute difference of any embedding value must not exceed
``--tol``. Prints one JSON object; exits 1 when the files differ beyond that, 2 on bad input.

    python scripts/compare_features.py baseline.parquet new.parquet --tol 1e-5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _norm(v: object) -> object:
    """Cell value in a form that compares equal across pandas' nan/None/ndarray spellings."""
    if isinstance(v, np.ndarray):
        return tuple(_norm(x) for x in v.tolist())
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas comes with the project
        pass
    return v


def compare(a_path: Path, b_path: Path, tol: float) -> dict:
    """The comparison as a dict; ``equal`` says whether the files match within ``tol``."""
    from embed.export import read_features

    a_df, a_emb = read_features(a_path)
    b_df, b_emb = read_features(b_path)
    a_ids, b_ids = a_df["case_id"].tolist(), b_df["case_id"].tolist()
    res: dict = {"a": str(a_path), "b": str(b_path), "rows_a": len(a_ids), "rows_b": len(b_ids), "tol": tol}
    if len(set(a_ids)) != len(a_ids) or len(set(b_ids)) != len(b_ids):
        raise SystemExit("case_id is not unique in one of the files: cannot match rows")
    only_a, only_b = sorted(set(a_ids) - set(b_ids)), sorted(set(b_ids) - set(a_ids))
    res["only_in_a"], res["only_in_b"] = len(only_a), len(only_b)
    res["same_row_set"] = not only_a and not only_b
    common = sorted(set(a_ids) & set(b_ids))
    ia = {c: i for i, c in enumerate(a_ids)}
    ib = {c: i for i, c in enumerate(b_ids)}
    pa, pb = [ia[c] for c in common], [ib[c] for c in common]
    res["same_row_order"] = a_ids == b_ids
    res["same_columns"] = list(a_df.columns) == list(b_df.columns)
    col_diffs = {}
    for col in a_df.columns:
        if col not in b_df.columns:
            continue
        va = [_norm(v) for v in a_df[col].iloc[pa].tolist()]
        vb = [_norm(v) for v in b_df[col].iloc[pb].tolist()]
        n = sum(x != y for x, y in zip(va, vb))
        if n:
            col_diffs[col] = n
    res["columns_differing"] = col_diffs
    meta_a, meta_b = a_df.attrs.get("cxr", {}), b_df.attrs.get("cxr", {})
    res["metadata_differing"] = sorted(k for k in set(meta_a) | set(meta_b) if meta_a.get(k) != meta_b.get(k))
    res["n_skipped_images"] = [meta_a.get("n_skipped_images"), meta_b.get("n_skipped_images")]
    if a_emb.shape[1] != b_emb.shape[1]:
        res["max_abs_diff"] = None
        res["equal"] = False
        return res
    diff = np.abs(a_emb[pa].astype(np.float64) - b_emb[pb].astype(np.float64)) if common else np.zeros((0, 0))
    res["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    res["equal"] = bool(
        res["same_row_set"] and res["same_columns"] and not col_diffs
        and res["n_skipped_images"][0] == res["n_skipped_images"][1] and res["max_abs_diff"] <= tol
    )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="reference features file (e.g. the baseline)")
    ap.add_argument("b", type=Path, help="features file to check")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest allowed absolute difference (default 1e-5)")
    args = ap.parse_args(argv)
    from embed.errors import CXRError

    try:
        res = compare(args.a, args.b, args.tol)
    except CXRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=1))
    return 0 if res["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
