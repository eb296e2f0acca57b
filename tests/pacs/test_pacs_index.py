"""Indexing a live Orthanc over DICOMweb: what is found, fetched, kept, skipped and resumed."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from cli.main import main
from tests.pacs.conftest import N_LABELLED

pytestmark = pytest.mark.pacs


def _identifiers(pacs) -> list[str]:
    """Everything in the PACS that identifies a patient or a study, as text."""
    out = []
    for f in pacs.films:
        out += [f.study_uid, f.series_uid, f.sop_uid, f.patient_id]
    return out + ["Doe^Test", "Test General Hospital", "ACC0000", pacs.server.rest_url]


def test_index_over_dicomweb_keeps_no_identifier(pacs, pacs_index, caplog):
    report, out = pacs_index
    # every generated chest film and the shared chest radiographs; the hip CR is reported, not indexed
    assert report.added == len(pacs.films) + 7 + N_LABELLED
    assert report.skipped_rows == {"not a chest (body part HIP)": 1}
    dump = "\n".join(sqlite3.connect(out / "store.sqlite").iterdump())
    for text in _identifiers(pacs):
        assert text not in dump
    assert "dicomweb/w_" in dump and "u_" in dump


def test_second_run_adds_nothing_and_fetches_nothing(pacs, pacs_index, tmp_path, capsys, caplog):
    _, out = pacs_index
    caplog.set_level(logging.DEBUG)  # as with `cxr -v`: not even debug lines name a UID
    spec = f"dicomweb:{pacs.url}"
    assert main(["-v", "index", "add", "--index", str(out), "--workers", "0", "--no-progress",
                 "--dicomweb-auth", pacs.auth, spec]) == 0
    text = capsys.readouterr().out
    assert "0 added" in text and f"{len(pacs.films) + 7 + N_LABELLED} cases" in text
    assert "already in the index" in text
    logged = caplog.text
    assert "0 fetched now" in logged
    for uid in _identifiers(pacs):
        assert uid not in logged and uid not in text


def test_interrupted_fetch_resumes(pacs, tmp_path):
    from embed.datasets import load_dataset

    cache = tmp_path / "cache"
    spec = f"dicomweb:{pacs.url}"

    def cut_after_three(n: int) -> None:
        if n == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the fetch

    with pytest.raises(KeyboardInterrupt):
        load_dataset(spec, dicomweb_auth=pacs.auth, dicomweb_cache=str(cache), progress=False,
                     on_fetched=cut_after_three)
    files = list(cache.rglob("*"))
    assert len([p for p in files if p.suffix == ".dcm"]) == 3 and not [p for p in files if p.suffix == ".part"]
    counts: list[int] = []
    load = load_dataset(spec, dicomweb_auth=pacs.auth, dicomweb_cache=str(cache), progress=False,
                        on_fetched=counts.append)
    total = len(pacs.films) + 8
    assert counts[-1] == total - 3  # only the rest was fetched
    assert len(load.records) == total - 1


def test_filters_modality_and_dates(pacs, tmp_path):
    from embed.datasets import load_dataset

    spec = f"dicomweb:{pacs.url}"
    dx = load_dataset(spec + "?modality=DX", dicomweb_auth=pacs.auth, dicomweb_cache=str(tmp_path), progress=False)
    assert {r.extra["modality"] for r in dx.records} == {"DX"}
    assert len(dx.records) == len(pacs.films) // 2 + 1  # odd films are DX, plus the shared DX thorax
    early = load_dataset(spec, dicomweb_auth=pacs.auth, dicomweb_cache=str(tmp_path), progress=False,
                         date_from="2020-03-01", date_to="2020-03-03")
    assert len(early.records) == 3
    assert all(r.age is not None and r.sex in ("M", "F") and r.view in ("PA", "AP") for r in early.records)


def test_bad_credentials_and_address_are_clear_errors(pacs, capsys):
    spec = f"dicomweb:{pacs.url}"
    assert main(["index", "build", "--out", "/nonexistent/x", "--dicomweb-auth", "cxr-test:wrong", spec]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials (401)" in err and "Traceback" not in err
    assert main(["index", "build", "--out", "/nonexistent/x", "dicomweb:ftp://pacs"]) == 2
    assert "http:// or https://" in capsys.readouterr().err
