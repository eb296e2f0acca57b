"""The patient split under "source_id" does not depend on the pseudonym key; "pseudonym" (old checkpoints) does."""

from __future__ import annotations

from embed.datasets.base import CaseRecord
from embed.pseudonym import pseudonymize
from embed.split import patient_key, patient_split


def _records(key: bytes) -> list[CaseRecord]:
    recs = []
    for p in range(60):
        for j in range(2):
            recs.append(CaseRecord(source="src", patient=pseudonymize("src", f"MRN-{p}", key=key),
                                   findings=["COVID-19" if p % 2 else "No Finding"],
                                   case_id=f"src/{p}_{j}.png", image_path=f"/x/{p}_{j}.png"))
    return recs


def test_source_id_split_is_the_same_under_any_key():
    a, b = _records(b"k" * 32), _records(b"other-key" * 4)
    assert [r.patient for r in a] != [r.patient for r in b]  # the pseudonyms do differ
    labels = [r.findings[0] for r in a]
    assert patient_split(a, labels, 0.2, 0, "source_id") == patient_split(b, labels, 0.2, 0, "source_id")
    assert patient_split(a, labels, 0.2, 0, "pseudonym") != patient_split(b, labels, 0.2, 0, "pseudonym")


def test_source_id_keys_group_a_patient_and_show_no_raw_id():
    recs = _records(b"k" * 32)
    tr, va = patient_split(recs, None, 0.25, 0, "source_id")
    val_patients = {recs[i].patient for i in va}
    assert not val_patients & {recs[i].patient for i in tr}  # no patient on both sides
    key = patient_key(recs[0], "source_id")
    assert key.startswith("src|s_") and "MRN" not in key
    assert "MRN" not in str(recs[0].to_dict())  # the digest is not a field: nothing stored or returned carries it


def test_same_patient_recall_counts_own_patients_films():
    import numpy as np

    from embed.metrics import same_patient_recall

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16))
    x = np.concatenate([centres + 0.01 * rng.normal(size=(10, 16)), centres + 0.01 * rng.normal(size=(10, 16)),
                        rng.normal(size=(5, 16))])
    patients = [f"p{i}" for i in range(10)] * 2 + [f"single{i}" for i in range(4)] + [None]
    r = same_patient_recall(x, patients)
    assert r["n_queries"] == 20 and r["n_patients"] == 10
    assert r["recall_at_1"] == 1.0 and r["recall_at_5"] == 1.0
    shuffled = same_patient_recall(rng.normal(size=x.shape), patients)
    assert shuffled["recall_at_1"] < 0.5  # random vectors: the own patient's film is rarely first
