"""Transfer the retrieval encoder's features to a prognosis task (as Cohen et al. did for intubation).

`cxr transfer` = :func:`run_transfer` (data -> patient-grouped CV of three
logistic-regression pipelines -> patient bootstrap) + :func:`write_report`.
See docs/transfer.md for the design choices and the results on covid-chestxray.
"""

from embed.transfer.cv import CVResult, bootstrap_auc, cross_validated_predictions, patient_folds
from embed.transfer.data import TransferData, prepare, read_features_file
from embed.transfer.experiment import TransferResult, run_transfer
from embed.transfer.model import MODEL_KINDS, ModelConfig, build_pipeline
from embed.transfer.report import markdown_table, write_report

__all__ = [
    "CVResult", "MODEL_KINDS", "ModelConfig", "TransferData", "TransferResult", "bootstrap_auc",
    "build_pipeline", "cross_validated_predictions", "markdown_table", "patient_folds", "prepare",
    "read_features_file", "run_transfer", "write_report",
]
