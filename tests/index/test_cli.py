"""`cxr index ...` and `cxr search` end to end on a generated image folder."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from tests.index.conftest import write_png


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "imgs"
    for i in range(8):
        write_png(root / ("Normal" if i % 2 else "Pneumonia") / f"{i:08d}_000.png", seed=300 + i)
    (root / "Normal" / "00000099_000.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # unreadable: skipped
    return root


def test_build_stats_search_remove_rebuild(tmp_path, folder, tiny_ckpt, other_ckpt, capsys):
    out = tmp_path / "idx"
    spec = f"imagefolder:{folder}"
    common = ["--model", str(tiny_ckpt), "--workers", "0", "--no-progress"]
    assert main(["index", "build", *common, "--out", str(out), spec]) == 0
    text = capsys.readouterr().out
    assert "8 cases" in text
    assert main(["index", "build", *common, "--out", str(out), spec]) == 0  # twice: same count
    assert "8 cases" in capsys.readouterr().out

    assert main(["index", "stats", "--index", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["cases"] == 8 and st["index_type"] == "flat" and sum(st["by_finding"].values()) >= 8

    assert main(["search", "--index", str(out), "3", "-k", "4"]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].startswith("query view: unknown") and "every view" in lines[0]  # no view, no classifier
    header = next(ln for ln in lines if ln.startswith("rank"))
    assert header.split()[:5] == ["rank", "id", "sim", "patient", "day"] and header.split()[-1] == "prognosis"
    assert len([ln for ln in lines if ln[:1].isdigit()]) >= 4 and "vote" in table and "patients)" in table

    img = folder / "Normal" / "00000001_000.png"
    assert main(["search", "--index", str(out), str(img), "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["hits"]) == 2 and res["query_id"] is not None
    assert all("image_path" not in h["case"] for h in res["hits"])

    assert main(["index", "remove", "--index", str(out), "--ids", "1", "2"]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert main(["index", "rebuild", "--index", str(out), "--index-type", "hnsw"]) == 0
    assert "6 cases, hnsw" in capsys.readouterr().out

    # Another model: refused with a message that says how to fix, exit code 2, no traceback.
    assert main(["search", "--index", str(out), "--model", str(other_ckpt), "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "cxr index build" in err and "Traceback" not in err


def test_user_errors_exit_2(tmp_path, tiny_ckpt, capsys):
    assert main(["search", "--index", str(tmp_path / "none"), "--model", str(tiny_ckpt), "1"]) == 2
    assert "cxr index build" in capsys.readouterr().err
    assert main(["index", "remove", "--index", str(tmp_path)]) == 2
    assert "--ids" in capsys.readouterr().err


def test_search_table_keeps_the_whole_prognosis_and_says_the_view():
    from cli.commands.search import _header, _table
    from index.schemas import CaseRow, Hit, QueryView, SearchResult

    prog = {"survival": True, "intubated": False, "intubation_present": True, "went_icu": True, "in_icu": False}
    hit = Hit(case=CaseRow(id=7, sha256="x", source="covid-chestxray", patient="p_0123456789abcdef", view="PA",
                           day_offset=4.0, findings=["COVID-19"], prognosis=prog), similarity=0.9, rank=1)
    res = SearchResult(hits=[hit], vote={}, prognosis={}, query_id=12, meta={"view_family": "frontal"},
                       query_view=QueryView(view="PA", family="frontal", source="dicom"),
                       query_facts={"age": 61.0, "sex": "F"})
    row = _table(res).splitlines()[1]
    assert row.endswith("survival=yes, intubated=no, intubation_present=yes, went_icu=yes, in_icu=no")
    assert " 012345 " in row and " 4 " in row  # short pseudonym and day offset
    head = _header(res)
    assert head[0] == "query: age 61, sex F"
    assert head[1] == "query view: PA (from the DICOM ViewPosition); neighbours: frontal films only (--any-view widens)"
    assert head[2] == "this film is already in the index as case 12 (left out of the hits)"


def test_show_defaults_to_the_released_models_standardization(tmp_path, capsys):
    from embed.models import RELEASED_MODEL_PATH
    from tests.index.conftest import write_png

    if not RELEASED_MODEL_PATH.is_file():
        pytest.skip("the released model is not in this checkout")
    src = write_png(tmp_path / "a.png", seed=1)
    assert main(["show", str(src), "--out", str(tmp_path / "p.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["standardize"]["size"] == 128
