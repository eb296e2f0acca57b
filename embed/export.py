"""Feature export: datasets -> one parquet row per case with its embedding (``cxr embed``).

Researchers get the embeddings of their own data without touching torch: the file holds
the de-identified case metadata, a fixed-size ``list<float32>`` column ``embedding`` and,
as parquet key-value metadata, the model's sha256, ``embed_dim`` and the
standardization config, so a file always says which model made it.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from embed.errors import CXRError

if TYPE_CHECKING:  # annotations only: pyarrow is imported where it is used
    import pyarrow as pa

    from embed.pipeline import Runner

log = logging.getLogger(__name__)

FEATURES_FORMAT = "cxr-search-features/1"
META_PREFIX = "cxr."


def features_table(records: Sequence[Any], emb: np.ndarray, *, metadata: dict[str, str]):
    """The pyarrow Table of one row per record (see module doc)."""
    import pyarrow as pa

    from embed.pipeline import Runner

    from embed.cases import features_columns

    dim = int(emb.shape[1])
    cols = features_columns(records)  # the case columns, derived from embed.cases.CaseFields
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1), pa.float32())
    cols["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    table = pa.table(cols)
    meta = {f"{META_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()}
    return table.replace_schema_metadata(meta)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write to a temporary file beside ``path`` and rename, so readers never see half a file."""
    import pyarrow.parquet as pq

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def export_features(
    specs: Sequence[str],
    model_path: str | Path,
    out: str | Path,
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str | None = None,
    progress: bool = True,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Load datasets, embed every case, write the parquet; returns a summary dict.

    ``runner`` (an :class:`embed.pipeline.Runner`, e.g. :class:`embed.ray_runner.RayRunner`) drives
    the pipeline; default the local DataLoader runner with ``batch_size`` and ``workers``.
    """
    from embed.datasets import load_datasets
    from embed.inference import Embedder
    from embed.pipeline import embed_paths

    out = Path(out)
    if out.suffix != ".parquet":
        raise CXRError(f"--out must be a .parquet file, not {out}; e.g. --out features.parquet")
    load = load_datasets(list(specs))
    if not load.records:
        raise CXRError(f"no cases found in {', '.join(specs)}: check the paths and kinds (`cxr datasets inspect`)")
    embedder = Embedder.from_checkpoint(model_path, device=device, batch_size=batch_size)
    res = embed_paths(embedder, [r.image_path for r in load.records], batch_size=batch_size, workers=workers,
                      progress=progress, runner=runner)
    kept, emb = res.positions.tolist(), res.vectors
    skipped = [(load.records[f.pos].case_id, f.reason) for f in res.failures]
    if not kept:
        raise CXRError("none of the images could be read; see the warnings above for the reasons")
    metadata = {
        "format": FEATURES_FORMAT,
        "model_sha256": embedder.model_sha256,
        "embed_dim": embedder.embed_dim,
        "std_cfg": json.dumps(embedder.std_cfg.to_dict(), sort_keys=True),
        "std_fingerprint": embedder.std_cfg.fingerprint(),
        "labels": json.dumps(embedder.labels),
        "datasets": json.dumps([str(s) for s in specs]),
        "n_skipped_images": len(skipped),
    }
    table = features_table([load.records[i] for i in kept], emb, metadata=metadata)
    write_parquet_atomic(table, out)
    summary = {
        "out": str(out), "rows": len(kept), "embed_dim": embedder.embed_dim,
        "skipped_images": len(skipped), "skipped_rows": len(load.skipped),
        "skipped_reasons": dict(Counter(r for _, r in skipped)),
    }
    log.info("wrote %d rows (%d-d) to %s; %d unreadable images skipped", len(kept), embedder.embed_dim, out, len(skipped))
    return summary


def read_features(path: str | Path):
    """Read a features file: (DataFrame without the embedding column, embeddings [N,D] float32).

    The DataFrame's ``attrs["cxr"]`` holds the file's metadata (model_sha256, embed_dim, std_cfg ...).
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise CXRError(f"features file {p} not found; write one with `cxr embed --model CKPT KIND:PATH --out {p.name}`")
    table = pq.read_table(p)
    raw = table.schema.metadata or {}
    meta = {k.decode()[len(META_PREFIX):]: v.decode() for k, v in raw.items() if k.decode().startswith(META_PREFIX)}
    if "embedding" not in table.column_names or "embed_dim" not in meta:
        raise CXRError(f"{p} is not a cxr features file (no embedding column / metadata); write it with `cxr embed`")
    dim = int(meta["embed_dim"])
    col = table.column("embedding").combine_chunks()
    emb = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    df = table.drop(["embedding"]).to_pandas()
    df.attrs["cxr"] = meta
    return df, emb
