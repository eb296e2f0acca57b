"""Evaluation of similar-case retrieval: baselines, tasks, plots, report.

The metrics themselves live below this package, in :mod:`embed.metrics` (training's
validation step scores with them too); ``runner.run_evaluation`` is what ``cxr evaluate`` calls.
"""
