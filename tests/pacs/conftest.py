"""A live Orthanc PACS for the DICOMweb tests, started once per session.

Loaded with the shared DICOM files (``../shared/data/dicom``) and with CR/DX
studies generated from shared covid-chestxray films (age, sex and view in the
headers). Skips with a clear message only where Orthanc or its DICOMweb plugin
is not installed (``make test`` installs them where it can) or the shared data
is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import shared_data_dir
from tests.pacs.films import Film, covid_films
from tests.pacs.orthanc import Orthanc, dicomweb_plugin, orthanc_binary, start_orthanc

N_FILMS = 10
N_LABELLED = 30
PSEUDONYM_KEY = "test-key-not-secret"


@dataclass
class Pacs:
    """The running Orthanc, what was loaded into it, and where the tests keep their own state."""

    server: Orthanc
    films: list[Film]
    shared_files: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.dicomweb_url

    @property
    def auth(self) -> str:
        return self.server.auth


@pytest.fixture(scope="session")
def pacs_env(tmp_path_factory) -> Iterator[Path]:
    """CXR_HOME and the pseudonym key for session-scoped PACS fixtures (function fixtures set them later)."""
    home = tmp_path_factory.getbasetemp() / "cxr_home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_HOME", str(home))
        mp.setenv("CXR_PSEUDONYM_KEY", PSEUDONYM_KEY)
        from embed.settings import get_settings

        get_settings.cache_clear()
        yield home
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def pacs(tmp_path_factory, pacs_env) -> Iterator[Pacs]:
    if orthanc_binary() is None or dicomweb_plugin() is None:
        pytest.skip("Orthanc with its DICOMweb plugin is not installed "
                    "(apt-get install orthanc orthanc-dicomweb; `make test` does it where it can)")
    data = shared_data_dir()
    if not (data / "covid-chestxray-dataset" / "metadata.csv").is_file():
        pytest.skip(f"real data not found at {data} (set CXR_SHARED_DATA to the shared/data folder)")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        films = covid_films(data / "covid-chestxray-dataset", N_FILMS)
        for film in films:
            assert server.upload(film.data), "Orthanc refused a generated film"
        shared = [p for p in sorted((data / "dicom").glob("*.dcm")) if server.upload(p.read_bytes())]
        yield Pacs(server, films, shared)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pacs_index(pacs, tmp_path_factory):
    """The whole PACS indexed over DICOMweb plus 30 labelled covid-chestxray files (for a vote and outcomes),
    with the released model: (BuildReport, folder)."""
    from embed.datasets import load_dataset
    from index.builder import build_index

    covid = load_dataset(f"covid-chestxray:{shared_data_dir() / 'covid-chestxray-dataset'}").records
    labelled = [r for r in covid if r.prognosis.get("survival") is not None][:N_LABELLED]
    pacs_records = load_dataset(f"dicomweb:{pacs.url}", dicomweb_auth=pacs.auth, progress=False)
    out = tmp_path_factory.mktemp("pacs_index") / "idx"
    report = build_index(pacs_records.records + labelled, out, workers=0, progress=False)
    report.skipped_rows = pacs_records.skipped_counts()
    return report, out


@pytest.fixture(scope="session")
def engine(pacs_index):
    from index.engine import SearchEngine

    eng = SearchEngine.open(pacs_index[1])
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def client(pacs):
    from embed.dicomweb import PacsAuth, connect

    return connect(pacs.url, PacsAuth(basic=pacs.auth))
