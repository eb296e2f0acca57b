"""metrics.json -> the markdown tables of results.md (and of docs/results.md)."""

from __future__ import annotations

from typing import Any

METRIC_COLS = (("p_at_1", "P@1"), ("p_at_10", "P@10"), ("map_at_10", "mAP@10"), ("map_at_r", "MAP@R"))
METHOD_NAMES = {"model": "trained encoder", "untrained": "untrained encoder (seed 0)", "pixels": "raw pixels 64x64"}


def _f(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def retrieval_table(result: dict[str, Any]) -> str:
    """Rows: scope x method; columns: retrieval metrics and macro kNN-vote AUC."""
    head = "| queries | method | n | " + " | ".join(n for _, n in METRIC_COLS) + " | kNN AUC (macro) |"
    lines = [head, "|" + "---|" * (len(METRIC_COLS) + 4)]
    methods = result["methods"]
    first = next(iter(methods.values()))
    scopes = [("all", lambda m: m["overall"])] + [
        (src, lambda m, s=src: m["per_source"][s]) for src in first["per_source"]
    ]
    for scope, get in scopes:
        for name, m in methods.items():
            b = get(m)
            cells = " | ".join(_f(b.get(key)) for key, _ in METRIC_COLS)
            lines.append(f"| {scope} | {METHOD_NAMES.get(name, name)} | {b['n_queries']} | {cells} | "
                         f"{_f(b['auc'].get('macro'))} |")
    return "\n".join(lines)


def auc_table(result: dict[str, Any]) -> str:
    """Per-class kNN-vote AUC over all queries, one column per method."""
    methods = result["methods"]
    lines = ["| class | " + " | ".join(METHOD_NAMES.get(m, m) for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for cls in result["classes"]:
        lines.append(f"| {cls} | " + " | ".join(_f(m["overall"]["auc"].get(cls)) for m in methods.values()) + " |")
    return "\n".join(lines)


def task_table(result: dict[str, Any]) -> str:
    methods = result["methods"]
    names = sorted({t for m in methods.values() for t in m["tasks"]})
    if not names:
        return "_no source task has queries in this evaluation_"
    lines = ["| task | pos / neg | " + " | ".join(METHOD_NAMES.get(m, m) for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for t in names:
        any_m = next(m["tasks"][t] for m in methods.values() if t in m["tasks"])
        cells = " | ".join(_f(m["tasks"].get(t, {}).get("auc")) for m in methods.values())
        lines.append(f"| {any_m['title']} | {any_m['n_pos']} / {any_m['n_neg']} | {cells} |")
    return "\n".join(lines)


def same_patient_table(result: dict[str, Any]) -> str:
    """Same-patient recall@1/@5 among the query films of patients with several films, one row per method."""
    methods = result["methods"]
    rows = [(n, m["same_patient"]) for n, m in methods.items() if m.get("same_patient")]
    if not rows or not rows[0][1]["n_queries"]:
        return "_no query patient has several films in this evaluation_"
    lines = ["| method | films (patients) | recall@1 | recall@5 |", "|---|---|---|---|"]
    for name, sp in rows:
        lines.append(f"| {METHOD_NAMES.get(name, name)} | {sp['n_queries']} ({sp['n_patients']}) | "
                     f"{_f(sp.get('recall_at_1'))} | {_f(sp.get('recall_at_5'))} |")
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    """The whole results.md of one evaluation."""
    skipped_absent = {m: v["overall"]["n_absent_class"] for m, v in result["methods"].items()}
    parts = [
        "# Evaluation",
        "",
        f"Model `{result['model']['path']}` (sha256 `{result['model']['sha256'][:16]}…`, "
        f"{result['model']['embed_dim']}-d), mode **{result['mode']}**, k = {result['k']}, "
        f"label scheme `{result['label_scheme']}`.",
        f"{result['n_queries']} query images {result['queries_per_source']}, "
        f"{result['n_references']} reference images {result['references_per_source']}; "
        f"{result['skipped_images']} unreadable images skipped.",
        "",
    ]
    if result.get("command"):
        parts += ["```", result["command"], "```", ""]
    parts += [
        "## Retrieval (same-patient neighbours excluded)",
        "",
        retrieval_table(result),
        "",
        f"Queries whose class has no reference are not scored: {skipped_absent['model'] if 'model' in skipped_absent else next(iter(skipped_absent.values()))}; "
        "unlabelled queries are not scored either. P@10 and mAP@10 divide by min(10, available); "
        "MAP@R as in Musgrave et al. 2020.",
        "",
        "## kNN-vote AUC per class (all queries)",
        "",
        auc_table(result),
        "",
        "## Source tasks (kNN vote for the positive finding)",
        "",
        task_table(result),
        "",
        "## Look-alikeness: same-patient recall (query films of patients with several films)",
        "",
        "Each such film searches the other query films; a hit is another film of its own patient.",
        "",
        same_patient_table(result),
        "",
    ]
    if result.get("plots"):
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in result["plots"]] + [""]
    return "\n".join(parts)
