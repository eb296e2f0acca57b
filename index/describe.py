"""``cxr index stats``: what an index holds, read from its live generation (pinned and verified)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embed.errors import IndexStateError
from index.generations import pin
from index.layout import disk_size
from index.manifest import Manifest
from index.store import STORE_FILE, SQLiteStore


def index_stats(index_dir: str | Path) -> dict[str, Any]:
    """Counts per source, finding, view and sex; index type and parameters; size on disk."""
    pinned = pin(index_dir)
    try:
        pinned.verify()
        gen_dir = pinned.path
        manifest = Manifest.read(gen_dir)
        store = SQLiteStore(gen_dir / STORE_FILE, read_only=True)
        try:
            stats = store.stats()
        finally:
            store.close()
        size = disk_size(gen_dir)
    finally:
        pinned.close()
    if manifest.backend == "faiss" and not (gen_dir / "index.faiss").is_file():
        raise IndexStateError(f"{index_dir} has no index.faiss; rebuild it with `cxr index build`")
    return {
        **stats,
        "index_type": manifest.index_type,
        "index_params": manifest.index_params,
        "embed_dim": manifest.embed_dim,
        "model_sha256": manifest.model_sha256,
        "std_config": manifest.std_config,
        "format_version": manifest.format_version,
        "created_unix": manifest.created_unix,
        "updated_unix": manifest.updated_unix,
        "size_bytes": size,
        "generation": pinned.name,
        "next_id": manifest.next_id,
        "backend": manifest.backend,
        **({"milvus": _shown(manifest.backend_params)} if manifest.backend == "milvus" else {}),
    }


def _shown(params: dict[str, Any]) -> dict[str, Any]:
    """Milvus location for stats, without any credentials in a server URL."""
    return {"uri": str(params.get("uri", "")).split("@")[-1], "collection": params.get("collection")}
