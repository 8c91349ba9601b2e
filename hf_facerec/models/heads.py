"""The class-center head: one center per identity, a margin penalty, cross-entropy; Partial FC.

A head holds one center per identity, ``W`` of shape (num_classes, D).  For features ``x`` (B, D) it
computes cosines ``cos = x_hat @ W_hat.T`` (B, C), lets a :class:`~.margins.MarginPenalty` penalise each
row's positive column and scale everything by ``s``, and applies cross-entropy.  The sharded head of
``hf_facerec.training.distributed`` subclasses :class:`ClassCenterHead`.

This file is shipped as remote code next to saved checkpoints (``trust_remote_code`` copies model files
flat), so it imports only ``torch``, the standard library and sibling files.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .margins import (
    _NORM_EPS,
    MARGIN_PENALTIES,
    MarginPenalty,
    _check_label_range,
    _check_labels,
    _check_number,
    build_margin_penalty,
    check_int,
)

__all__ = ["MARGIN_PENALTIES", "ClassCenterHead", "MarginHeadOutput", "build_margin_head"]


class MarginHeadOutput(NamedTuple):
    """What :class:`ClassCenterHead` returns."""

    loss: torch.Tensor  # scalar float32: mean cross-entropy over rows whose positive is among the columns
    logits: torch.Tensor  # (B, C_sampled) float32, margin-penalised and scaled
    labels: torch.Tensor  # (B,) long, indices into the C_sampled columns, -1 where the positive is absent


class ClassCenterHead(nn.Module):
    """Class centers ``weight`` (num_local_classes, D) + a :class:`MarginPenalty` + cross-entropy.

    ``sample_rate < 1`` makes it Partial FC (An et al. 2022): in training mode each step uses every
    positive center of the batch plus uniformly sampled negatives, ``round(sample_rate *
    num_local_classes)`` columns in all (only the positives if they alone are more).  In eval mode, and
    with ``sample_rate == 1``, all columns are used.

    For sharded centers the module holds the global classes [class_offset, class_offset +
    num_local_classes); labels outside that slice become -1 locally.  ``forward``'s loss then covers only
    the rows whose positive is local; a cross-process softmax should use :meth:`local_logits` instead.
    CurricularFace's hard-negative re-weighting only sees the shard holding the positive.
    """

    def __init__(self, embedding_size: int, num_classes: int, margin: MarginPenalty, sample_rate: float = 1.0,
                 class_offset: int = 0, num_local_classes: int | None = None):
        super().__init__()
        self.embedding_size = check_int(embedding_size, "embedding_size", 1)
        self.num_classes = check_int(num_classes, "num_classes", 1)
        if not isinstance(margin, MarginPenalty):
            raise ValueError(f"margin must be a MarginPenalty, got {type(margin).__name__}")
        self.class_offset = check_int(class_offset, "class_offset", 0)
        num_local = num_classes - class_offset if num_local_classes is None else num_local_classes
        what = "num_classes - class_offset" if num_local_classes is None else "num_local_classes"
        self.num_local_classes = check_int(num_local, what, 1)
        if class_offset + num_local > num_classes:
            raise ValueError(f"classes [{class_offset}, {class_offset + num_local}) are not a slice of the "
                             f"{num_classes} classes")
        self.sample_rate = _check_number(sample_rate, "sample_rate", 0.0, 1.0, low_inclusive=False)
        self.num_sample = max(1, round(self.sample_rate * num_local))
        self.margin = margin
        self.weight = nn.Parameter(torch.empty(num_local, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def extra_repr(self) -> str:
        return (f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, "
                f"sample_rate={self.sample_rate}, class_offset={self.class_offset}, "
                f"num_local_classes={self.num_local_classes}")

    def sample_centers(self, local_labels: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Pick the Partial FC columns for a batch.

        ``local_labels`` (B,) long: row indices into ``weight``, -1 where the positive is not local.
        Returns ``(index, remapped)``: ``index`` (C_sampled,) sorted rows of ``weight`` to use, or None for
        all of them; ``remapped`` (B,) positions of the labels inside ``index`` (-1 kept).  Uses the global
        torch RNG (on the weight's device), so it is reproducible under ``torch.manual_seed``.
        """
        if not self.training or self.num_sample >= self.num_local_classes:
            return None, local_labels
        with torch.no_grad():
            valid = local_labels >= 0
            positive = torch.unique(local_labels[valid])  # sorted
            if positive.numel() >= self.num_sample:
                index = positive
            else:
                priority = torch.rand(self.num_local_classes, device=self.weight.device)
                priority[positive] = 2.0  # above any rand() value: positives always win the top-k
                index = priority.topk(self.num_sample).indices.sort().values
            remapped = torch.where(valid, torch.searchsorted(index, local_labels.clamp(min=0)), -1)
        return index, remapped

    def local_logits(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin logits over this module's (sampled) columns, without the loss.

        ``features`` (B, D) float, not normalised; ``labels`` (B,) global class ids in [0, num_classes).
        Returns ``(logits (B, C_sampled) float32, labels (B,) long)``, labels remapped to the columns and
        -1 where the positive is not among them.
        """
        if not isinstance(features, torch.Tensor) or not features.is_floating_point() or features.ndim != 2 \
                or features.shape[1] != self.embedding_size:
            raise ValueError(f"features must be a floating (B, {self.embedding_size}) tensor, got "
                             f"{getattr(features, 'shape', type(features).__name__)}")
        _check_labels(labels, features.shape[0], "features")
        _check_label_range(labels, 0, self.num_classes)
        cosine, local, norms = self.sampled_cosine(features, self.to_local_labels(labels))
        return self.margin(cosine, local, norms), local

    def to_local_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Global class ids (B,) -> indices into this module's slice of the centers, -1 outside it."""
        local = labels.long() - self.class_offset
        return torch.where((local >= 0) & (local < self.num_local_classes), local, -1)

    def sampled_cosine(
        self, features: torch.Tensor, local: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine of ``features`` (B, D) with the (Partial FC sampled) centers for local labels (B,).

        Returns ``(cosine (B, C_sampled), labels remapped to the sampled columns (B,), feature norms (B,))``.
        """
        index, local = self.sample_centers(local)
        # Indexing the Parameter (no copy under no_grad) lets the sampled rows receive gradients.
        weight = self.weight if index is None else self.weight[index]
        norms = torch.linalg.vector_norm(features.float(), dim=1)
        dtype = torch.promote_types(features.dtype, weight.dtype)
        unit = (features.float() / norms.clamp_min(_NORM_EPS).unsqueeze(1)).to(dtype)
        # Divide the (B, C) product by the center norms rather than normalising W: no (C, D) copy.
        center_norms = torch.linalg.vector_norm(weight, dim=1).clamp_min(_NORM_EPS)
        return F.linear(unit, weight.to(dtype)) / center_norms.to(dtype), local, norms

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> MarginHeadOutput:
        """``features`` (B, D), ``labels`` (B,) global ids -> :class:`MarginHeadOutput`."""
        logits, local = self.local_logits(features, labels)
        # Sum / count instead of reduction="mean": a batch with no local positives gives 0, not NaN.
        total = F.cross_entropy(logits, local, ignore_index=-1, reduction="sum")
        loss = total / (local >= 0).sum().clamp(min=1)
        return MarginHeadOutput(loss=loss, logits=logits, labels=local)


def build_margin_head(embedding_size: int, num_classes: int, margin_type: str = "arcface", scale: float = 64.0,
                      sample_rate: float = 1.0, *, class_offset: int = 0, num_local_classes: int | None = None,
                      **margin_kwargs) -> ClassCenterHead:
    """A :class:`ClassCenterHead` with the margin :func:`~.margins.build_margin_penalty` names.

    ``margin_kwargs`` go to the margin's constructor (e.g. ``margin=0.4``, ``m1=1.0, m2=0.3, m3=0.2``).
    """
    return ClassCenterHead(embedding_size, num_classes, build_margin_penalty(margin_type, scale, **margin_kwargs),
                           sample_rate=sample_rate, class_offset=class_offset, num_local_classes=num_local_classes)
