"""Self-contained encoder checkpoints, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, dicts, lists, strings and numbers: the weights,
the encoder config, the standardization config, the label vocabulary, the training
config, metrics and the git revision, so that a file alone is enough to embed images
exactly as during training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embed.errors import ModelError
from embed.models.config import EncoderConfig
from embed.models.encoder import CXREncoder
from embed.standardize import StandardizeConfig

log = logging.getLogger(__name__)

FORMAT = "cxr-search-encoder"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A loaded checkpoint: the model in eval mode plus everything that travels with it."""

    model: CXREncoder
    encoder_cfg: EncoderConfig
    std_cfg: StandardizeConfig
    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def git_revision() -> str:
    """The project's git revision (or 'unknown' outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _plain(obj: Any) -> Any:
    """Convert to the types weights_only loading accepts (dataclasses via to_dict/asdict)."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file then rename, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def checkpoint_dict(
    model: CXREncoder,
    *,
    std_cfg: StandardizeConfig | None,
    labels: list[str],
    train_cfg: Any = None,
    metrics: dict[str, Any] | None = None,
    half: bool = False,
    keep_classifier: bool = True,
) -> dict[str, Any]:
    """The checkpoint payload (also embedded in training state files)."""
    state = {}
    for k, v in model.state_dict().items():
        if not keep_classifier and k.startswith("classifier."):
            continue
        v = v.detach().cpu()
        state[k] = v.half() if (half and v.is_floating_point()) else v.clone()
    enc = model.cfg.to_dict()
    if not keep_classifier:
        enc["num_classes"] = 0
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": state,
        "encoder_cfg": _plain(enc),
        "std_cfg": _plain(std_cfg) if std_cfg is not None else {},
        "labels": [str(x) for x in labels],
        "train_cfg": _plain(train_cfg) if train_cfg is not None else {},
        "metrics": _plain(metrics or {}),
        "git_rev": git_revision(),
        "created_unix": int(time.time()),
        "torch_version": str(torch.__version__),
    }


def save_checkpoint(
    path: str | Path,
    model: CXREncoder,
    *,
    std_cfg: StandardizeConfig | None,
    labels: list[str],
    train_cfg: Any = None,
    metrics: dict[str, Any] | None = None,
    half: bool = False,
    keep_classifier: bool = True,
) -> None:
    """Save a self-contained checkpoint (atomic). ``half=True`` stores fp16 weights (release size)."""
    payload = checkpoint_dict(
        model, std_cfg=std_cfg, labels=labels, train_cfg=train_cfg, metrics=metrics, half=half,
        keep_classifier=keep_classifier,
    )
    atomic_torch_save(payload, path)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _std_from_dict(d: dict[str, Any]) -> StandardizeConfig:
    return StandardizeConfig.from_dict(d) if d else StandardizeConfig()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate the raw checkpoint dict (no model built)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"checkpoint {p} not found: train one with `cxr train` or use the released model")
    if p.is_dir():
        raise ModelError(f"{p} is a folder; give the checkpoint file inside it (e.g. {p}/best.pt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        raise ModelError(
            f"{p} is not a cxr-search checkpoint (could not be read safely: {type(exc).__name__}); "
            "give a file written by `cxr train`"
        ) from exc
    if not isinstance(ckpt, dict):
        raise ModelError(f"{p} is not a cxr-search checkpoint (no metadata); give a file written by `cxr train`")
    if ckpt.get("format") != FORMAT and isinstance(ckpt.get("model"), dict):
        ckpt = ckpt["model"]  # a training state file: the model payload is inside
    if ckpt.get("format") != FORMAT or "state_dict" not in ckpt or "encoder_cfg" not in ckpt:
        raise ModelError(f"{p} is not a cxr-search checkpoint (format tag missing); give a file written by `cxr train`")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{p} was written by a newer cxr-search (format {ckpt['format_version']}); upgrade the package")
    return ckpt


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint into an eval-mode float32 model with its configs and labels."""
    from embed.models.factory import create_model

    p = Path(path)
    ckpt = read_checkpoint(p)
    enc_cfg = EncoderConfig.from_dict(ckpt["encoder_cfg"]).replace(pretrained=False)
    model = create_model(enc_cfg)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"checkpoint {p} does not match its own encoder config ({exc}); the file is damaged") from exc
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict",)}
    return LoadedModel(
        model=model,
        encoder_cfg=enc_cfg,
        std_cfg=_std_from_dict(ckpt.get("std_cfg") or {}),
        labels=list(ckpt.get("labels") or []),
        meta=meta,
        sha256=_file_sha256(p),
    )
