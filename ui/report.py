"""The downloadable case report: one self-contained, print-ready HTML file (images inline).

Why HTML and not PDF: every browser prints it to PDF with its own dialog, and it needs no
PDF library on the page's machine. It holds the query (standardized image, facts, view),
the vote with its counts, the neighbours with findings and outcomes, and the disclaimer;
never the uploader's file name or any identifier beyond the index's short pseudonyms.
"""

from __future__ import annotations

import base64
import html
import time
from typing import Any

from ui import evidence
from ui.render import fmt_age_sex, fmt_findings, fmt_prognosis, hit_case, hit_id

DISCLAIMER = ("Research tool, not a medical device. The neighbours are public, de-identified cases; the vote is a "
              "similarity-weighted share of them, not a diagnosis or a probability of disease.")


def _img(png: bytes | str | None, alt: str, width: int) -> str:
    if not png:
        return f"<div class='noimg'>{html.escape(alt)}: image unavailable</div>"
    b64 = png if isinstance(png, str) else base64.b64encode(png).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}' width='{width}'>"


def report_html(result: dict[str, Any], thumbs: dict[int, bytes], *, query_label: str) -> str:
    """The report for one search. ``query_label`` names the query without the file name ("uploaded film")."""
    e = html.escape
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Similar-case report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px;vertical-align:top;"
        "text-align:left;font-size:0.9rem}.disc{border:1px solid #c33;padding:0.5em;color:#900}",
        "@media print{.disc{break-inside:avoid}tr{break-inside:avoid}}",
        "</style>", evidence.VOTE_CSS.replace("<style>", "<style>"), "</head><body>",
        "<h1>Similar-case report</h1>",
        f"<p class='disc'>{e(DISCLAIMER)}</p>",
        f"<p>Generated {e(when)} UTC · model {e(str(result.get('model_sha256') or '?'))} · "
        f"{int(result.get('count') or 0)} neighbours</p>",
        "<h2>Query</h2>",
        f"<table><tr><td>{_img(result.get('query_png'), 'query', 256)}</td><td>",
        f"<p><b>{e(query_label)}</b></p><p>{e(evidence.facts_text(result))}</p><p>{e(evidence.view_text(result))}</p>",
    ]
    if result.get("query_case_id") is not None:
        parts.append(f"<p>This film is already in the index as case {int(result['query_case_id'])}.</p>")
    parts += ["</td></tr></table>", "<h2>Vote of the neighbours</h2>", evidence.vote_html(result),
              f"<p><i>{e(evidence.HOW_TO_READ)}</i></p>", "<h2>Outcomes of the neighbours</h2>"]
    sentences = evidence.outcome_sentences(result.get("prognosis"))
    parts.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in sentences) + "</ul>" if sentences
                 else "<p>No outcome is recorded for these neighbours.</p>")
    parts += ["<h2>Neighbours (grouped by patient)</h2>",
              "<table><tr><th>image</th><th>rank · similarity</th><th>patient · day</th><th>findings</th>"
              "<th>view · age, sex · source</th><th>outcomes</th></tr>"]
    for group in evidence.group_hits(result.get("hits") or []):
        for h in group:
            c = hit_case(h)
            cid = hit_id(h)
            parts.append(
                f"<tr><td>{_img(thumbs.get(int(cid)) if cid is not None else None, f'case {cid}', 96)}</td>"
                f"<td>#{int(h.get('rank') or 0)} · {float(h.get('similarity') or 0):.3f}<br>case {cid}</td>"
                f"<td>{e(evidence.short_patient(c.get('patient')))} · {e(evidence.day_text(c))}</td>"
                f"<td>{e(fmt_findings(c))}</td>"
                f"<td>{e(str(c.get('view') or 'view ?'))} · {e(fmt_age_sex(c))} · {e(str(c.get('source') or ''))}</td>"
                f"<td>{e(fmt_prognosis(c) or '–')}</td></tr>")
    parts += ["</table>", f"<p class='disc'>{e(DISCLAIMER)}</p>", "</body></html>"]
    return "".join(parts)
