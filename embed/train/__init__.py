"""Metric-learning training of the encoder (pytorch-metric-learning's multi-similarity loss)."""
