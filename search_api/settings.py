"""Service settings, read from the environment (prefix ``CXR_API_``).

Kept apart from :mod:`embed.settings` so that the library never needs to know
about HTTP concerns (keys, limits, CORS), and injected with ``Depends`` so tests
can override them, as FastAPI's settings tutorial does.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True only for addresses that cannot be reached from another machine."""
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class APISettings(BaseSettings):
    """Everything the API process needs; see docs/api.md for the table."""

    model_config = SettingsConfigDict(env_prefix="CXR_API_", extra="ignore")

    index_dir: Path | None = None
    model_path: Path | None = None
    device: str | None = None
    api_keys: str = Field("", description="comma-separated API keys")
    api_keys_file: Path | None = None
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_k: int = Field(100, gt=0)
    max_image_pixels: int = Field(50_000_000, gt=0)
    max_thumb_size: int = Field(1024, ge=16)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    cors_origins: str = ""
    dicomweb_url: str | None = Field(None, description="DICOMweb root of the hospital's PACS (docs/pacs.md)")
    dicomweb_auth: str | None = Field(None, description="USER:PASSWORD for the PACS")
    dicomweb_token: str | None = Field(None, description="bearer token for the PACS (cloud DICOM stores)")
    engine_threads: int | None = Field(None, ge=1, description="concurrent engine calls (default: CPU count)")
    batch_window_ms: float = Field(2.0, ge=0, le=1000, description=(
        "how long the first waiting query image waits for others to share its forward pass (docs/api.md)"))
    max_batch: int = Field(16, ge=1, le=64, description="most query images in one forward pass (1: no batching)")
    model_threads: int | None = Field(None, ge=1, description="torch threads of the forward pass (default: torch's)")
    warm_up: bool = Field(True, description="run one forward pass per batch size at start-up")
    body_timeout_s: float = Field(30.0, gt=0, description="an upload that sends nothing for this long gets 408")

    def resolved_keys(self) -> list[str]:
        """Keys from the variable and the key file (one per line, '#' comments)."""
        keys = _split(self.api_keys)
        if self.api_keys_file:
            try:
                text = Path(self.api_keys_file).read_text()
            except OSError as exc:
                from embed.errors import CXRError

                raise CXRError(f"cannot read the API key file {self.api_keys_file}: {exc.strerror}") from exc
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    keys.append(line)
        return keys

    def resolved_cors_origins(self) -> list[str]:
        return _split(self.cors_origins)


@lru_cache(maxsize=1)
def get_api_settings() -> APISettings:
    """The process-wide settings (cached); tests override this dependency."""
    return APISettings()
