"""CaseImageDataset: the training images, read once through the embedding pipeline's reader.

Every image is read at construction by :func:`embed.pipeline.run_pipeline` (the same
reader, exception set and skip report as ``cxr embed`` and ``cxr index build``), so
unreadable ones are dropped up front instead of failing mid-epoch. ``in_memory`` keeps
the uint8 arrays in RAM (S=128: 16 KB each), which makes training epochs cost only
forward/backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from embed.datasets.base import CaseRecord
from embed.pipeline import Collector, LocalRunner, run_pipeline
from embed.standardize import StandardizeConfig
from embed.torchdata import load_standardized_u8


class CaseImageDataset(Dataset):
    """Records -> (standardized tensor [1,S,S] float in [0,1], index into ``records``).

    ``kept`` lists the indices (into the ``records`` given) of the readable images;
    ``skipped`` holds (case_id, reason) of those dropped. ``transform`` gets and returns
    a float tensor [1,S,S] (the training augmentation).
    """

    def __init__(
        self,
        records: Sequence[CaseRecord],
        std_cfg: StandardizeConfig,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        use_cache: bool = True,
        in_memory: bool = False,
        progress: bool = False,
        workers: int = 0,
    ) -> None:
        self.records = list(records)
        self.std_cfg = std_cfg
        self.transform = transform
        self.use_cache = use_cache
        sink = Collector(("pos", "image") if in_memory else ("pos",))
        report = run_pipeline([r.image_path for r in self.records], std_cfg, None, sink,
                              runner=LocalRunner(batch_size=64, workers=workers, use_cache=use_cache),
                              progress=progress, desc="standardize")
        cols = sink.result()
        self.kept: list[int] = [int(i) for i in cols.get("pos", [])]
        self.skipped: list[tuple[str, str]] = [(self.records[f.pos].case_id, f.reason) for f in report.failures]
        self._arrays: np.ndarray | None = None
        if in_memory:
            size = int(std_cfg.size)
            self._arrays = cols.get("image", np.zeros((0, size, size), np.uint8))

    def __len__(self) -> int:
        return len(self.kept)

    def array(self, pos: int) -> np.ndarray:
        """uint8 [S,S] image at dataset position ``pos``."""
        if self._arrays is not None:
            return self._arrays[pos]
        rec = self.records[self.kept[pos]]
        return load_standardized_u8(rec.image_path, self.std_cfg, use_cache=self.use_cache)

    def __getitem__(self, pos: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.array(pos).astype(np.float32) / 255.0)[None]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.kept[pos]
