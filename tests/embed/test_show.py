"""``cxr show``: writes what the model sees, prints only de-identified metadata."""

from __future__ import annotations

import json

import numpy as np

from cli.main import main
from embed.image import read_image
from embed.standardize import StandardizeConfig, standardize
from tests.embed.dicom_fixtures import IDENTIFYING, make_dicom


def test_show_writes_standardized_png_and_prints_deidentified_meta(tmp_path, capsys):
    stored = (np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 3)
    src = tmp_path / "scan.dat"  # the name says nothing: DICOM is found by content
    src.write_bytes(make_dicom(stored, bits_stored=12, photometric="MONOCHROME1", PatientSex="F", PatientAge="061Y"))
    out = tmp_path / "prev" / "preview.png"
    assert main(["show", str(src), "--out", str(out), "--size", "64", "--json"]) == 0
    printed = capsys.readouterr().out
    info = json.loads(printed)
    assert info["format"] == "dicom" and info["sex"] == "F" and info["age"] == 61.0
    assert info["standardize"]["size"] == 64
    assert not [v for v in IDENTIFYING.values() if v in printed]
    preview = read_image(out)
    assert preview.pixels.shape == (64, 64)
    expected = standardize(read_image(src), StandardizeConfig(size=64))
    np.testing.assert_allclose(preview.pixels / 255.0, expected, atol=1 / 255 + 1e-6)


def test_show_no_standardize_keeps_size(tmp_path, capsys):
    src = tmp_path / "x.dcm"
    src.write_bytes(make_dicom(np.arange(12 * 7, dtype=np.uint8).reshape(12, 7)))
    out = tmp_path / "raw.png"
    assert main(["show", str(src), "-o", str(out), "--no-standardize"]) == 0
    assert read_image(out).pixels.shape == (12, 7)
    assert "modality: CR" in capsys.readouterr().out


def test_show_user_errors_exit_2(tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["show", str(text), "--out", str(tmp_path / "p.png")]) == 2
    assert "not a PNG, JPEG or DICOM" in capsys.readouterr().err
    src = tmp_path / "ok.dcm"
    src.write_bytes(make_dicom(np.zeros((4, 4), np.uint8)))
    assert main(["show", str(src), "--out", str(tmp_path / "p.jpg")]) == 2
    assert main(["show", str(src), "--out", str(tmp_path / "p.png"), "--size", "2"]) == 2
    assert "size must be" in capsys.readouterr().err


def test_show_uses_the_checkpoint_standardization(tmp_path, capsys):
    from embed.models import create_model, save_checkpoint

    ckpt = tmp_path / "model.pt"
    std = StandardizeConfig(size=48, equalize="clahe", clahe_clip=3.0)
    save_checkpoint(ckpt, create_model("cxr_test_tiny"), std_cfg=std, labels=["a"])
    src = tmp_path / "x.dcm"
    src.write_bytes(make_dicom((np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) ** 2) % 4000, bits_stored=12))
    out = tmp_path / "p.png"
    assert main(["show", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["standardize"]["fingerprint"] == std.fingerprint()
    np.testing.assert_allclose(read_image(out).pixels / 255.0, standardize(read_image(src), std), atol=1 / 255 + 1e-6)
    assert main(["show", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--size", "32"]) == 0
    assert read_image(out).pixels.shape == (32, 32)
