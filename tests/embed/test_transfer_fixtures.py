"""Generators of `cxr embed`-shaped feature files whose answer is known (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PROGNOSIS = ("survival", "intubated", "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2",
             "extubated")


def make_frame(
    n_patients: int = 120,
    images_per_patient: int = 2,
    dim: int = 256,
    *,
    seed: int = 0,
    signal: str = "image",
    unknown_share: float = 0.0,
    missing_share: float = 0.0,
    lateral_share: float = 0.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-image rows. Embeddings have a low-rank structure (8 latent factors + noise), like real ones.

    ``signal``: "image" -> went_icu depends on latent factor 0 only; "random" -> went_icu is a coin;
    "age" -> went_icu depends on age only. survival is always a coin.
    """
    rng = np.random.default_rng(seed)
    k = 8
    latent = rng.normal(size=(n_patients, k))
    basis = np.linalg.qr(rng.normal(size=(dim, k)))[0].T * 3.0
    age = rng.uniform(20, 90, size=n_patients)
    if signal == "image":
        y = latent[:, 0] + 0.2 * rng.normal(size=n_patients) > 0
    elif signal == "age":
        y = (age - 55) / 10 + 0.3 * rng.normal(size=n_patients) > 0
    else:
        y = rng.random(n_patients) < 0.4
    rows, embs = [], []
    for p in range(n_patients):
        for i in range(images_per_patient):
            e = latent[p] @ basis + 0.3 * rng.normal(size=dim)
            embs.append(e / np.linalg.norm(e))
            row = {
                "case_id": f"synthetic/p{p}_{i}.png",
                "image_path": f"/nowhere/p{p}_{i}.png",
                "source": "synthetic",
                "patient": f"p_{p:016x}",
                "findings": ["COVID-19"],
                "view": "PA",
                "sex": "M" if rng.random() < 0.6 else "F",
                "age": float(age[p]),
                "day_offset": float(i * 3),
            }
            for f in PROGNOSIS:
                row[f] = None
            row["went_icu"] = bool(y[p])
            row["survival"] = bool(rng.random() < 0.7)
            rows.append(row)
    df = pd.DataFrame(rows)
    emb = np.asarray(embs, dtype=np.float32)
    n = len(df)
    for f in PROGNOSIS:
        df[f] = df[f].astype("boolean")
    if unknown_share:
        df.loc[rng.random(n) < unknown_share, "went_icu"] = pd.NA
    if missing_share:
        for col in ("age", "day_offset"):
            df.loc[rng.random(n) < missing_share, col] = np.nan
        df.loc[rng.random(n) < missing_share, "sex"] = None
    if lateral_share:
        df.loc[rng.random(n) < lateral_share, "view"] = "LATERAL"
    return df, emb


def write_parquet(df: pd.DataFrame, emb: np.ndarray, path: Path) -> Path:
    """Write the documented layout: metadata columns + "embedding" as fixed-size list<float32>."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    flat = pa.array(emb.reshape(-1), type=pa.float32())
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]))
    # the key/value metadata embed.export writes (cxr.* keys)
    meta = {b"cxr.format": b"cxr-search-features/1", b"cxr.model_sha256": b"synthetic",
            b"cxr.embed_dim": str(emb.shape[1]).encode()}
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)
    return path
