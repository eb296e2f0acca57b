"""`cxr datasets inspect` and `cxr datasets kinds` through the real CLI entry point."""

from __future__ import annotations

import json

from cli.main import main
from tests.embed.datasets_fixtures import write_image


def _kermany(tmp_path):
    write_image(tmp_path / "k" / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    write_image(tmp_path / "k" / "train" / "PNEUMONIA" / "person1_virus_1.jpeg")
    (tmp_path / "k" / "test" / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
    (tmp_path / "k" / "test" / "PNEUMONIA" / "x.jpeg").write_text("not a jpeg")
    write_image(tmp_path / "f" / "Pneumonia" / "00000001_000.png")
    return [f"kermany:{tmp_path / 'k'}", f"imagefolder:{tmp_path / 'f'}"]


def test_inspect_prints_counts_and_skipped(tmp_path, capsys):
    assert main(["datasets", "inspect", *_kermany(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 records from 2 source(s)" in out
    assert "kermany: 2 records, 2 patients" in out
    assert "imagefolder:f: 1 records" in out
    assert "skipped: 1 rows" in out and "not a PNG/JPEG/DICOM image" in out
    assert "test/PNEUMONIA/x.jpeg" not in out  # the list only with --skipped
    assert main(["datasets", "inspect", "--skipped", *_kermany(tmp_path)]) == 0
    assert "test/PNEUMONIA/x.jpeg" in capsys.readouterr().out


def test_verify_decode_catches_a_truncated_image(tmp_path, capsys):
    specs = _kermany(tmp_path)
    good = (tmp_path / "k" / "train" / "NORMAL" / "IM-0001-0001.jpeg").read_bytes()
    (tmp_path / "k" / "train" / "NORMAL" / "IM-0002-0001.jpeg").write_bytes(good[: len(good) // 3])
    assert main(["datasets", "inspect", "--json", specs[0]]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3  # the header looks fine
    assert main(["datasets", "inspect", "--json", "--verify", "decode", specs[0]]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 2
    assert any(k.startswith("image unreadable") for k in data["skipped"])


def test_inspect_json(tmp_path, capsys):
    assert main(["datasets", "inspect", "--json", "--skipped", *_kermany(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sources"]["kermany"]["findings"] == {"No Finding": 1, "Pneumonia": 1, "Viral Pneumonia": 1}
    assert data["sources"]["kermany"]["views"] == {"AP": 2}
    assert data["skipped_rows"][0]["ref"] == "test/PNEUMONIA/x.jpeg"


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["datasets", "inspect", f"nosuch:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset kind 'nosuch'") and "kermany" in err
    assert main(["datasets", "inspect", f"kermany:{tmp_path}"]) == 2
    assert "NORMAL" in capsys.readouterr().err


def test_kinds_lists_every_reader_with_options(capsys):
    assert main(["datasets", "kinds"]) == 0
    out = capsys.readouterr().out
    for kind in ("covid-chestxray", "kermany", "imagefolder", "nih14", "chexpert", "dicom", "csv", "padchest",
                 "vindr"):
        assert kind in out
    assert "include_ct" in out and "patient_pattern" in out and "uncertain" in out
