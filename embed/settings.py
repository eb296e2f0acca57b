"""Process-wide settings for the library, read from the environment (prefix ``CXR_``)."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path(os.environ.get("CXR_HOME", Path.home() / ".cache" / "cxr"))


class LibrarySettings(BaseSettings):
    """Settings shared by every command.

    ``pseudonym_key``: the HMAC secret that turns patient ids into pseudonyms.
    Where none is given, a random key is created once in ``home/pseudonym.key``
    (mode 600) so the same patient keeps the same pseudonym across runs.
    """

    model_config = SettingsConfigDict(env_prefix="CXR_", extra="ignore")

    home: Path = default_home()
    pseudonym_key: str | None = None
    cache_dir: Path | None = None  # standardized-image cache; default home/cache

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or (self.home / "cache")

    def resolved_pseudonym_key(self) -> bytes:
        if self.pseudonym_key:
            return self.pseudonym_key.encode()
        path = self.home / "pseudonym.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(32))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> LibrarySettings:
    return LibrarySettings()
