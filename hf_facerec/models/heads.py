"""Margin-penalty softmax heads for face recognition, with Partial FC and sharded class centers.

A head holds one center per identity, ``W`` of shape (num_classes, D).  For features ``x`` (B, D) it
computes cosines ``cos = x_hat @ W_hat.T`` (B, C), lets a :class:`MarginPenalty` penalise each row's
positive column and scale everything by ``s``, and applies cross-entropy.

This file is shipped as remote code next to saved checkpoints (``trust_remote_code`` copies model files
flat), so it imports only ``torch``, ``math`` and the standard library.

All margin arithmetic runs in float32 whatever the input dtype; ``acos`` only ever sees cosines clamped
to [-1 + eps, 1 - eps] (its derivative is infinite at +-1), and it always runs with autograd on: margins
computed under ``no_grad`` silently turn the loss into a plain softmax for the backbone.  Only running
statistics (AdaFace, CurricularFace) are updated under ``no_grad``, and only in training mode.
"""

from __future__ import annotations

import inspect
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

_COS_EPS = 1e-7  # acos clamp: 1 - 1e-7 is still < 1 in float32, so d/dx acos stays finite
_NORM_EPS = 1e-12  # guards the division by a zero-length feature or center


def _check_number(value, name: str, low: float | None = None, high: float | None = None,
                  low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as a float after checking it is a finite real number inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low if low_inclusive else value <= low):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value!r}")
    if high is not None and (value > high if high_inclusive else value >= high):
        raise ValueError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value!r}")
    return float(value)


def _check_int(value, name: str, low: int) -> int:
    """Return ``value`` after checking it is an int (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _check_labels(labels, batch: int, other: str) -> None:
    """Check that ``labels`` is a (batch,) integer tensor; ``other`` names the tensor it must match."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(f"labels must have shape ({batch},) to match {other}, got {tuple(labels.shape)}")


def _check_label_range(labels: torch.Tensor, low: int, high: int) -> None:
    """Raise if any label lies outside [low, high)."""
    if bool(((labels < low) | (labels >= high)).any()):  # one device sync; min/max only for the message
        raise ValueError(f"labels must lie in [{low}, {high}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def _acos(cosine: torch.Tensor) -> torch.Tensor:
    """Angle of a cosine, clamped away from +-1 where acos' derivative is infinite."""
    return torch.acos(cosine.clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS))


def _angular_target(cosine: torch.Tensor, m1: float, m2: float | torch.Tensor) -> torch.Tensor:
    """cos(m1 * theta + m2) for target cosines (B,), with a monotone fallback past pi.

    Past theta0 = (pi - m2) / m1 the function cos(m1*theta + m2) would rise again and reward moving away
    from the center, so there we use cos(theta) - delta0 * sin(theta0), the insightface linearisation
    with delta0 = (m1 - 1) * theta0 + m2 the angular shift at theta0.  For m1 = 1 this is exactly
    insightface's ArcFace ``cos(theta) - m * sin(m)``.  ``m2`` may be a (B,) tensor (ElasticFace).
    """
    m2 = torch.as_tensor(m2, dtype=cosine.dtype, device=cosine.device)
    shifted = _acos(cosine) * m1 + m2
    theta0 = (math.pi - m2) / m1
    fallback = cosine - ((m1 - 1.0) * theta0 + m2) * torch.sin(theta0)
    return torch.where(shifted < math.pi, torch.cos(shifted), fallback)


class MarginPenalty(nn.Module):
    """Base class: turns cosine logits into margin-penalised, scaled logits.

    ``forward(cosine (B, C) in [-1, 1], labels (B,) long, feature_norms (B,) or None) -> (B, C) float32``
    returns ``scale * penalised_cosine``.  A label of -1 means "this row's positive class is not among the
    C columns" (Partial FC, sharded centers): that row gets no margin.  Subclasses implement
    :meth:`_target_logit` (and optionally :meth:`_other_logits`) and list their constructor arguments in
    ``_config_keys`` (used by :meth:`get_config` and ``extra_repr``).
    """

    _config_keys: tuple[str, ...] = ("scale",)

    def __init__(self, scale: float = 64.0):
        super().__init__()
        self.scale = _check_number(scale, "scale", low=0.0, low_inclusive=False)

    def get_config(self) -> dict:
        """Constructor arguments that rebuild this margin: ``type(self)(**self.get_config())``."""
        return {key: getattr(self, key) for key in self._config_keys}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.get_config().items())

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor,
                feature_norms: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(cosine, torch.Tensor) or cosine.ndim != 2 or not cosine.is_floating_point():
            raise ValueError("cosine must be a floating (B, C) tensor, got "
                             f"{getattr(cosine, 'shape', type(cosine).__name__)}")
        batch, num_columns = cosine.shape
        if num_columns == 0:
            raise ValueError("cosine must have at least one column")
        _check_labels(labels, batch, "cosine")
        _check_label_range(labels, -1, num_columns)
        if feature_norms is not None and (not isinstance(feature_norms, torch.Tensor)
                                          or tuple(feature_norms.shape) != (batch,)):
            raise ValueError(f"feature_norms must be a ({batch},) tensor, got "
                             f"{getattr(feature_norms, 'shape', type(feature_norms).__name__)}")
        cos = cosine.float()
        valid = labels >= 0
        # Rows without a positive read (and write back unchanged) column 0, which keeps this branch-free.
        index = labels.clamp(min=0).long().unsqueeze(1)
        target = cos.gather(1, index).squeeze(1)
        penalised = self._target_logit(target, valid, feature_norms)
        others = self._other_logits(cos, penalised, valid)
        new_target = torch.where(valid, penalised, others.gather(1, index).squeeze(1))
        # scatter returns a fresh tensor its backward does not need: scaling it in place saves a (B, C) copy.
        return others.scatter(1, index, new_target.unsqueeze(1)).mul_(self.scale)

    def _target_logit(self, target: torch.Tensor, valid: torch.Tensor,
                      feature_norms: torch.Tensor | None) -> torch.Tensor:
        """Penalised positive cosine (B,) from the positive cosine ``target`` (B,) (float32)."""
        raise NotImplementedError

    def _other_logits(self, cos: torch.Tensor, penalised: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The (B, C) cosines the non-target columns use; most margins leave them alone."""
        return cos


class ArcFace(MarginPenalty):
    """Additive angular margin (Deng et al. 2019): positive logit ``s * cos(theta + m)``.

    ``easy_margin`` applies the margin only where cos(theta) > 0 and keeps cos(theta) elsewhere; otherwise
    the insightface fallback ``cos(theta) - m * sin(m)`` is used where theta + m >= pi.
    """

    _config_keys = ("scale", "margin", "easy_margin")

    def __init__(self, scale: float = 64.0, margin: float = 0.5, easy_margin: bool = False):
        super().__init__(scale)
        self.margin = _check_number(margin, "margin", 0.0, math.pi, high_inclusive=False)
        self.easy_margin = bool(easy_margin)

    def _target_logit(self, target, valid, feature_norms):
        if self.easy_margin:
            return torch.where(target > 0, torch.cos(_acos(target) + self.margin), target)
        return _angular_target(target, 1.0, self.margin)


class CosFace(MarginPenalty):
    """Additive cosine margin (Wang et al. 2018): positive logit ``s * (cos(theta) - m)``."""

    _config_keys = ("scale", "margin")

    def __init__(self, scale: float = 64.0, margin: float = 0.35):
        super().__init__(scale)
        self.margin = _check_number(margin, "margin")

    def _target_logit(self, target, valid, feature_norms):
        return target - self.margin


class CombinedMargin(MarginPenalty):
    """insightface's combined margin ``s * (cos(m1 * theta + m2) - m3)``.

    m1 != 1 is the SphereFace-style multiplicative margin, m2 ArcFace's, m3 CosFace's.  Past
    m1 * theta + m2 = pi the monotone fallback of :func:`_angular_target` is used (minus m3).
    """

    _config_keys = ("scale", "m1", "m2", "m3")

    def __init__(self, scale: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0):
        super().__init__(scale)
        self.m1 = _check_number(m1, "m1", 0.0, low_inclusive=False)
        self.m2 = _check_number(m2, "m2", 0.0, math.pi, high_inclusive=False)
        self.m3 = _check_number(m3, "m3")

    def _target_logit(self, target, valid, feature_norms):
        return _angular_target(target, self.m1, self.m2) - self.m3


class AdaFace(MarginPenalty):
    """Quality-adaptive margin (Kim et al. 2022), driven by the feature norm as an image-quality proxy.

    With ``z = clip(h * (norm - batch_mean) / (batch_std + eps), -1, 1)`` the positive logit is
    ``s * (cos(clip(theta - m * z, eps, pi - eps)) - (m + m * z))``: z = -1 (low norm, low quality) is
    ArcFace's cos(theta + m), z = 0 CosFace's cos(theta) - m, z = 1 cos(theta - m) - 2m, which stresses
    hard samples.  ``batch_mean`` / ``batch_std`` are buffers (start 20 / 100 as in the reference code),
    updated in training mode with momentum ``t_alpha`` from the batch's norms (clipped to [0.001, 100],
    unbiased std) *before* they are used, as the reference code does.
    """

    _config_keys = ("scale", "margin", "h", "t_alpha")
    _eps = 1e-3  # the reference implementation's eps, for the std division and the theta clip

    def __init__(self, scale: float = 64.0, margin: float = 0.4, h: float = 0.333, t_alpha: float = 0.01):
        super().__init__(scale)
        self.margin = _check_number(margin, "margin")
        self.h = _check_number(h, "h", 0.0)
        self.t_alpha = _check_number(t_alpha, "t_alpha", 0.0, 1.0)
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    def _target_logit(self, target, valid, feature_norms):
        if feature_norms is None:
            raise ValueError("AdaFace needs feature_norms (B,): the norms of the un-normalised features")
        norms = feature_norms.detach().float().clamp(0.001, 100.0)
        # One sample has no std; skip the update rather than poison the buffers with NaN.
        if self.training and norms.numel() > 1:
            with torch.no_grad():
                self.batch_mean.lerp_(norms.mean().to(self.batch_mean.dtype), self.t_alpha)
                self.batch_std.lerp_(norms.std().to(self.batch_std.dtype), self.t_alpha)
        scaler = ((norms - self.batch_mean.float()) / (self.batch_std.float() + self._eps) * self.h).clamp(-1, 1)
        theta = (_acos(target) - self.margin * scaler).clamp(self._eps, math.pi - self._eps)
        return torch.cos(theta) - (self.margin + self.margin * scaler)


class CurricularFace(MarginPenalty):
    """Curriculum margin (Huang et al. 2020): ArcFace positives, and hard negatives re-weighted.

    A negative is hard when its cosine exceeds the row's penalised positive; it becomes
    ``cos * (t + cos)``, where the buffer ``t`` is the running mean of positive cosines (momentum
    ``momentum``, updated in training mode before use, as in the reference code).  Rows with label -1
    (positive on another shard) are left unchanged.
    """

    _config_keys = ("scale", "margin", "momentum")

    def __init__(self, scale: float = 64.0, margin: float = 0.5, momentum: float = 0.01):
        super().__init__(scale)
        self.margin = _check_number(margin, "margin", 0.0, math.pi, high_inclusive=False)
        self.momentum = _check_number(momentum, "momentum", 0.0, 1.0)
        self.register_buffer("t", torch.zeros(1))

    def _target_logit(self, target, valid, feature_norms):
        if self.training:
            with torch.no_grad():
                count = valid.sum()
                mean = (target * valid).sum() / count.clamp(min=1)
                # torch.where instead of `if count:` keeps the update free of a device sync.
                self.t.copy_(torch.where(count > 0, torch.lerp(self.t.float(), mean, self.momentum), self.t))
        return _angular_target(target, 1.0, self.margin)

    def _other_logits(self, cos, penalised, valid):
        hard = (cos > penalised.unsqueeze(1)) & valid.unsqueeze(1)
        return torch.where(hard, cos * (self.t.float() + cos), cos)


class _ElasticMargin(MarginPenalty):
    """Shared part of ElasticFace (Boutros et al. 2022): per-sample margins drawn from N(margin, std^2).

    With ``plus`` (ElasticFace+) the drawn margins are paired with the samples by rank: the sample with
    the k-th highest positive cosine gets the k-th smallest margin (the reference code indexes the sorted
    margins by the argsort instead of by rank; we assign by rank).  In eval mode the mean margin is used,
    so validation losses are deterministic.
    """

    _config_keys = ("scale", "margin", "std", "plus")

    def __init__(self, scale: float, margin: float, std: float, plus: bool):
        super().__init__(scale)
        self.margin = _check_number(margin, "margin")
        self.std = _check_number(std, "std", 0.0)
        self.plus = bool(plus)

    def _sample_margins(self, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B,) margins for the rows of ``target`` (B,); rows with ``valid`` False get the mean margin."""
        mean = torch.full_like(target, self.margin)
        if not self.training:
            return mean
        margins = torch.normal(mean, self.std)
        if self.plus:
            with torch.no_grad():
                # Valid rows first, by descending cosine; their own margins first, ascending.
                order = torch.where(valid, target, -math.inf).argsort(descending=True)
                ranked = torch.where(valid, margins, math.inf).sort().values
                margins = torch.empty_like(margins).scatter_(0, order, ranked)
        # inf must never reach cos(): even an unselected torch.where branch would turn gradients into NaN.
        return torch.where(valid, margins, mean)


class ElasticArcFace(_ElasticMargin):
    """ArcFace with a per-sample margin ~ N(margin, std^2); std = 0 is exactly :class:`ArcFace`."""

    def __init__(self, scale: float = 64.0, margin: float = 0.5, std: float = 0.0125, plus: bool = False):
        super().__init__(scale, margin, std, plus)

    def _target_logit(self, target, valid, feature_norms):
        return _angular_target(target, 1.0, self._sample_margins(target, valid))


class ElasticCosFace(_ElasticMargin):
    """CosFace with a per-sample margin ~ N(margin, std^2); std = 0 is exactly :class:`CosFace`."""

    def __init__(self, scale: float = 64.0, margin: float = 0.35, std: float = 0.0125, plus: bool = False):
        super().__init__(scale, margin, std, plus)

    def _target_logit(self, target, valid, feature_norms):
        return target - self._sample_margins(target, valid)


MARGIN_PENALTIES: dict[str, type[MarginPenalty]] = {
    "arcface": ArcFace,
    "cosface": CosFace,
    "combined": CombinedMargin,
    "adaface": AdaFace,
    "curricularface": CurricularFace,
    "elasticarcface": ElasticArcFace,
    "elasticcosface": ElasticCosFace,
}


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
        self.embedding_size = _check_int(embedding_size, "embedding_size", 1)
        self.num_classes = _check_int(num_classes, "num_classes", 1)
        if not isinstance(margin, MarginPenalty):
            raise ValueError(f"margin must be a MarginPenalty, got {type(margin).__name__}")
        self.class_offset = _check_int(class_offset, "class_offset", 0)
        num_local = num_classes - class_offset if num_local_classes is None else num_local_classes
        what = "num_classes - class_offset" if num_local_classes is None else "num_local_classes"
        self.num_local_classes = _check_int(num_local, what, 1)
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
    """Build a :class:`ClassCenterHead` with the margin named ``margin_type`` (a key of MARGIN_PENALTIES).

    ``margin_kwargs`` go to the margin's constructor (e.g. ``margin=0.4``, ``m1=1.0, m2=0.3, m3=0.2``).
    """
    key = margin_type.lower() if isinstance(margin_type, str) else None
    if key not in MARGIN_PENALTIES:
        raise ValueError(f"unknown margin_type {margin_type!r}; known: {', '.join(MARGIN_PENALTIES)}")
    margin_cls = MARGIN_PENALTIES[key]
    accepted = [name for name in inspect.signature(margin_cls.__init__).parameters if name not in ("self", "scale")]
    unknown = sorted(set(margin_kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{margin_type!r} does not take {unknown}; it takes {accepted}")
    margin = margin_cls(scale=scale, **margin_kwargs)
    return ClassCenterHead(embedding_size, num_classes, margin, sample_rate=sample_rate,
                           class_offset=class_offset, num_local_classes=num_local_classes)
