"""The instance term: two augmented views of each film must embed close together.

Multi-similarity loss and the auxiliary head only ask a film to sit near its *class*; nothing
stops every film of a class collapsing onto one prototype, which is what issue 15 measured
(same-patient recall@5 below raw pixels). The instance term (SimCLR's NT-Xent, through
pytorch-metric-learning's ``SelfSupervisedLoss(NTXentLoss())``: view ``i`` of the batch is the
positive of view ``i``'s twin, every other film a negative) keeps what makes one film look
like itself. ``TrainConfig.instance_weight`` scales it; 0 (the default) leaves training as it
was and costs nothing (no second forward pass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class InstanceTerm:
    """``weight * SelfSupervisedLoss(NTXentLoss(temperature))(emb(view 1), emb(view 2))``."""

    def __init__(self, weight: float, augment: Callable[[torch.Tensor], torch.Tensor],
                 temperature: float = 0.1) -> None:
        from pytorch_metric_learning import losses

        self.weight = float(weight)
        self.augment = augment
        self.loss = losses.SelfSupervisedLoss(losses.NTXentLoss(temperature=temperature), symmetric=True)

    @property
    def active(self) -> bool:
        return self.weight > 0

    def second_view(self, x: torch.Tensor) -> torch.Tensor:
        """Another random augmentation of each image of the batch [B,1,S,S] (on the CPU, as the loader's)."""
        return torch.stack([self.augment(img) for img in x.detach().cpu()]).to(x.device)

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The weighted term for a batch ``x`` whose first-view embeddings are ``emb``."""
        if not self.active:
            return emb.new_zeros(())
        ref = model(self.second_view(x))["embedding"].float()
        return self.weight * self.loss(emb, ref)
