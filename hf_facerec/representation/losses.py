"""Self-supervised losses: SwAV (Sinkhorn-Knopp, swapped prediction over multi-crop), DINO (centred, sharpened
momentum teacher) and SimSiam (stop-gradient, negative cosine). Small on purpose: each is a few lines of the papers'
pseudo-code, tested against hand-computed values (tests/representation/test_losses.py).

Crops come as lists of per-view tensors, the global crops first (SwAV/DINO's multi-crop: 2 global + n local).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["sinkhorn_knopp", "swav_loss", "dino_loss", "update_center", "ema_update", "simsiam_loss"]


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's equipartitioned soft codes of a batch.

    Args:
        scores: (B, K) prototype scores (cosines). epsilon: entropy weight (smaller = sharper codes).
        iterations: alternate row / column normalisations.
    Returns:
        (B, K) codes: each row sums to 1 (a distribution over prototypes) and, at convergence, each prototype
        (column) receives B / K of the batch's mass.
    """
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"sinkhorn_knopp needs epsilon > 0 and iterations >= 1, got {epsilon}, {iterations}")
    # Subtract the max before exp (stability); a constant shift cancels in the normalisations.
    q = torch.exp((scores.float() - scores.float().max()) / epsilon).t()  # (K, B)
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True) * k  # each prototype gets 1/K of the mass
        q /= q.sum(dim=0, keepdim=True) * b  # each sample gets 1/B of the mass
    return (q * b).t()


def swav_loss(scores: list[torch.Tensor], n_global: int = 2, temperature: float = 0.1, epsilon: float = 0.05,
              iterations: int = 3) -> torch.Tensor:
    """Swapped prediction: the code of each global crop is predicted from every other crop.

    Args:
        scores: one (B, K) prototype-score tensor per crop, the ``n_global`` global crops first.
    Returns:
        () mean over (global crop, other crop) pairs of the cross-entropy between the code and softmax(score / T).
    """
    if not 1 <= n_global <= len(scores) or len(scores) < 2:
        raise ValueError(f"swav_loss needs >= 2 crops with 1 <= n_global <= crops, got {len(scores)}, {n_global}")
    total, terms = scores[0].new_zeros(()), 0
    log_p = [F.log_softmax(s / temperature, dim=1) for s in scores]
    for i in range(n_global):
        q = sinkhorn_knopp(scores[i].detach(), epsilon, iterations)
        for v in range(len(scores)):
            if v != i:
                total = total - (q * log_p[v]).sum(dim=1).mean()
                terms += 1
    return total / terms


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """DINO: cross-entropy between the centred, sharpened teacher on each global crop and the student on every
    other crop.

    Args:
        student: one (B, K) student output per crop (globals first). teacher: one (B, K) output per global crop.
        center: (K,) or (1, K) running mean of the teacher outputs (subtracted before the softmax: no collapse).
    Returns:
        () mean over (teacher crop, other student crop) pairs.
    """
    if not teacher or len(student) < 2 or len(teacher) > len(student):
        raise ValueError(f"dino_loss needs >= 2 student crops and 1..that many teacher crops, got "
                         f"{len(student)}, {len(teacher)}")
    targets = [F.softmax((t.detach() - center) / teacher_temperature, dim=1) for t in teacher]
    log_p = [F.log_softmax(s / student_temperature, dim=1) for s in student]
    total, terms = student[0].new_zeros(()), 0
    for i, q in enumerate(targets):
        for v in range(len(student)):
            if v != i:
                total = total - (q * log_p[v]).sum(dim=1).mean()
                terms += 1
    return total / terms


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9) -> torch.Tensor:
    """``center <- m * center + (1 - m) * mean of the teacher outputs`` (in place; (K,) or (1, K)); returns it."""
    batch_mean = torch.cat([t.detach() for t in teacher]).mean(dim=0)
    return center.mul_(momentum).add_(batch_mean.reshape(center.shape), alpha=1 - momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Momentum teacher: ``teacher <- m * teacher + (1 - m) * student`` parameter by parameter (buffers copied)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam: ``-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2`` averaged over the batch; all (B, D). In [-1, 1]."""
    cos = F.cosine_similarity
    return -(cos(p1, z2.detach(), dim=-1).mean() + cos(p2, z1.detach(), dim=-1).mean()) / 2
