"""Shared test fixtures.

Tests that need the real public data in ``../shared/data`` use the
``shared_data`` fixture and skip with a clear message where it is absent.
Everything else generates its own small fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("CXR_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set CXR_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Each test session gets its own CXR_HOME so no key or cache leaks from the user's machine."""
    home = tmp_path_factory.getbasetemp() / "cxr_home"
    monkeypatch.setenv("CXR_HOME", str(home))
    monkeypatch.setenv("CXR_PSEUDONYM_KEY", "test-key-not-secret")
    from embed.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def edit_live_generation(index_dir: Path, edit) -> None:
    """Commit an edited copy of an index's live generation as its next generation.

    Generations are immutable and sealed with checksums (index.generations), so a test that
    relabels cases or adds a sidecar file must write a new generation, as the index's own
    writers do, under the writer lock; editing the live files in place is (rightly) refused
    at the next open as damage.
    """
    import shutil

    from index.generations import writing

    with writing(index_dir) as w:
        src = w.source()
        assert src is not None, f"{index_dir} holds no index"
        with w.new_generation() as tmp:
            for f in src.iterdir():
                if f.is_file() and not f.name.startswith("."):
                    shutil.copy2(f, tmp / f.name)
            edit(tmp)
