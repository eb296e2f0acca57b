"""Load exported features and shape them into one modelling table.

`cxr embed` writes one row per image. A prognosis outcome belongs to a
patient, so this module (1) drops rows whose target is unknown, counting them,
(2) keeps frontal views by default, (3) reduces each patient to one row
(their earliest image, or the mean embedding), and (4) encodes the tabular
columns as numbers or categories that the pipelines in :mod:`.model` impute
inside the cross-validation folds. Nothing here fits statistics on the data:
everything learned from the data happens in the folds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embed.errors import CXRError

log = logging.getLogger(__name__)

#: Prognosis columns written by `cxr embed` (embed.datasets.PROGNOSIS_FIELDS).
PROGNOSIS_COLUMNS = ("survival", "intubated", "intubation_present", "went_icu", "in_icu",
                     "needed_supplemental_O2", "extubated")
#: Columns that are never a valid target or tabular feature.
RESERVED_COLUMNS = ("embedding", "case_id", "image_path", "patient", "findings")
AGGREGATIONS = ("first", "mean", "image")
LATERAL_VIEWS = {"L", "LATERAL", "LL", "RL", "LAT"}
IMAGE_PREFIX = "img_"


class TransferDataError(CXRError):
    """The features file cannot support the requested transfer experiment."""

    code = "transfer_data"


@dataclass
class TransferData:
    """One modelling table: X holds ``img_*`` image columns and the tabular columns."""

    X: pd.DataFrame
    y: np.ndarray                 # int 0/1
    groups: np.ndarray            # patient id per row (rows without a patient get their own group)
    image_columns: list[str]
    numeric_columns: list[str]
    categorical_columns: list[str]
    target: str
    aggregate: str
    counts: dict = field(default_factory=dict)

    @property
    def tabular_columns(self) -> list[str]:
        return self.numeric_columns + self.categorical_columns


def read_features_file(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a `cxr embed` parquet: (metadata frame, embeddings [N, D] float32).

    The file's layout is read by :func:`embed.export.read_features`, the writer's own reader.
    """
    from embed.errors import CXRError
    from embed.export import read_features

    path = Path(path)
    if not path.is_file():
        raise TransferDataError(f"features file not found: {path} (write one with `cxr embed --out {path.name}`)")
    try:
        return read_features(path)
    except CXRError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
        raise TransferDataError(f"{path} is not a readable parquet file ({exc}); write it with `cxr embed`") from exc


def features_metadata(path: str | Path) -> dict:
    """Key/value metadata of the parquet (model sha etc.), decoded; empty when there is none."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
    except Exception:  # metadata is informative only
        return {}
    out = {}
    for k, v in meta.items():
        key = k.decode("utf-8", "replace")
        if key.startswith("pandas") or key == "ARROW:schema":
            continue
        key = key.removeprefix("cxr.")
        out[key] = v.decode("utf-8", "replace")
    return out


def to_bool_target(values: pd.Series) -> pd.Series:
    """Map a target column to True/False/NA. Accepts bools, 0/1 and Y/N-style strings; others are unknown."""
    truthy = {"y", "yes", "true", "1", "1.0", "t"}
    falsy = {"n", "no", "false", "0", "0.0", "f"}

    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return pd.NA
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        s = str(v).strip().lower()
        if s in truthy:
            return True
        if s in falsy:
            return False
        return pd.NA

    return values.map(one).astype("boolean")


def encode_tabular(df: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Encode tabular columns: sex -> is_male (1/0/NaN), bools -> 1/0/NaN, numbers as float, text as category.

    Missing values stay missing (NaN / None): they are imputed inside the folds.
    """
    out = pd.DataFrame(index=df.index)
    numeric: list[str] = []
    categorical: list[str] = []
    for col in columns:
        s = df[col]
        if col == "sex":
            mapped = s.map(lambda v: {"M": 1.0, "F": 0.0}.get(str(v).strip().upper()[:1], np.nan)
                           if v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v))
                           else np.nan)
            out["sex_male"] = mapped.astype(float)
            numeric.append("sex_male")
        elif pd.api.types.is_bool_dtype(s) or str(s.dtype) == "boolean":
            out[col] = s.astype("Float64").astype(float)
            numeric.append(col)
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype(float)
            numeric.append(col)
        else:
            as_num = pd.to_numeric(s, errors="coerce")
            if as_num.notna().sum() == s.notna().sum() and s.notna().any():
                out[col] = as_num.astype(float)
                numeric.append(col)
            else:
                out[col] = s.astype(object).where(s.notna(), None)
                categorical.append(col)
    return out, numeric, categorical


def _is_lateral(view) -> bool:
    return isinstance(view, str) and view.strip().upper() in LATERAL_VIEWS


def prepare(
    df: pd.DataFrame,
    embeddings: np.ndarray,
    target: str,
    tabular: list[str] | None = None,
    *,
    aggregate: str = "first",
    frontal_only: bool = True,
    exclude_if: list[str] | None = None,
) -> TransferData:
    """Build the modelling table for ``target`` (see module docstring for the steps and why)."""
    if len(df) != len(embeddings):
        raise TransferDataError(f"{len(df)} metadata rows but {len(embeddings)} embeddings: the file is inconsistent")
    if aggregate not in AGGREGATIONS:
        raise TransferDataError(f"unknown aggregation {aggregate!r}: choose one of {', '.join(AGGREGATIONS)}")
    usable = [c for c in df.columns if c not in RESERVED_COLUMNS]
    if target not in df.columns or target in RESERVED_COLUMNS:
        known = [c for c in PROGNOSIS_COLUMNS if c in df.columns]
        raise TransferDataError(
            f"unknown target column {target!r}: prognosis columns in this file are {known}; all columns: {usable}"
        )
    tabular = [c for c in (tabular or []) if c]
    bad = [c for c in tabular if c not in df.columns or c in RESERVED_COLUMNS]
    if bad:
        raise TransferDataError(f"unknown tabular column(s) {bad}: choose from {usable}")
    exclude_if = [c for c in (exclude_if or []) if c]
    bad = [c for c in exclude_if if c not in df.columns or c in RESERVED_COLUMNS]
    if bad:
        known = [c for c in PROGNOSIS_COLUMNS if c in df.columns]
        raise TransferDataError(f"unknown --exclude-if column(s) {bad}: choose boolean columns such as {known}")
    if target in tabular:
        raise TransferDataError(f"the target {target!r} cannot also be a tabular feature: remove it from --tabular")

    counts: dict = {"rows_in_file": int(len(df))}
    work = df.reset_index(drop=True).copy()
    emb = np.asarray(embeddings, dtype=np.float32)
    if frontal_only and "view" in work.columns:
        keep = ~work["view"].map(_is_lateral).to_numpy(bool)
        counts["dropped_lateral"] = int((~keep).sum())
        work, emb = work[keep].reset_index(drop=True), emb[keep]
    y_all = to_bool_target(work[target])
    known = y_all.notna().to_numpy()
    counts["dropped_unknown_target"] = int((~known).sum())
    if counts["dropped_unknown_target"]:
        log.info("dropped %d rows whose %s is unknown", counts["dropped_unknown_target"], target)
    work, emb = work[known].reset_index(drop=True), emb[known]
    work["_y"] = y_all[known].astype(bool).to_numpy()

    # Rows without a patient are their own group: the most conservative choice available.
    patient = work["patient"] if "patient" in work.columns else pd.Series([None] * len(work))
    no_patient = patient.isna().to_numpy()
    counts["rows_without_patient"] = int(no_patient.sum())
    ids = work["case_id"].astype(str) if "case_id" in work.columns else pd.Series(work.index.astype(str))
    work["_group"] = np.where(no_patient, "row:" + ids.to_numpy(), patient.astype(str).to_numpy())

    inconsistent = work.groupby("_group")["_y"].nunique()
    counts["patients_with_conflicting_target"] = int((inconsistent > 1).sum())
    if counts["patients_with_conflicting_target"]:
        log.warning("%d patients have both True and False %s across images; a patient counts as positive if any "
                    "image is", counts["patients_with_conflicting_target"], target)
        work["_y"] = work.groupby("_group")["_y"].transform("max")

    if exclude_if:
        work, emb = _exclude_present_at_baseline(work, emb, exclude_if, counts)

    img_cols = [f"{IMAGE_PREFIX}{i}" for i in range(emb.shape[1])]
    if aggregate == "image":
        tab_src, emb_out = work, emb
    else:
        first_idx = _first_rows(work)
        tab_src = work.loc[first_idx].reset_index(drop=True)
        if aggregate == "first":
            emb_out = emb[first_idx]
        else:
            codes, uniq = pd.factorize(work["_group"], sort=True)
            sums = np.zeros((len(uniq), emb.shape[1]), dtype=np.float64)
            np.add.at(sums, codes, emb)
            means = sums / np.bincount(codes)[:, None]
            pos = {g: i for i, g in enumerate(uniq)}
            emb_out = means[[pos[g] for g in tab_src["_group"]]].astype(np.float32)

    tab, numeric, categorical = encode_tabular(tab_src, tabular)
    X = pd.concat([pd.DataFrame(emb_out, columns=img_cols), tab.reset_index(drop=True)], axis=1)
    y = tab_src["_y"].astype(int).to_numpy()
    groups = tab_src["_group"].to_numpy()
    counts.update(rows=int(len(X)), patients=int(len(np.unique(groups))), positives=int(y.sum()),
                  negatives=int(len(y) - y.sum()))
    counts["positive_patients"] = int(len(np.unique(groups[y == 1])))
    counts["missing_tabular"] = {c: int(tab[c].isna().sum()) for c in numeric + categorical}
    return TransferData(X=X, y=y, groups=groups, image_columns=img_cols, numeric_columns=numeric,
                        categorical_columns=categorical, target=target, aggregate=aggregate, counts=counts)


def _first_rows(work: pd.DataFrame) -> np.ndarray:
    """Index of each group's earliest row (by day_offset; unknown offsets last, then file order), sorted by group."""
    keys = ["_group", "day_offset"] if "day_offset" in work.columns else ["_group"]
    order = work.sort_values(keys, kind="stable", na_position="last").index.to_numpy()
    return work.loc[order].groupby("_group", sort=True).head(1).index.to_numpy()


def _exclude_present_at_baseline(work: pd.DataFrame, emb: np.ndarray, columns: list[str], counts: dict
                                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Drop patients whose earliest image already has any of ``columns`` True (outcome present at baseline).

    E.g. ``intubated`` with ``intubation_present``: a patient intubated on their first film
    is detection, not prognosis. Unknown values do not exclude.
    """
    first = work.loc[_first_rows(work)]
    present = np.zeros(len(first), dtype=bool)
    for col in columns:
        present |= to_bool_target(first[col]).fillna(False).to_numpy(bool)
    drop_groups = set(first["_group"].to_numpy()[present])
    keep = ~work["_group"].isin(drop_groups).to_numpy()
    counts["dropped_present_at_baseline"] = {"patients": len(drop_groups), "rows": int((~keep).sum()),
                                             "columns": list(columns)}
    log.info("dropped %d patients whose first image already has %s", len(drop_groups), " or ".join(columns))
    return work[keep].reset_index(drop=True), emb[keep]


def parse_columns(spec: str | None) -> list[str]:
    """``"age,sex, day_offset"`` -> ``["age", "sex", "day_offset"]``."""
    return [c.strip() for c in (spec or "").split(",") if c.strip()]
