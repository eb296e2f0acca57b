"""A query image decoded and standardized, waiting for (or carrying) its forward pass.

Splitting a query into *prepare* (read, standardize, hash: CPU work on one core)
and *embed* (the model) lets a server decode in a worker pool and hand the model
several requests' images in one forward pass (``search_api.batching``), while
``SearchEngine.search`` accepts the result exactly as it accepts the raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PreparedQuery:
    """``standardized`` [S,S] float32 in [0,1] (8-bit rounded, as indexed images are), the reader's
    de-identified ``meta``, the ``sha256`` of the uploaded bytes (to recognise an indexed image), and,
    once embedded, the unit ``embedding`` [D] and ``attention`` [h,w]."""

    standardized: np.ndarray
    meta: dict
    sha256: str
    embedding: np.ndarray | None = None
    attention: np.ndarray | None = None

    @property
    def embedded(self) -> bool:
        return self.embedding is not None
