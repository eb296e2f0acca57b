"""The instance term (SelfSupervisedLoss(NTXentLoss())) changes the gradients; weight 0 changes nothing."""

from __future__ import annotations

import torch

from embed.train.augment import AugmentConfig, RadiographAugment
from embed.train.config import TrainConfig
from embed.train.instance import InstanceTerm


def _grads(weight: float) -> list[torch.Tensor]:
    from pytorch_metric_learning import losses

    from embed.models import create_model

    torch.manual_seed(0)
    model = create_model("cxr_test_tiny").train()
    x = torch.rand(8, 1, 64, 64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    emb = model(x)["embedding"].float()
    loss = losses.MultiSimilarityLoss()(emb, y)
    torch.manual_seed(1)  # the same second view whatever the weight
    term = InstanceTerm(weight, RadiographAugment(AugmentConfig()))
    loss = loss + term(model, x, emb)
    model.zero_grad()
    loss.backward()
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def test_instance_term_changes_the_gradients_and_weight_zero_does_not():
    base, off, on = _grads(0.0), _grads(0.0), _grads(1.0)
    assert all(torch.equal(a, b) for a, b in zip(base, off))
    assert any(not torch.allclose(a, b) for a, b in zip(base, on))


def test_it_is_the_library_loss_and_off_by_default():
    from pytorch_metric_learning import losses

    term = InstanceTerm(0.5, lambda t: t)
    assert isinstance(term.loss, losses.SelfSupervisedLoss)
    assert isinstance(term.loss.loss, losses.NTXentLoss)
    assert TrainConfig().instance_weight == 0.0 and not InstanceTerm(0.0, lambda t: t).active
