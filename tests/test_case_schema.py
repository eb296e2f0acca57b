"""One case schema (embed.cases.CaseFields): the published names stay, and a new field is one edit.

The features parquet columns and the API's case fields are public contracts: pinned here
against the names they had before the schema was unified (issue 10).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from embed.cases import CaseFields
from embed.datasets.base import CaseRecord
from index.schemas import CaseRow
from index.store import _ROW_COLS, SQLiteStore, StoredCase

ROOT = Path(__file__).resolve().parents[1]

#: `cxr embed` parquet columns, in order, with their arrow types (the contract of docs/transfer.md).
FEATURES_COLUMNS = [
    ("case_id", "string"), ("image_path", "string"), ("source", "string"), ("patient", "string"),
    ("findings", "list<item: string>"), ("survival", "bool"), ("intubated", "bool"),
    ("intubation_present", "bool"), ("went_icu", "bool"), ("in_icu", "bool"),
    ("needed_supplemental_O2", "bool"), ("extubated", "bool"), ("view", "string"), ("sex", "string"),
    ("age", "double"), ("day_offset", "double"), ("embedding", "fixed_size_list<item: float>[4]"),
]
#: The API's case (search hits, /v1/cases/{id}).
API_CASE_FIELDS = {"id", "sha256", "source", "patient", "view", "sex", "age", "day_offset", "findings",
                   "prognosis", "licence", "extra"}


def _record(i: int = 0) -> CaseRecord:
    return CaseRecord(case_id=f"s/{i}.png", image_path=f"/data/{i}.png", source="s", patient="p_1", view="PA",
                      sex="F", age=61.0, day_offset=2.0, findings=["Pneumonia"], prognosis={"survival": True},
                      licence="CC-BY", extra={"ward": "x"})


def test_features_parquet_columns_are_unchanged():
    from embed.export import features_table

    table = features_table([_record(0), _record(1)], np.ones((2, 4), np.float32), metadata={"format": "x"})
    assert [(f.name, str(f.type)) for f in table.schema] == FEATURES_COLUMNS
    assert table.column("survival").to_pylist() == [True, True] and table.column("went_icu").to_pylist() == [None] * 2


def test_api_case_fields_are_unchanged():
    from search_api.schemas import CaseOut

    assert set(CaseRow.model_fields) == API_CASE_FIELDS
    assert set(CaseOut.model_fields) == API_CASE_FIELDS | {"image_url"}
    assert "image_path" not in CaseRow.model_fields  # the image location never leaves the server


def test_every_form_derives_from_the_base_model(tmp_path):
    shared = set(CaseFields.model_fields)
    assert set(CaseRecord.model_fields) == shared | {"case_id", "image_path"}
    assert set(StoredCase.model_fields) == shared | {"id", "sha256", "image_path", "ref"}
    assert set(CaseRow.model_fields) == shared | {"id", "sha256"}
    store = SQLiteStore(tmp_path / "s.sqlite", create=True)
    cols = {r[1] for r in store._conn().execute("PRAGMA table_info(cases)")}
    assert cols == shared | {"id", "sha256", "image_path", "ref", "deleted"}
    assert [c.strip() for c in _ROW_COLS.split(",")] == ["id", "sha256", *CaseFields.model_fields]
    rec = _record()
    store.add([StoredCase(id=1, sha256="a" * 64, image_path=rec.image_path, **rec.case_fields())])
    row = store.get_one(1)
    assert row.model_dump(exclude={"id", "sha256"}) == rec.case_fields()
    store.close()


def test_adding_a_field_is_one_edit(tmp_path):
    """Copy the packages, add one line to CaseFields, and every form carries the new field."""
    for pkg in ("embed", "index"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    cases = tmp_path / "embed" / "cases.py"
    src = cases.read_text()
    anchor = "    licence: str | None = Field("
    assert src.count(anchor) == 1
    cases.write_text(src.replace(anchor, "    ward: str | None = None\n" + anchor))  # the one edit
    probe = textwrap.dedent("""
        import sqlite3, sys
        import numpy as np
        from embed.datasets.base import CaseRecord
        from embed.export import features_table
        from index.schemas import CaseRow
        from index.store import SQLiteStore, StoredCase
        rec = CaseRecord(case_id="s/1", image_path="/x.png", source="s", ward="B4")
        assert features_table([rec], np.ones((1, 2), np.float32), metadata={}).column("ward").to_pylist() == ["B4"]
        store = SQLiteStore(sys.argv[1], create=True)
        store.add([StoredCase(id=1, sha256="a" * 64, image_path=rec.image_path, **rec.case_fields())])
        row = store.get_one(1)
        assert isinstance(row, CaseRow) and row.ward == "B4", row
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "s.sqlite")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert {r[1] for r in sqlite3.connect(tmp_path / "s.sqlite").execute("PRAGMA table_info(cases)")} >= {"ward"}
