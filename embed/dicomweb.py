"""Talking DICOMweb to a PACS: QIDO-RS to find chest radiographs, WADO-RS to fetch them.

Every modern PACS (Orthanc, DCM4CHEE, Google Cloud Healthcare, Azure DICOM
service) speaks DICOMweb, so one client (``dicomweb-client``) reaches them all.
UIDs and the PACS address identify a hospital's patients and studies: they stay
in memory. Wherever something must be kept or logged, it is a keyed hash
(HMAC with the pseudonym key, :func:`uid_key`, :func:`pacs_key`). Fetched
instances are cached under ``CXR_HOME/cache/dicomweb/<pacs key>/<uid key>.dcm``
(written atomically), which is what lets an interrupted run resume and a second
run fetch nothing: the cache is the reader's local copy of the films, like a
folder of DICOM files, and never leaves the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embed.errors import CXRError, DatasetError, require
from embed.settings import get_settings

if TYPE_CHECKING:  # the protocol client loads lazily (the `pacs` extra)
    import requests
    from dicomweb_client.api import DICOMwebClient
    from pydicom import Dataset

log = logging.getLogger(__name__)

INSTALL = "pip install 'cxr-search[pacs]'"
#: Radiograph modalities searched by default: computed and digital radiography.
DEFAULT_MODALITIES: tuple[str, ...] = ("CR", "DX")
_PAGE = 500
#: Body parts (DICOM CID 4031 code strings) that are a chest radiograph; an empty one is given the benefit of doubt.
CHEST_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "RIBS", "CHEST_TO_PELVIS", "CHESTABDOMEN", "CHEST_ABDOMEN"})


class PacsError(CXRError):
    """The PACS could not be reached, refused the credentials, or answered with an error."""

    http_status = 502
    code = "pacs_error"


class PacsNotFoundError(CXRError):
    """The study or series asked for is not in the PACS (or holds no radiograph)."""

    http_status = 404
    code = "pacs_not_found"


def _hmac(text: str) -> str:
    key = get_settings().resolved_pseudonym_key()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def uid_key(uid: str) -> str:
    """``u_<16 hex>``: the keyed hash that stands for a DICOM UID wherever one would be stored or logged."""
    return "u_" + _hmac(f"dicom-uid:{uid.strip()}")[:16]


def normalize_url(url: str) -> str:
    """The DICOMweb root without a trailing slash; only http(s) addresses are accepted."""
    url = url.strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        raise DatasetError(f"a DICOMweb address starts with http:// or https://, got {url[:40]!r}")
    return url


def pacs_key(url: str) -> str:
    """``w_<16 hex>``: the keyed hash of a PACS address; which PACS a case came from, without naming it."""
    return "w_" + _hmac(f"dicomweb:{normalize_url(url)}")[:16]


@dataclass(frozen=True)
class PacsAuth:
    """Credentials: HTTP basic (``user:password``) or a bearer token (cloud stores), or none."""

    basic: str | None = None
    token: str | None = None

    @classmethod
    def from_options(cls, auth: str | None = None, token: str | None = None) -> PacsAuth:
        """From flags, else from ``CXR_DICOMWEB_AUTH`` / ``CXR_DICOMWEB_TOKEN`` (keeps secrets out of shell history)."""
        auth = auth or os.environ.get("CXR_DICOMWEB_AUTH") or None
        token = token or os.environ.get("CXR_DICOMWEB_TOKEN") or None
        if auth is not None and ":" not in auth:
            raise DatasetError("--dicomweb-auth takes USER:PASSWORD")
        return cls(auth, token)


@dataclass(frozen=True)
class InstanceRef:
    """Where one instance lives in the PACS. In memory only: never stored, never logged."""

    study: str
    series: str
    sop: str
    sop_class: str | None = None
    study_date: str | None = None
    view: str | None = None

    @property
    def key(self) -> str:
        return uid_key(self.sop)


@dataclass
class PacsClient:
    """One PACS: its DICOMweb root, the ``dicomweb_client`` client and the HTTP session (for raw WADO bytes)."""

    url: str
    dw: DICOMwebClient
    session: requests.Session
    timeout: float = 60.0

    @property
    def key(self) -> str:
        return pacs_key(self.url)


def connect(url: str, auth: PacsAuth | None = None, timeout: float = 60.0) -> PacsClient:
    """A client for the DICOMweb root ``url`` with the given credentials (nothing is sent yet)."""
    require("dicomweb_client", INSTALL)
    import requests
    from dicomweb_client import DICOMwebClient

    # dicomweb-client logs every UID it requests at INFO, urllib3 every request line at DEBUG (even with
    # `cxr -v`): keep both above that, so UIDs never reach the logs.
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
    auth = auth or PacsAuth()
    session = requests.Session()
    if auth.basic:
        user, password = auth.basic.split(":", 1)
        session.auth = (user, password)
    if auth.token:
        session.headers["Authorization"] = f"Bearer {auth.token}"
    url = normalize_url(url)
    return PacsClient(url, DICOMwebClient(url, session=session, timeout=timeout), session, timeout)


def _pacs_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run one DICOMweb request; turn transport and HTTP failures into a PacsError without UIDs in it."""
    import requests

    try:
        return fn()
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise PacsError(f"the PACS refused the credentials ({status}) while trying to {what}: "
                            "check the PACS credentials (--dicomweb-auth, CXR_DICOMWEB_AUTH, or CXR_API_DICOMWEB_AUTH "
                            "for the API)") from None
        if status == 404:
            raise PacsNotFoundError(f"the PACS has nothing for that request ({what})") from None
        raise PacsError(f"the PACS answered HTTP {status} while trying to {what}") from None
    except requests.RequestException as exc:
        raise PacsError(f"the PACS could not be reached while trying to {what} ({type(exc).__name__})") from None


def _value(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def _date_range(date_from: str | None, date_to: str | None) -> str | None:
    if not date_from and not date_to:
        return None
    clean = [(d or "").replace("-", "") for d in (date_from, date_to)]
    for d in clean:
        if d and (len(d) != 8 or not d.isdigit()):
            raise DatasetError(f"study dates are YYYY-MM-DD or YYYYMMDD, got {d!r}")
    return f"{clean[0]}-{clean[1]}"


def find_instances(client: PacsClient, *, modalities: Iterable[str] = DEFAULT_MODALITIES, body_part: str | None = None,
                   date_from: str | None = None, date_to: str | None = None, study: str | None = None,
                   series: str | None = None) -> list[InstanceRef]:
    """QIDO-RS: the radiograph instances matching the filters, each once, in a stable order."""
    found: dict[str, InstanceRef] = {}
    for modality in modalities:
        filters: dict[str, Any] = {"Modality": modality.upper()}
        if body_part:
            filters["BodyPartExamined"] = body_part.upper()
        dates = _date_range(date_from, date_to)
        if dates:
            filters["StudyDate"] = dates
        if series:
            filters["SeriesInstanceUID"] = series
        items = _pacs_call("search instances (QIDO-RS)", lambda f=filters: client.dw.search_for_instances(
            study_instance_uid=study, search_filters=f, fields=["StudyDate", "SOPClassUID", "ViewPosition"], limit=_PAGE,
            get_remaining=True))
        for item in items:
            st, se, sop = _value(item, "0020000D"), _value(item, "0020000E"), _value(item, "00080018")
            if st and se and sop and sop not in found:
                found[sop] = InstanceRef(st, se, sop, _value(item, "00080016"), _value(item, "00080020"),
                                         _value(item, "00185101"))
    return sorted(found.values(), key=lambda r: (r.study_date or "", r.key))


def _multipart_parts(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a ``multipart/related`` message (RFC 2046), as WADO-RS sends instances."""
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")
                     if p.strip().lower().startswith("boundary=")), None)
    if not boundary:
        return [body] if body else []
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _, sep, payload = chunk.partition(b"\r\n\r\n")
        if sep:
            parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


def retrieve_bytes(client: PacsClient, ref: InstanceRef) -> bytes:
    """WADO-RS: one instance, the bytes as the PACS holds them (any transfer syntax).

    Not ``retrieve_instance``: that parses the file and fails on objects stored without a
    Part 10 header, which the one image reader does handle.
    """

    def get() -> bytes:
        r = client.session.get(f"{client.url}/studies/{ref.study}/series/{ref.series}/instances/{ref.sop}",
                               headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
                               timeout=client.timeout)
        r.raise_for_status()
        parts = _multipart_parts(r.content, r.headers.get("Content-Type", ""))
        if len(parts) != 1:
            raise PacsError(f"the PACS sent {len(parts)} parts for one instance (WADO-RS)")
        return parts[0]

    return _pacs_call("retrieve an instance (WADO-RS)", get)


def cache_dir(url: str, root: str | Path | None = None) -> Path:
    """Where this PACS's fetched instances are kept: ``<root or CXR cache>/dicomweb/<pacs key>``."""
    base = Path(root) if root else get_settings().resolved_cache_dir() / "dicomweb"
    return base / pacs_key(url)


@dataclass
class FetchReport:
    """Counts of one fetch: new from the PACS, already cached, failed (by reason)."""

    fetched: int = 0
    cached: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)  # uid key -> cached file


def fetch_instances(client: PacsClient, refs: list[InstanceRef], folder: Path, *, progress: bool = True,
                    on_fetched: Callable[[int], None] | None = None) -> FetchReport:
    """WADO-RS every instance not yet in ``folder``; each file lands atomically, so a cut leaves no half file.

    ``on_fetched(n)`` is called after each new file with the running count (a progress hook).
    """
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    todo = []
    for ref in refs:
        path = folder / f"{ref.key}.dcm"
        if path.is_file():
            report.cached += 1
            report.paths[ref.key] = path
        else:
            todo.append((ref, path))
    if report.cached:
        log.info("dicomweb: %d instances already fetched, %d to fetch", report.cached, len(todo))
    for ref, path in tqdm(todo, desc="fetching from PACS (WADO-RS)", unit="img", disable=not progress or not todo):
        try:
            data = retrieve_bytes(client, ref)
        except PacsNotFoundError:
            report.failed["gone from the PACS"] = report.failed.get("gone from the PACS", 0) + 1
            continue
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        report.fetched += 1
        report.paths[ref.key] = path
        if on_fetched is not None:
            on_fetched(report.fetched)
    return report


_VIEW_PREFERENCE = {"PA": 0, "AP": 1}


def find_query_instance(client: PacsClient, *, study: str | None = None, series: str | None = None,
                        modalities: Iterable[str] = DEFAULT_MODALITIES) -> InstanceRef:
    """The radiograph to search with in a study (or series): a PA, else an AP, else the first frontal-or-not."""
    if not study and not series:
        raise DatasetError("name the study (--study UID) or the series (--series UID) to search with")
    refs = find_instances(client, modalities=modalities, study=study, series=series)
    if not refs:
        raise PacsNotFoundError(f"the PACS holds no {'/'.join(modalities)} image in that "
                                f"{'series' if series else 'study'}")
    return min(refs, key=lambda r: (_VIEW_PREFERENCE.get((r.view or "").upper(), 2), r.key))


def store_instance(client: PacsClient, ds: Dataset) -> None:
    """STOW-RS one data set to this client's PACS (the only PACS a result may go to)."""
    _pacs_call("store a document (STOW-RS)", lambda: client.dw.store_instances([ds]))
    log.info("stored %s %s in PACS %s", ds.get("Modality", "object"), uid_key(str(ds.SOPInstanceUID)), client.key)


def recent_studies(client: PacsClient, *, limit: int = 20, modalities: Iterable[str] = DEFAULT_MODALITIES,
                   scan: int = 200) -> list[dict[str, Any]]:
    """The most recent chest radiograph studies, de-identified: a handle (keyed hash), modalities, sex, age.

    Neither UIDs nor dates nor names are returned: a study is picked by its handle
    (:func:`resolve_study`), which only this installation's key can produce.
    """
    studies: dict[str, dict[str, Any]] = {}
    for modality in modalities:
        items = _pacs_call("search studies (QIDO-RS)", lambda m=modality: client.dw.search_for_studies(
            search_filters={"ModalitiesInStudy": m.upper()}, limit=scan,
            fields=["StudyDate", "StudyTime", "PatientSex", "PatientAge", "NumberOfStudyRelatedInstances",
                    "ModalitiesInStudy"]))
        for item in items:
            uid = _value(item, "0020000D")
            if uid and uid not in studies:
                studies[uid] = item
    order = sorted(studies, key=lambda u: (_value(studies[u], "00080020") or "", _value(studies[u], "00080030")
                                           or ""), reverse=True)
    from embed.deid import parse_age

    out = []
    for uid in order:
        if len(out) == limit:
            break
        if not _is_chest_study(client, uid):
            continue
        item = studies[uid]
        sex = _value(item, "00100040")
        mods = item.get("00080061", {}).get("Value") or []
        n = _value(item, "00201208")
        out.append({"handle": uid_key(uid), "rank": len(out) + 1,
                    "modalities": sorted({str(m) for m in mods if str(m) in {"CR", "DX", "DR"}}),
                    "sex": sex if sex in ("M", "F") else None, "age": parse_age(_value(item, "00101010")),
                    "instances": int(n) if n and str(n).isdigit() else None})
    return out


def _is_chest_study(client: PacsClient, study: str) -> bool:
    """A study is a chest study when one of its series says so, or none names another body part."""
    series = _pacs_call("search series (QIDO-RS)", lambda: client.dw.search_for_series(
        study_instance_uid=study, fields=["BodyPartExamined"]))
    parts = {(_value(s, "00180015") or "").upper().strip() for s in series}
    return bool(parts & CHEST_PARTS) or parts <= {""}


def resolve_study(client: PacsClient, handle: str, *, scan: int = 200) -> str:
    """The Study Instance UID behind a handle from :func:`recent_studies`."""
    for modality in DEFAULT_MODALITIES:
        items = _pacs_call("search studies (QIDO-RS)", lambda m=modality: client.dw.search_for_studies(
            search_filters={"ModalitiesInStudy": m}, limit=scan))
        for item in items:
            uid = _value(item, "0020000D")
            if uid and uid_key(uid) == handle:
                return uid
    raise PacsNotFoundError("no recent radiograph study of the PACS has that handle (list them again)")


def fetch_query(client: PacsClient, *, study: str | None = None, series: str | None = None) -> tuple[InstanceRef, bytes]:
    """WADO-RS the radiograph to search with (see :func:`find_query_instance`): its ref and its bytes."""
    ref = find_query_instance(client, study=study, series=series)
    return ref, retrieve_bytes(client, ref)
