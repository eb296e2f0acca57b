"""The index manifest: what built this index, so a mismatching model is refused, not silently wrong.

Embeddings from another model, or from the same model fed differently
standardized images, live in another space: distances would be meaningless.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from embed.errors import ConfigMismatchError, IndexStateError
from embed.standardize import StandardizeConfig

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class Manifest(BaseModel):
    """Contents of ``manifest.json`` in an index folder."""

    format_version: int = FORMAT_VERSION
    model_sha256: str
    model_path: str | None = None  # where the model was when built (a hint for `open` without --model)
    model_name: str | None = None
    embed_dim: int
    std_config: dict[str, Any] = Field(default_factory=dict)
    std_fingerprint: str = ""
    index_type: str
    index_params: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    created_unix: float = Field(default_factory=time.time)
    updated_unix: float = Field(default_factory=time.time)
    faiss_version: str = ""
    backend: str = "faiss"  # "faiss" (index.faiss in the folder) or "milvus" (a collection, see backend_params)
    backend_params: dict[str, Any] = Field(default_factory=dict)  # milvus: uri, collection
    history: list[dict[str, Any]] = Field(default_factory=list)  # build/add/remove/rebuild steps

    def write(self, folder: str | Path) -> Path:
        """Write atomically (tmp file then rename)."""
        path = Path(folder) / MANIFEST_FILE
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        path = Path(folder) / MANIFEST_FILE
        if not Path(folder).is_dir():
            raise IndexStateError(f"index folder {folder} not found: build one with `cxr index build --out {folder} ...`")
        if not path.is_file():
            raise IndexStateError(
                f"{folder} has no {MANIFEST_FILE}: it is not an index folder or its build did not finish; "
                f"rebuild it with `cxr index build --out {folder} ...`"
            )
        try:
            m = cls.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError) as exc:
            raise IndexStateError(f"{path} is damaged ({exc}); rebuild the index with `cxr index build`") from exc
        if m.format_version > FORMAT_VERSION:
            raise IndexStateError(
                f"index {folder} has format {m.format_version}, newer than this cxr-search ({FORMAT_VERSION}); "
                "upgrade the package"
            )
        return m


def std_fingerprint(std_cfg: StandardizeConfig | dict[str, Any]) -> str:
    """Fingerprint of a standardization config (StandardizeConfig or dict)."""
    if hasattr(std_cfg, "fingerprint"):
        return str(std_cfg.fingerprint())
    import hashlib

    d = std_cfg.to_dict() if hasattr(std_cfg, "to_dict") else dict(std_cfg or {})
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def std_dict(std_cfg: StandardizeConfig | dict[str, Any]) -> dict[str, Any]:
    if hasattr(std_cfg, "to_dict"):
        return dict(std_cfg.to_dict())
    return dict(std_cfg or {})


def check_compatible(manifest: Manifest, *, model_sha256: str, std_cfg: StandardizeConfig | dict[str, Any],
                     index_dir: str | Path) -> None:
    """Refuse a model or standardization different from the one the index was built with."""
    rebuild = f"rebuild the index with this model: `cxr index build --model MODEL --out {index_dir} KIND:PATH ...`"
    if manifest.model_sha256 != model_sha256:
        raise ConfigMismatchError(
            f"index {index_dir} was built with model sha256 {manifest.model_sha256[:12]}… "
            f"but the running model is {model_sha256[:12]}…; open it with the model it was built with "
            f"(--model {manifest.model_path or 'PATH'}) or {rebuild}"
        )
    fp = std_fingerprint(std_cfg)
    if manifest.std_fingerprint and manifest.std_fingerprint != fp:
        if manifest.std_config == std_dict(std_cfg):
            raise ConfigMismatchError(
                f"index {index_dir} was built by an older version of the standardization code "
                f"(same settings, fingerprint {manifest.std_fingerprint}, now {fp}); {rebuild}"
            )
        raise ConfigMismatchError(
            f"index {index_dir} was built with standardization {manifest.std_config} "
            f"(fingerprint {manifest.std_fingerprint}) but the running model uses {std_dict(std_cfg)} "
            f"(fingerprint {fp}); {rebuild}"
        )
