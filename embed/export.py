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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from embed.errors import CXRError

log = logging.getLogger(__name__)

FEATURES_FORMAT = "cxr-search-features/1"
META_PREFIX = "cxr."


class _StandardizedImages(Dataset):
    """Records -> (uint8 [S,S] tensor, index, ok). Reading happens in ``__getitem__`` so that
    DataLoader workers parallelise decoding; unreadable images come back with ``ok=False``."""

    def __init__(self, records: Sequence[Any], std_cfg: Any, use_cache: bool = True) -> None:
        self.records = list(records)
        self.std_cfg = std_cfg
        self.use_cache = use_cache

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        from embed.torchdata import load_standardized_u8

        size = int(self.std_cfg.size)
        try:
            arr = load_standardized_u8(self.records[i].image_path, self.std_cfg, use_cache=self.use_cache)
            return torch.from_numpy(arr), i, ""
        except (CXRError, OSError) as exc:
            return torch.zeros((size, size), dtype=torch.uint8), i, type(exc).__name__


@dataclass
class BatchStream:
    """Iterates standardized batches of records; ``skipped`` fills up as it goes."""

    records: Sequence[Any]
    std_cfg: Any
    batch_size: int = 32
    workers: int = 0
    progress: bool = True
    desc: str = "embed"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[int]]]:
        """Yield (uint8 images [B,S,S], record indices) for the readable images, in record order."""
        loader = DataLoader(
            _StandardizedImages(self.records, self.std_cfg),
            batch_size=max(1, int(self.batch_size)),
            num_workers=max(0, int(self.workers)),
            shuffle=False,
        )
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.records), desc=self.desc, unit="img")
        try:
            for x, idx, reasons in loader:
                ok = [j for j, r in enumerate(reasons) if not r]
                for j, r in enumerate(reasons):
                    if r:
                        self.skipped.append((self.records[int(idx[j])].case_id, r))
                if bar is not None:
                    bar.update(len(idx))
                if ok:
                    yield x[ok].numpy(), [int(idx[j]) for j in ok]
        finally:
            if bar is not None:
                bar.close()
        if self.skipped:
            log.warning(
                "skipped %d unreadable images of %d (%s)",
                len(self.skipped), len(self.records), dict(Counter(r for _, r in self.skipped)),
            )


def embed_records(
    embedder: Any, records: Sequence[Any], *, batch_size: int = 32, workers: int = 0, progress: bool = True
) -> tuple[list[int], np.ndarray, list[tuple[str, str]]]:
    """(indices of embedded records, embeddings [N,D] float32, skipped (case_id, reason))."""
    stream = BatchStream(records, embedder.std_cfg, batch_size, workers, progress)
    kept: list[int] = []
    embs: list[np.ndarray] = []
    for u8, idx in stream:
        e, _ = embedder.embed_batch(u8.astype(np.float32) / 255.0)
        embs.append(e)
        kept.extend(idx)
    emb = np.concatenate(embs) if embs else np.zeros((0, embedder.embed_dim), np.float32)
    return kept, emb, stream.skipped


def features_table(records: Sequence[Any], emb: np.ndarray, *, metadata: dict[str, str]):
    """The pyarrow Table of one row per record (see module doc)."""
    import pyarrow as pa

    from embed.cases import features_columns

    dim = int(emb.shape[1])
    cols = features_columns(records)  # the case columns, derived from embed.cases.CaseFields
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1), pa.float32())
    cols["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    table = pa.table(cols)
    meta = {f"{META_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()}
    return table.replace_schema_metadata(meta)


def write_parquet_atomic(table: Any, path: str | Path) -> Path:
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
) -> dict[str, Any]:
    """Load datasets, embed every case, write the parquet; returns a summary dict."""
    from embed.datasets import load_datasets
    from embed.inference import Embedder

    out = Path(out)
    if out.suffix != ".parquet":
        raise CXRError(f"--out must be a .parquet file, not {out}; e.g. --out features.parquet")
    load = load_datasets(list(specs))
    if not load.records:
        raise CXRError(f"no cases found in {', '.join(specs)}: check the paths and kinds (`cxr datasets inspect`)")
    embedder = Embedder.from_checkpoint(model_path, device=device, batch_size=batch_size)
    kept, emb, skipped = embed_records(embedder, load.records, batch_size=batch_size, workers=workers, progress=progress)
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
