"""Query by PACS study and the Key Object Selection note back into the live Orthanc."""

from __future__ import annotations

import io
import json

import pydicom
import pytest

from cli.main import main

pytestmark = pytest.mark.pacs

KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


def _ids(result) -> list[tuple[int, float]]:
    return [(h.case.id, round(h.similarity, 5)) for h in result.hits]


def test_query_by_study_gives_the_hits_of_an_upload(pacs, engine, client):
    from index.pacs import search_study

    for film in pacs.films[:3]:
        by_study = search_study(engine, client, study=film.study_uid, k=6)
        uploaded = engine.search(film.data, k=6, with_attention=False)
        assert _ids(by_study.result) == _ids(uploaded) and len(uploaded.hits) == 6
        by_series = search_study(engine, client, series=film.series_uid, k=6)
        assert _ids(by_series.result) == _ids(uploaded)


def test_cli_search_by_study_matches_file_search(pacs, pacs_index, tmp_path, capsys):
    film = pacs.films[4]
    path = tmp_path / "query.dcm"
    path.write_bytes(film.data)
    index = str(pacs_index[1])
    assert main(["search", "--index", index, str(path), "-k", "5", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["search", "--index", index, "--dicomweb", pacs.url, "--dicomweb-auth", pacs.auth,
                 "--study", film.study_uid, "-k", "5", "--json"]) == 0
    from_pacs = json.loads(capsys.readouterr().out)
    assert [h["case"]["id"] for h in from_pacs["hits"]] == [h["case"]["id"] for h in from_file["hits"]]


def test_kos_stored_read_back_and_references_the_right_instances(pacs, engine, client):
    from embed.dicomweb import uid_key
    from embed.kos import read_kos, referenced_instances
    from index.pacs import search_study

    film = pacs.films[1]
    out = search_study(engine, client, study=film.study_uid, k=8, store=True)
    assert out.stored and out.referenced >= 1
    # which hits are instances of this PACS: the keyed hashes of every SOP Instance UID it holds
    in_pacs = {uid_key(f.sop_uid): f.sop_uid for f in pacs.films}
    for p in pacs.shared_files:
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        in_pacs[uid_key(str(ds.SOPInstanceUID))] = str(ds.SOPInstanceUID)
    expected = [in_pacs[h.case.extra["instance"]] for h in out.result.hits
                if h.case.source == "dicomweb" and h.case.extra.get("instance") in in_pacs]
    assert len(expected) == out.referenced

    found = client.dw.search_for_instances(study_instance_uid=film.study_uid, search_filters={"Modality": "KO"})
    assert len(found) == 1  # read back with QIDO-RS, in the query's study
    item = found[0]
    stored = client.dw.retrieve_instance(film.study_uid, item["0020000E"]["Value"][0], item["00080018"]["Value"][0])
    buf = io.BytesIO()
    stored.save_as(buf, enforce_file_format=True)
    ds = pydicom.dcmread(io.BytesIO(buf.getvalue()))  # valid Part 10 round trip
    assert ds.SOPClassUID == KOS_CLASS and ds.Modality == "KO"
    assert ds.StudyInstanceUID == film.study_uid and ds.PatientID == film.patient_id
    doc = read_kos(ds)  # highdicom parses and checks it
    refs = referenced_instances(doc)
    assert refs == [film.sop_uid] + expected
    evidence = {sop.ReferencedSOPInstanceUID for st in ds.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for sop in se.ReferencedSOPSequence}
    assert evidence == set(refs)
    text = next(i.TextValue for i in ds.ContentSequence
                if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "113012")  # the description
    assert "most similar past cases" in text and "Vote:" in text and "survival" in text
    assert " patients (" in text and " films)" in text  # outcomes per patient, the film count beside
    for f in pacs.films:
        assert f.patient_id not in text


def test_cli_store_sends_the_note_to_the_same_pacs(pacs, pacs_index, client, capsys, tmp_path):
    film = pacs.films[6]
    kos_file = tmp_path / "kos.dcm"
    assert main(["search", "--index", str(pacs_index[1]), "--dicomweb", pacs.url, "--dicomweb-auth", pacs.auth,
                 "--study", film.study_uid, "-k", "5", "--store", "--kos-out", str(kos_file)]) == 0
    captured = capsys.readouterr()
    assert "stored in the PACS (STOW-RS)" in captured.err and "rank" in captured.out
    assert client.dw.search_for_instances(study_instance_uid=film.study_uid, search_filters={"Modality": "KO"})
    assert pydicom.dcmread(kos_file).SOPClassUID == KOS_CLASS


def test_unknown_study_is_a_clear_error(pacs, pacs_index, capsys):
    assert main(["search", "--index", str(pacs_index[1]), "--dicomweb", pacs.url, "--dicomweb-auth", pacs.auth,
                 "--study", "1.2.3.4.5.6.7"]) == 2
    err = capsys.readouterr().err
    assert "holds no CR/DX image" in err and "Traceback" not in err and "1.2.3.4.5.6.7" not in err
