"""Pure helpers of the page (no Streamlit): overlay blending and the texts shown for a hit.

Kept apart from ``app.py`` so they are unit-tested without a browser and the
page script stays short.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
from PIL import Image

PROGNOSIS_LABELS = {
    "survival": ("survived", "known"),
    "intubated": ("intubated", "known"),
    "intubation_present": ("intubated at imaging", "known"),
    "went_icu": ("went to ICU", "known"),
    "in_icu": ("in ICU at imaging", "known"),
    "needed_supplemental_O2": ("needed supplemental O2", "known"),
    "extubated": ("extubated", "known"),
}


def decode_png(data: str | bytes | None) -> Image.Image | None:
    """Decode a base64 (optionally data-URL) PNG from the API; None when absent or unreadable."""
    if not data:
        return None
    try:
        if isinstance(data, str):
            if data.startswith("data:"):
                data = data.split(",", 1)[1]
            data = base64.b64decode(data, validate=False)
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (binascii.Error, OSError, ValueError):
        return None


def _heat_colours(a: np.ndarray) -> np.ndarray:
    """A small 'jet'-like colormap (blue -> cyan -> yellow -> red) without matplotlib."""
    r = np.clip(1.5 - np.abs(4 * a - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * a - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * a - 1), 0, 1)
    return np.stack([r, g, b], axis=-1)


def blend_attention(query: Image.Image, attention: Image.Image | np.ndarray | None,
                    opacity: float = 0.5) -> Image.Image:
    """Overlay the attention map on the grey query, client-side.

    The map is stretched to [0, 1] and resized to the query (bilinear); each
    pixel's colour weight is ``opacity * attention`` so weak regions stay grey.
    """
    grey = np.asarray(query.convert("L"), dtype=np.float32) / 255.0
    base = np.repeat(grey[..., None], 3, axis=-1)
    if attention is None or opacity <= 0:
        return Image.fromarray((base * 255).astype(np.uint8), "RGB")
    opacity = float(np.clip(opacity, 0.0, 1.0))
    if isinstance(attention, Image.Image) and attention.mode in ("RGBA", "LA", "PA"):
        # The API's overlay-ready heat map: colours in RGB, attention in alpha.
        rgba = np.asarray(attention.convert("RGBA").resize(query.size, Image.BILINEAR), dtype=np.float32) / 255.0
        w = opacity * rgba[..., 3:4]
        out = base * (1 - w) + rgba[..., :3] * w
        return Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8), "RGB")
    if isinstance(attention, Image.Image):
        att = np.asarray(attention.convert("L"), dtype=np.float32)
    else:
        att = np.asarray(attention, dtype=np.float32)
    lo, hi = float(att.min()), float(att.max())
    att = (att - lo) / (hi - lo) if hi > lo else np.zeros_like(att)
    att_img = Image.fromarray((att * 255).astype(np.uint8), "L").resize(query.size, Image.BILINEAR)
    att = np.asarray(att_img, dtype=np.float32) / 255.0
    w = (opacity * att)[..., None]
    out = base * (1 - w) + _heat_colours(att) * w
    return Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8), "RGB")


def prognosis_sentence(field: str, summary: dict[str, Any]) -> str | None:
    """'7 of 9 known survived' from {"known": 9, "positive": 7}; None when nothing is known."""
    known = int(summary.get("known") or 0)
    if known <= 0:
        return None
    positive = int(summary.get("positive") or 0)
    label = PROGNOSIS_LABELS.get(field, (field.replace("_", " "), "known"))[0]
    return f"{positive} of {known} known {label}"


def prognosis_sentences(prognosis: dict[str, Any] | None) -> list[str]:
    """All non-empty neighbour outcome sentences, in the order of PROGNOSIS_LABELS."""
    prognosis = prognosis or {}
    order = [f for f in PROGNOSIS_LABELS if f in prognosis] + [f for f in prognosis if f not in PROGNOSIS_LABELS]
    out = []
    for f in order:
        if isinstance(prognosis[f], dict):
            s = prognosis_sentence(f, prognosis[f])
            if s:
                out.append(s)
    return out


def hit_case(hit: dict[str, Any]) -> dict[str, Any]:
    """The case record of a hit, whether the API nests it under "case" or not."""
    case = hit.get("case")
    return case if isinstance(case, dict) else hit


def hit_id(hit: dict[str, Any]) -> int | None:
    case = hit_case(hit)
    for key in ("id", "case_id"):
        if case.get(key) is not None:
            return int(case[key])
    return None


def fmt_age_sex(case: dict[str, Any]) -> str:
    age = case.get("age")
    sex = case.get("sex")
    age_s = f"{age:g} y" if isinstance(age, (int, float)) else "age ?"
    return f"{age_s}, {sex or 'sex ?'}"


def fmt_findings(case: dict[str, Any]) -> str:
    findings = case.get("findings") or []
    return ", ".join(findings) if findings else "no label"


def fmt_prognosis(case: dict[str, Any]) -> str:
    """Known outcome fields of one case, e.g. 'survival: yes · went ICU: no'."""
    prog = case.get("prognosis") or {}
    parts = []
    for f, v in prog.items():
        if v is None:
            continue
        parts.append(f"{f.replace('_', ' ')}: {'yes' if v else 'no'}")
    return " · ".join(parts)


def vote_rows(vote: dict[str, float] | None, top: int = 10) -> list[tuple[str, float]]:
    """Labels and probabilities of the kNN vote, most likely first."""
    items = [(str(k), float(v)) for k, v in (vote or {}).items() if v is not None]
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return items[:top]


#: extra fields never shown: file locations and names (a source's file name can embed its patient id).
_HIDDEN_EXTRA = ("path", "file", "folder", "dir")


def metadata_rows(case: dict[str, Any]) -> list[tuple[str, str]]:
    """Flattened (field, value) rows of a case for the detail view; no file names or locations."""
    rows: list[tuple[str, str]] = []
    for key, value in case.items():
        if key in ("image_path", "image_url", "sha256", "extra", "prognosis"):
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        rows.append((key, "" if value is None else str(value)))
    for key, value in (case.get("prognosis") or {}).items():
        rows.append((f"prognosis.{key}", "unknown" if value is None else ("yes" if value else "no")))
    for key, value in (case.get("extra") or {}).items():
        if any(w in key.lower() for w in _HIDDEN_EXTRA) or value in (None, ""):
            continue
        rows.append((f"extra.{key}", str(value)))
    return rows


def ood_warning(result: dict[str, Any]) -> str | None:
    """The warning shown above the results when the API's guard flagged the query (None otherwise)."""
    ood = result.get("ood") or {}
    if not ood.get("flagged"):
        return None
    reason = ood.get("reason") or "unusual image"
    score = ood.get("score")
    figure = f" (in-distribution score {score:.3f})" if isinstance(score, (int, float)) else ""
    return (f"Out-of-distribution query: {reason}{figure}. "
            "The similar cases and the vote below are unreliable for this image.")


def calibrated_rows(calibrated: dict[str, Any] | None, top: int = 5) -> list[str]:
    """'COVID-19 72 % (7 of 10 neighbours)' per finding with a calibrated probability, highest first."""
    rows = [(name, c) for name, c in (calibrated or {}).items() if c.get("probability") is not None]
    rows.sort(key=lambda kv: -float(kv[1]["probability"]))
    return [f"{name} {float(c['probability']):.0%} ({c.get('neighbours', 0)} of {c.get('of', 0)} neighbours)"
            for name, c in rows[:top]]
