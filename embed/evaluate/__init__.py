"""Evaluation of similar-case retrieval: metrics (pure numpy), baselines, tasks, plots, report.

``knn_vote_auc`` and ``retrieval_metrics`` are the pieces other packages reuse (training's
validation step); ``runner.run_evaluation`` is what ``cxr evaluate`` calls.
"""

from embed.evaluate.metrics import knn_vote_auc, knn_vote_scores, retrieval_metrics, roc_auc

__all__ = ["knn_vote_auc", "knn_vote_scores", "retrieval_metrics", "roc_auc"]
