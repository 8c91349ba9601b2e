"""Margin penalties for face recognition: cosine logits (B, C) in, penalised and scaled logits out.

One base class, :class:`MarginPenalty`, does the bookkeeping (validation, picking each row's positive
column, writing it back, scaling); each margin is a small subclass that says how the positive cosine
(and, for CurricularFace, the negatives) change.  The class-center head of :mod:`.heads` calls them.

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
import numbers

import torch
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


def check_int(value, name: str, low: int) -> int:
    """Return ``value`` as an int after checking it is an integer (Python or numpy, not a bool) >= ``low``:
    the package's one integer-argument check (heads, sharding, synthetic data)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


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
        return self.apply(cosine, labels, feature_norms)

    def apply(self, cosine: torch.Tensor, labels: torch.Tensor, feature_norms: torch.Tensor | None = None,
              positive_cosine: torch.Tensor | None = None) -> torch.Tensor:
        """The margin itself, without input checks: what ``forward`` and the sharded head both call.

        Args:
            cosine: (B, C) float cosines; labels: (B,) column of each row's positive, -1 where it is
                not among the C columns; feature_norms: (B,) or None.
            positive_cosine: (B,) every row's positive cosine wherever its center lives (sharded class
                centers): every row then feeds the margin's statistics and hard-negative rule, while
                only rows whose positive is local get their column rewritten.
        Returns:
            (B, C) float32 ``scale * penalised cosine``.

        A new margin overrides :meth:`_target_logit` (and :meth:`_other_logits`), or this method;
        never ``forward``, which the sharded head bypasses.
        """
        cos = cosine.float()
        valid = labels >= 0
        # Rows without a positive read (and write back unchanged) column 0, which keeps this branch-free.
        index = labels.clamp(min=0).long().unsqueeze(1)
        own = cos.gather(1, index).squeeze(1)
        if positive_cosine is None:
            target, rows = own, valid
        else:  # gradients flow through the owner's copy only
            target, rows = torch.where(valid, own, positive_cosine.detach().float()), torch.ones_like(valid)
        penalised = self._target_logit(target, rows, feature_norms)
        others = self._other_logits(cos, penalised, rows)
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


class RescaledArcFace(MarginPenalty):
    """The comprehensive-search loss (Zhang et al. 2022): positive logit ``s_pos * (cos(m1 * theta + m2) - m3)``,
    other logits ``s_neg * cos(theta)``; ``scale`` is s_neg, ``s_pos`` defaults to it.

    s_pos = s_neg with m3 = 0 is :class:`ArcFace`, with m1 = 1, m2 = 0 :class:`CosFace`, bit for bit:
    without an angular term the target cosine skips acos/cos (cos(acos(x)) is not exactly x in float32).
    """

    _config_keys = ("scale", "s_pos", "m1", "m2", "m3")

    def __init__(self, scale: float = 64.0, s_pos: float | None = None, m1: float = 1.0, m2: float = 0.5,
                 m3: float = 0.0):
        super().__init__(scale)
        self.s_pos = self.scale if s_pos is None else _check_number(s_pos, "s_pos", 0.0, low_inclusive=False)
        self.m1 = _check_number(m1, "m1", 0.0, low_inclusive=False)
        self.m2 = _check_number(m2, "m2", 0.0, math.pi, high_inclusive=False)
        self.m3 = _check_number(m3, "m3")

    def _target_logit(self, target, valid, feature_norms):
        angular = target if self.m1 == 1.0 and self.m2 == 0.0 else _angular_target(target, self.m1, self.m2)
        # apply() multiplies every column by s_neg; the ratio is exactly 1.0 when s_pos = s_neg
        return (angular - self.m3) * (self.s_pos / self.scale)


MARGIN_PENALTIES: dict[str, type[MarginPenalty]] = {
    "arcface": ArcFace,
    "cosface": CosFace,
    "combined": CombinedMargin,
    "rescaled": RescaledArcFace,
    "adaface": AdaFace,
    "curricularface": CurricularFace,
    "elasticarcface": ElasticArcFace,
    "elasticcosface": ElasticCosFace,
}


def build_margin_penalty(margin_type: str = "arcface", scale: float = 64.0, **margin_kwargs) -> MarginPenalty:
    """The margin named ``margin_type`` (a key of MARGIN_PENALTIES, any case) with its constructor kwargs
    (e.g. ``margin=0.4``, ``m1=1.0, m2=0.3, m3=0.2``); an unknown name or keyword is a ValueError."""
    key = margin_type.lower() if isinstance(margin_type, str) else None
    if key not in MARGIN_PENALTIES:
        raise ValueError(f"unknown margin_type {margin_type!r}; known: {', '.join(MARGIN_PENALTIES)}")
    margin_cls = MARGIN_PENALTIES[key]
    accepted = [name for name in inspect.signature(margin_cls.__init__).parameters if name not in ("self", "scale")]
    unknown = sorted(set(margin_kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{margin_type!r} does not take {unknown}; it takes {accepted}")
    return margin_cls(scale=scale, **margin_kwargs)
