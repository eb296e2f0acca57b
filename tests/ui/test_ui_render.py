"""Pure page helpers: overlay blending, outcome sentences, formatting (no server needed)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ui import render


def _png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_decode_png_accepts_base64_and_data_url_and_rejects_garbage():
    img = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L")
    b64 = _png_b64(img)
    assert np.array_equal(np.asarray(render.decode_png(b64)), np.asarray(img))
    assert render.decode_png("data:image/png;base64," + b64).size == (8, 8)
    assert render.decode_png("bm90IGEgcG5n") is None  # base64 of "not a png"
    assert render.decode_png(None) is None


def test_blend_grey_attention_colours_only_where_attention_is_high():
    query = Image.new("L", (32, 32), 128)
    att = np.zeros((4, 4), np.float32)
    att[0, 0] = 1.0  # top-left hot
    out = np.asarray(render.blend_attention(query, att, opacity=1.0)).astype(int)
    assert out.shape == (32, 32, 3)
    # far from the hot cell: still the grey query (R == G == B == 128)
    assert tuple(out[31, 31]) == (128, 128, 128)
    # at the hot cell: coloured, warm end of the heat colormap (red well above blue)
    assert out[0, 0, 0] - out[0, 0, 2] > 60


def test_blend_rgba_overlay_scales_with_opacity():
    query = Image.new("L", (16, 16), 0)
    heat = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    zero = np.asarray(render.blend_attention(query, heat, opacity=0.0))
    half = np.asarray(render.blend_attention(query, heat, opacity=0.5))
    full = np.asarray(render.blend_attention(query, heat, opacity=1.0))
    assert zero[..., 0].max() == 0
    assert 120 <= half[0, 0, 0] <= 135
    assert full[0, 0, 0] == 255 and full[0, 0, 1] == 0


def test_blend_without_attention_returns_grey_rgb():
    query = Image.new("L", (10, 12), 77)
    out = render.blend_attention(query, None, 0.8)
    assert out.mode == "RGB" and out.size == (10, 12)
    assert set(np.unique(np.asarray(out))) == {77}


def test_prognosis_sentences():
    prog = {
        "went_icu": {"known": 4, "positive": 1, "share": 0.25},
        "survival": {"known": 9, "positive": 7, "share": 0.78},
        "intubated": {"known": 0, "positive": 0, "share": None},
    }
    assert render.prognosis_sentences(prog) == ["7 of 9 known survived", "1 of 4 known went to ICU"]
    assert render.prognosis_sentences({}) == []


@pytest.mark.parametrize(
    "case, expected",
    [({"age": 65.0, "sex": "M"}, "65 y, M"), ({"age": None, "sex": None}, "age ?, sex ?")],
)
def test_fmt_age_sex(case, expected):
    assert render.fmt_age_sex(case) == expected


def test_vote_rows_sorted_and_metadata_hides_locations():
    assert render.vote_rows({"a": 0.2, "b": 0.7, "c": 0.1}) == [("b", 0.7), ("a", 0.2), ("c", 0.1)]
    case = {"id": 3, "findings": ["COVID-19", "ARDS"], "prognosis": {"survival": False},
            "image_url": "/v1/cases/3/image", "extra": {"image_path": "/x", "doi": "10.1/x", "note": "",
                      "filename": "00000061_012.png", "folder": "images"}}
    rows = dict(render.metadata_rows(case))
    assert rows["findings"] == "COVID-19, ARDS"
    assert rows["prognosis.survival"] == "no"
    assert rows["extra.doi"] == "10.1/x"
    assert "image_url" not in rows and "extra.image_path" not in rows and "extra.note" not in rows
    assert "extra.filename" not in rows and "extra.folder" not in rows


def test_hit_accessors_handle_nested_case():
    hit = {"rank": 1, "similarity": 0.9, "case": {"id": 17, "findings": []}}
    assert render.hit_id(hit) == 17
    assert render.fmt_findings(render.hit_case(hit)) == "no label"


def test_ood_warning_only_for_flagged_queries_and_calibrated_rows():
    from ui import render

    assert render.ood_warning({"ood": None}) is None
    assert render.ood_warning({"ood": {"flagged": False, "score": 0.4}}) is None
    msg = render.ood_warning({"ood": {"flagged": True, "reason": "not a chest radiograph", "score": 0.0}})
    assert msg and "not a chest radiograph" in msg and "unreliable" in msg
    rows = render.calibrated_rows({"A": {"probability": 0.2, "neighbours": 2, "of": 10},
                                   "B": {"probability": 0.8, "neighbours": 8, "of": 10},
                                   "C": {"probability": None, "neighbours": 1, "of": 10}})
    assert rows == ["B 80% (8 of 10 neighbours)", "A 20% (2 of 10 neighbours)"]
