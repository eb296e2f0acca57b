"""Reader ``dicomweb:URL``: the chest radiographs of a PACS, found with QIDO-RS and fetched with WADO-RS.

The fetched instances go through exactly what a folder of DICOM files goes
through (:func:`embed.deid.deidentify_dataset`, then the one image reader when
embedded), so a film indexed from the PACS and the same film uploaded as a file
are the same case. Options (flags of ``cxr index`` or ``?name=value`` in the
spec): ``modality`` (default ``CR,DX``), ``body_part`` (a QIDO filter; without
it, instances whose header names another body part are skipped and reported),
``date_from``/``date_to`` (study date range), ``dicomweb_auth``/``dicomweb_token``
(better from ``CXR_DICOMWEB_AUTH``/``CXR_DICOMWEB_TOKEN``), ``dicomweb_cache``.

``case_id`` is ``dicomweb/<pacs key>/<uid key>``: keyed hashes of the PACS
address and of the SOP Instance UID, never the UIDs. ``known_refs`` (given by
``cxr index add``) skips instances already in the index before they are fetched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.datasets.dicom import NOT_RADIOGRAPHS

log = logging.getLogger(__name__)

SOURCE = "dicomweb"


def case_id_for(url: str, sop_uid: str) -> str:
    """The case id an instance of this PACS gets in an index (keyed hashes only)."""
    from embed.dicomweb import pacs_key, uid_key

    return f"{SOURCE}/{pacs_key(url)}/{uid_key(sop_uid)}"


def _modalities(value: str | Iterable[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(m.strip().upper() for m in items if m.strip())


@register_dataset("dicomweb", "the CR/DX chest radiographs of a PACS over DICOMweb (QIDO-RS + WADO-RS); dicomweb:URL")
def read_dicomweb(url: str, *, modality: str = "CR,DX", body_part: str | None = None, date_from: str | None = None,
                  date_to: str | None = None, dicomweb_auth: str | None = None, dicomweb_token: str | None = None,
                  dicomweb_cache: str | None = None, known_refs: Iterable[str] | None = None,
                  progress: bool = True, on_fetched: Callable[[int], None] | None = None) -> DatasetLoad:
    """Find, fetch (resumable, cached) and de-identify the chest radiographs of the PACS at ``url``."""
    import pydicom

    from embed.deid import deidentify_dataset, patient_key, study_date
    from embed.dicomweb import (CHEST_PARTS, PacsAuth, cache_dir, connect, fetch_instances, find_instances,
                                normalize_url)

    url = normalize_url(url)
    client = connect(url, PacsAuth.from_options(dicomweb_auth, dicomweb_token))
    refs = find_instances(client, modalities=_modalities(modality), body_part=body_part, date_from=date_from,
                          date_to=date_to)
    skipped: list[SkippedRow] = []
    known = set(known_refs or ())
    if known:
        before = len(refs)
        refs = [r for r in refs if case_id_for(url, r.sop) not in known]
        skipped += [SkippedRow(SOURCE, "already in the index")] * (before - len(refs))
    folder = cache_dir(url, dicomweb_cache)
    fetched = fetch_instances(client, refs, folder, progress=progress, on_fetched=on_fetched)
    for reason, n in fetched.failed.items():
        skipped += [SkippedRow(SOURCE, reason)] * n
    log.info("dicomweb: %d instances found, %d fetched now, %d from the local cache, %d skipped",
             len(refs), fetched.fetched, fetched.cached, len(skipped))
    headers: list[tuple[str, Path, Any]] = []
    for ref in refs:
        path = fetched.paths.get(ref.key)
        if path is None:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file: report, drop it so the next run refetches
            skipped.append(SkippedRow(ref.key, "DICOM header unreadable", type(exc).__name__))
            path.unlink(missing_ok=True)
            continue
        mod = str(ds.get("Modality", "") or "").upper()
        part = str(ds.get("BodyPartExamined", "") or "").upper().strip()
        if mod in NOT_RADIOGRAPHS:
            skipped.append(SkippedRow(ref.key, f"not a radiograph (modality {mod})"))
        elif not body_part and part and part not in CHEST_PARTS:
            skipped.append(SkippedRow(ref.key, f"not a chest (body part {part})"))
        else:
            headers.append((case_id_for(url, ref.sop), path, ds))
    first: dict[str, Any] = {}
    for _, _, ds in headers:
        pid, day = patient_key(ds), study_date(ds)
        if pid and day is not None and (pid not in first or day < first[pid]):
            first[pid] = day
    records = []
    for case_id, path, ds in headers:
        pid = patient_key(ds)
        meta = deidentify_dataset(ds, reference_date=first.get(pid) if pid else None)
        extra = {k: v for k, v in meta.items() if k not in {"patient", "view", "sex", "age", "day_offset"}}
        extra["pacs"], extra["instance"] = case_id.split("/")[1], case_id.split("/")[2]
        records.append(CaseRecord(
            case_id=case_id, image_path=str(path.resolve()), source=SOURCE, patient=meta.get("patient"),
            day_offset=meta.get("day_offset"), view=meta.get("view"), sex=meta.get("sex"), age=meta.get("age"),
            findings=[], licence=None, extra=extra,
        ))
    return DatasetLoad(records=records, skipped=skipped, kind=SOURCE, root=folder)


read_dicomweb.takes_url = True  # type: ignore[attr-defined]  # load_dataset passes the address, not a Path
