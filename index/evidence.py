"""What stands behind the figures: the vote as a finding hierarchy with its counts, outcomes per patient.

Why: a share means little without the number of films and patients behind it
("100 %" from one neighbour), findings that imply each other (COVID-19 -> viral
pneumonia -> pneumonia) read as three independent certainties when shown as
equal bars, and two films of one patient are one outcome, not two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from embed.datasets.covid_chestxray import FINDING_PARENTS
from index.schemas import Hit, OutcomeSummary, VoteShare


def _patient_key(hit: Hit) -> str:
    """A film without a known patient counts as its own patient."""
    return hit.case.patient or f"__case{hit.case.id}"


def vote_hierarchy(vote: Mapping[str, float], hits: Sequence[Hit],
                   parents: Mapping[str, str] = FINDING_PARENTS) -> list[VoteShare]:
    """The vote in display order: each finding once, children indented under their parent.

    A finding whose parent is not in the vote is shown at the top level. Siblings are
    ordered by share (highest first), then name.
    """
    films: dict[str, int] = {}
    patients: dict[str, set[str]] = {}
    for h in hits:
        for f in set(h.case.findings):
            films[f] = films.get(f, 0) + 1
            patients.setdefault(f, set()).add(_patient_key(h))

    def parent_in_vote(f: str) -> str | None:
        p, seen = parents.get(f), {f}
        while p is not None and p not in vote and p not in seen:  # skip levels absent from the vote
            seen.add(p)
            p = parents.get(p)
        return p if p in vote and p != f else None

    children: dict[str | None, list[str]] = {}
    for f in vote:
        children.setdefault(parent_in_vote(f), []).append(f)
    out: list[VoteShare] = []

    def walk(parent: str | None, depth: int) -> None:
        for f in sorted(children.get(parent, []), key=lambda x: (-vote[x], x)):
            out.append(VoteShare(finding=f, share=float(vote[f]), depth=depth, parent=parent,
                                 neighbours=films.get(f, 0), patients=len(patients.get(f, ()))))
            walk(f, depth + 1)

    walk(None, 0)
    return out


def add_patient_counts(summary: dict[str, OutcomeSummary], hits: Sequence[Hit]) -> dict[str, OutcomeSummary]:
    """Fill ``patients_known``/``patients_positive``/``patient_share``: each patient's latest known outcome.

    "Latest" is the film with the largest day offset among the patient's films that record
    the outcome (films without an offset rank first); ties keep the higher-ranked hit.
    """
    for key, s in summary.items():
        latest: dict[str, tuple[float, bool]] = {}
        for h in hits:
            v = h.case.prognosis.get(key)
            if v is None:
                continue
            day = h.case.day_offset if h.case.day_offset is not None else float("-inf")
            pk = _patient_key(h)
            if pk not in latest or day > latest[pk][0]:
                latest[pk] = (day, bool(v))
        pos = sum(1 for _, v in latest.values() if v)
        s.patients_known, s.patients_positive = len(latest), pos
        s.patient_share = (pos / len(latest)) if latest else None
    return summary
