"""What the page says about the evidence: the vote on a fixed axis as a hierarchy, per-patient outcomes,
patient grouping, the query's facts and view. Pure functions (no Streamlit), unit-tested.

Why: a share drawn on an axis that ends at the top value, or three equal bars for one
finding and its parents, or outcomes counted per film, all read as more certain than the
neighbours allow. Every figure here carries the counts behind it.
"""

from __future__ import annotations

import html
from typing import Any

from ui.render import PROGNOSIS_LABELS, hit_case

HOW_TO_READ = (
    "How to read this: each bar is the similarity-weighted share of the neighbours that carry the finding "
    "(closer neighbours count more), on a fixed 0–100 % axis. It is not a probability of disease. A finding "
    "implied by another (COVID-19 is a viral pneumonia, which is a pneumonia) is indented under it, so the "
    "lines are not independent. Read the counts: few neighbours or few patients mean little. Outcomes count "
    "each patient once, with their latest known value."
)


def vote_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The vote lines in display order; built flat from ``vote`` when the API sends no ``vote_detail``."""
    detail = result.get("vote_detail")
    if isinstance(detail, list) and detail:
        return [dict(r) for r in detail]
    vote = result.get("vote") or {}
    return [{"finding": f, "share": float(v), "depth": 0, "neighbours": None, "patients": None, "calibrated": None}
            for f, v in sorted(vote.items(), key=lambda kv: (-kv[1], kv[0]))]


def counts_text(row: dict[str, Any]) -> str:
    """'3 neighbours, 2 patients' (singular where one)."""
    n, m = row.get("neighbours"), row.get("patients")
    if n is None:
        return "counts not reported"
    return f"{n} neighbour{'s' if n != 1 else ''}, {m} patient{'s' if m != 1 else ''}"


def vote_html(result: dict[str, Any], top: int = 15) -> str:
    """The vote as indented rows with bars on a fixed 0–100 % track, the share and its counts."""
    rows = vote_rows(result)[:top]
    if not rows:
        return "<p class='cxr-muted'>The neighbours carry no labels to vote with.</p>"
    out = ["<div class='cxr-vote' data-testid='cxr-vote'>",
           "<div class='cxr-vrow cxr-axisrow'><div class='cxr-vname'></div><div class='cxr-axis'>"
           "<span>0 %</span><span>50 %</span><span>100 %</span></div><div class='cxr-vnum'></div></div>"]
    for r in rows:
        share = max(0.0, min(1.0, float(r.get("share") or 0.0)))
        depth = int(r.get("depth") or 0)
        name = html.escape(str(r.get("finding")))
        cal = r.get("calibrated")
        cal_txt = f"<br>calibrated {float(cal):.0%}" if cal is not None else ""
        out.append(
            f"<div class='cxr-vrow' data-finding='{name}' data-depth='{depth}'>"
            f"<div class='cxr-vname' style='padding-left:{1.2 * depth:.1f}em'>{'└ ' if depth else ''}{name}</div>"
            f"<div class='cxr-track'><div class='cxr-bar' style='width:{share * 100:.1f}%'></div></div>"
            f"<div class='cxr-vnum'><b>{share:.0%}</b> · {html.escape(counts_text(r))}{cal_txt}</div></div>")
    out.append("</div>")
    return "".join(out)


VOTE_CSS = """<style>
.cxr-vote{font-size:0.95rem;margin:0.3rem 0 0.6rem 0}
.cxr-axis{flex:1;display:flex;justify-content:space-between;color:#888;font-size:0.75rem;border-bottom:1px solid #ccc}
.cxr-vrow{display:flex;align-items:center;gap:0.6em;margin:0.15em 0}
.cxr-vname{width:11em;box-sizing:border-box;flex:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.cxr-track{flex:1;height:0.9em;background:#eceff3;border-radius:3px;position:relative}
.cxr-bar{height:100%;background:#4c78a8;border-radius:3px}
.cxr-vnum{width:16em;flex:none;font-size:0.9em;white-space:nowrap}
.cxr-muted{color:#777}
</style>"""


def patient_key(case: dict[str, Any]) -> str:
    return str(case.get("patient") or f"case {case.get('id')}")


def short_patient(pseudonym: str | None) -> str:
    """'p_1a2b3c4d5e6f7a8b' -> '1a2b3c': enough to tell patients apart on one page, never the source id."""
    if not pseudonym:
        return "unknown"
    s = str(pseudonym)
    return (s[2:] if s.startswith("p_") else s)[:6]


def day_text(case: dict[str, Any]) -> str:
    d = case.get("day_offset")
    return f"day {d:g}" if isinstance(d, (int, float)) else "day ?"


def group_hits(hits: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Hits grouped by patient, groups in the order of their best-ranked film, films by day offset."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for h in hits:
        groups.setdefault(patient_key(hit_case(h)), []).append(h)

    def day(h: dict[str, Any]) -> float:
        d = hit_case(h).get("day_offset")
        return float(d) if isinstance(d, (int, float)) else float("-inf")

    return [sorted(g, key=day) for g in groups.values()]


def outcome_sentences(prognosis: dict[str, Any] | None) -> list[str]:
    """'2 of 3 patients survived (5 films)': per patient when the API counts patients, else per film."""
    out = []
    prognosis = prognosis or {}
    order = [f for f in PROGNOSIS_LABELS if f in prognosis] + [f for f in prognosis if f not in PROGNOSIS_LABELS]
    for f in order:
        s = prognosis[f]
        if not isinstance(s, dict) or not s.get("known"):
            continue
        label = PROGNOSIS_LABELS.get(f, (f.replace("_", " "), ""))[0]
        films = int(s["known"])
        if s.get("patients_known") is not None:
            pk, pp = int(s["patients_known"]), int(s.get("patients_positive") or 0)
            out.append(f"{pp} of {pk} patient{'s' if pk != 1 else ''} {label} ({films} film{'s' if films != 1 else ''})")
        else:
            out.append(f"{int(s.get('positive') or 0)} of {films} films {label}")
    return out


_SOURCES = {"dicom": "from the DICOM header", "index": "as recorded in the index", "given": "as you set it",
            "classifier": "estimated by the view classifier", "unknown": "unknown"}


def view_text(result: dict[str, Any]) -> str:
    """'View: PA (from the DICOM header) · neighbours: frontal films only'."""
    qv = result.get("query_view") or {}
    said = qv.get("view") or qv.get("family") or "unknown"
    how = _SOURCES.get(qv.get("source") or "unknown", qv.get("source"))
    if qv.get("source") == "classifier" and qv.get("lateral_score") is not None:
        how += f", lateral score {float(qv['lateral_score']):.2f}"
    fam = result.get("view_family_used")
    scope = f"neighbours: {fam} films only" if fam else "neighbours: every view"
    return f"View: {said} ({how}) · {scope}"


def facts_text(result: dict[str, Any]) -> str:
    """The query's own de-identified facts, e.g. 'age 61 · sex F · body part CHEST · modality CR'."""
    facts = result.get("query_facts") or {}
    parts = []
    for key in ("age", "sex", "view", "body_part", "modality"):
        v = facts.get(key)
        if v is None or v == "":
            continue
        parts.append(f"{key.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{key.replace('_', ' ')} {v}")
    return " · ".join(parts) if parts else "no age, sex, view or body part recorded in the file"


_FIELD_LABELS = {"id": "case", "source": "source", "patient": "patient (pseudonym)", "view": "view", "sex": "sex",
                 "age": "age (years)", "day_offset": "day offset", "findings": "findings", "licence": "licence"}


def readable_rows(case: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of a case for people: plain labels, outcomes in words, no file names or hashes."""
    rows: list[tuple[str, str]] = []
    for key, label in _FIELD_LABELS.items():
        v = case.get(key)
        if key == "patient":
            v = short_patient(v) if v else None
        if isinstance(v, list):
            v = ", ".join(map(str, v)) or None
        if isinstance(v, float):
            v = f"{v:g}"
        rows.append((label, "unknown" if v in (None, "") else str(v)))
    for key, v in (case.get("prognosis") or {}).items():
        label = PROGNOSIS_LABELS.get(key, (key.replace("_", " "), ""))[0]
        rows.append((label, "unknown" if v is None else ("yes" if v else "no")))
    for key, v in (case.get("extra") or {}).items():
        if any(w in key.lower() for w in ("path", "file", "folder", "dir", "url", "doi")) or v in (None, ""):
            continue
        rows.append((key.replace("_", " "), str(v)))
    return rows
