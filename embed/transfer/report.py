"""Write a transfer result: JSON (machine-readable), markdown table, ROC and calibration PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from embed.transfer.experiment import TransferResult
from embed.transfer.plots import calibration_plot, roc_plot


def _fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def markdown_table(summary: dict) -> str:
    """The headline table: one row per model with AUC [95% CI], patients, positives."""
    c = summary["counts"]
    unit = {"image": f"{c['rows']} images, grouped by patient",
            "first": "one row each: their earliest frontal image",
            "mean": "one row each: their mean embedding"}[summary["aggregate"]]
    lines = [
        f"Target `{summary['target']}` (positive = True): {c['patients']} patients ({unit}), "
        f"{c['positive_patients']} positive patients; {c['dropped_unknown_target']} rows dropped "
        f"(unknown target), {c.get('dropped_lateral', 0)} lateral views dropped. "
        f"{summary['folds']}-fold patient-grouped CV, seed {summary['seed']}, "
        f"{summary['bootstrap']['n_boot']} patient bootstrap resamples.",
        "",
        "| features | AUC | 95% CI | Brier | patients | positives |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in summary["results"].items():
        feats = name
        if name != "image" and summary["tabular"]:
            feats += f" ({', '.join(summary['tabular'])})"
        lines.append(f"| {feats} | {_fmt(r['auc'])} | [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                     f"{_fmt(r['brier'], 3)} | {c['patients']} | {c['positive_patients']} |")
    base = c.get("dropped_present_at_baseline")
    if base:
        lines += ["", f"Excluded {base['patients']} patients ({base['rows']} rows) whose earliest image already had "
                      f"{' or '.join(base['columns'])} = True (prognosis, not detection)."]
    missing = {k: v for k, v in c.get("missing_tabular", {}).items() if v}
    if missing:
        lines += ["", "Missing tabular values (imputed inside the folds, with a missing indicator): "
                  + ", ".join(f"{k} {v}" for k, v in missing.items()) + "."]
    for name, d in summary.get("differences", {}).items():
        lines += ["", f"AUC difference {name}: {_fmt(d['delta'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}] "
                      f"(paired patient bootstrap)."]
    return "\n".join(lines) + "\n"


def write_report(result: TransferResult, out_dir: str | Path) -> dict[str, str]:
    """Write report.json, report.md, roc.png, calibration.png under ``out_dir`` (prefixed by the target)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = result.summary
    stem = s["target"]
    title = f"{stem}: {s['counts']['patients']} patients, {s['counts']['positive_patients']} positive"
    files = {
        "json": str(out / f"{stem}_report.json"),
        "markdown": str(out / f"{stem}_report.md"),
        "roc": str(roc_plot(result.data.y, result.scores, s["results"], out / f"{stem}_roc.png", title)),
        "calibration": str(calibration_plot(result.data.y, result.scores, out / f"{stem}_calibration.png", title)),
    }
    s["files"] = files
    Path(files["markdown"]).write_text(markdown_table(s))
    tmp = Path(files["json"]).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(s), indent=2, default=_json_default, allow_nan=False))
    tmp.replace(files["json"])
    result.files = files
    return files


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clean(o):
    """NaN -> None so the JSON is strict (readable by any parser)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and math.isnan(o):
        return None
    return o
