"""Specific, user-facing errors.

Every error the user can trigger is a :class:`CXRError`: the CLI prints its
message (never a stack trace) and the API maps it to an HTTP status. Messages
say what went wrong *and* how to fix it, as timm's do.
"""

from __future__ import annotations


class CXRError(Exception):
    """Base class of every error meant for the user. ``http_status`` is used by the API."""

    http_status: int = 400
    code: str = "cxr_error"


class ImageReadError(CXRError):
    """The input could not be read as a chest X-ray image."""

    http_status = 422
    code = "image_unreadable"


class NotAnImageError(ImageReadError):
    """The bytes are not PNG, JPEG or DICOM (checked by content, not by name)."""

    http_status = 415
    code = "not_an_image"


class TruncatedImageError(ImageReadError):
    """The file starts like an image but ends early or is corrupt."""

    code = "truncated_image"


class UnsupportedImageError(ImageReadError):
    """A real image we deliberately do not handle (multi-frame, colour DICOM, ...)."""

    code = "unsupported_image"


class ImageTooLargeError(ImageReadError):
    """Declared pixel count exceeds the limit: refused before any allocation."""

    http_status = 413
    code = "image_too_large"


class DatasetError(CXRError):
    """A dataset could not be read."""

    code = "dataset_error"


class UnknownDatasetKindError(DatasetError):
    code = "unknown_dataset_kind"


class DatasetLayoutError(DatasetError):
    """The folder does not have the layout the named reader expects."""

    code = "dataset_layout"


class ModelError(CXRError):
    """A model or checkpoint problem (missing file, wrong format, unknown backbone)."""

    code = "model_error"


class ConfigMismatchError(CXRError):
    """Two artefacts disagree (index built with another model or standardization)."""

    http_status = 409
    code = "config_mismatch"


class IndexStateError(CXRError):
    """The index directory is missing, incomplete or corrupt."""

    http_status = 503
    code = "index_state"


class DependencyMissingError(CXRError):
    """An optional heavy dependency is not installed; the message names the install command."""

    code = "dependency_missing"


def require(module: str, install: str):
    """Import an optional dependency lazily, or raise a message that names the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only where absent
        raise DependencyMissingError(f"{module} is not installed: run `{install}`") from exc
