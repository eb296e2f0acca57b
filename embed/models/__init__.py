"""The encoder: named configs, CXREncoder, create_model and checkpoints."""

from __future__ import annotations

from pathlib import Path

from embed.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from embed.models.config import EncoderConfig, get_config, list_configs, register_config
from embed.models.encoder import CXREncoder
from embed.models.factory import create_model

#: The released checkpoint shipped with the package (fp16 weights, with its YAML config beside it).
RELEASED_MODEL_PATH = Path(__file__).resolve().parent / "released.pt"
RELEASED_CONFIG_PATH = Path(__file__).resolve().parent / "released.yaml"


def released_model_path() -> Path:
    """Path of the released checkpoint; a ModelError if this install lacks it."""
    from embed.errors import ModelError

    if not RELEASED_MODEL_PATH.is_file():
        raise ModelError(
            f"released model not found at {RELEASED_MODEL_PATH}: reinstall cxr-search or pass --model PATH"
        )
    return RELEASED_MODEL_PATH


def resolve_model_path(model: str | Path | None = None) -> Path:
    """The checkpoint to use: ``model`` when given, else the released one.

    The one place the released-model default is decided: ``cxr embed``, ``cxr evaluate``,
    ``cxr index build``, ``cxr demo`` and :meth:`embed.inference.Embedder.from_checkpoint` all ask here.
    """
    return Path(model) if model is not None else released_model_path()


__all__ = [
    "CXREncoder",
    "EncoderConfig",
    "LoadedModel",
    "RELEASED_CONFIG_PATH",
    "RELEASED_MODEL_PATH",
    "create_model",
    "get_config",
    "list_configs",
    "load_checkpoint",
    "register_config",
    "released_model_path",
    "resolve_model_path",
    "save_checkpoint",
]
