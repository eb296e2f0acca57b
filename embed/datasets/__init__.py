"""Dataset readers: ``KIND:PATH`` -> de-identified :class:`CaseRecord` lists (see docs/datasets.md).

Importing this package registers every reader in :data:`DATASET_KINDS`.
"""

from embed.datasets.base import (
    DATASET_KINDS,
    PROGNOSIS_FIELDS,
    CaseRecord,
    DatasetLoad,
    SkippedRow,
    describe_kinds,
    load_dataset,
    load_datasets,
    parse_spec,
    register_dataset,
    split_spec,
)

# Readers register themselves on import.
from embed.datasets import (  # noqa: E402,F401  isort: skip
    chexpert,
    covid_chestxray,
    csv_manifest,
    dicom,
    dicomweb,
    imagefolder,
    kermany,
    nih14,
    padchest,
    vindr,
)

__all__ = [
    "DATASET_KINDS",
    "PROGNOSIS_FIELDS",
    "CaseRecord",
    "DatasetLoad",
    "SkippedRow",
    "describe_kinds",
    "load_dataset",
    "load_datasets",
    "parse_spec",
    "register_dataset",
    "split_spec",
]
