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
    assert table.splitlines()[0].split()[:3] == ["rank", "id", "sim"]
    assert len([ln for ln in table.splitlines() if ln[:1].isdigit()]) >= 4 and "vote" in table

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
