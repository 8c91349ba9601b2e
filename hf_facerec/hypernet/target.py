"""The target network f: a tiny CNN verifier on a low-resolution aligned face, run on weights handed to it.

One f per enrolled user; its weights come from the hypernetwork (:mod:`.modeling_hypernet`), so :func:`target_forward`
takes them as an argument (``torch.func.functional_call`` on one shared, weight-less module layout). Its size is
measured, not assumed: :func:`count_parameters` sums the parameter shapes, :func:`count_flops` runs one forward
under ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls, 2 FLOPs per multiply-add: what the
counter reports; activations and pooling are not counted). :class:`TargetConfig` refuses a layout over its budget.

Layout (defaults: 32x32 grayscale, channels (16, 32, 56): ~21k parameters, ~4.7 MFLOPs, near the ~23k / ~5 MFLOPs of
Rozner et al. 2024, whose exact layout is not public): ``[conv3x3 -> ReLU -> maxpool2] x len(channels) -> global
average pool -> linear -> one logit``; p(same person) = sigmoid(logit). No normalisation layers: the generated weights
must work as they are (batch statistics would leak between probes).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["BudgetExceededError", "TargetConfig", "TinyVerifierNet", "count_flops", "count_parameters",
           "fan_in", "target_forward"]


class BudgetExceededError(ValueError):
    """A target layout whose measured parameters or FLOPs exceed its configured budget."""


@dataclass
class TargetConfig:
    """Layout and budget of f.

    Args:
        image_size: side of the square low-resolution input (e.g. 32 or 64).
        num_channels: 1 (grayscale) or 3 (RGB).
        channels: output channels of each conv3x3 -> ReLU -> maxpool2 stage.
        max_params: most parameters allowed (measured by :func:`count_parameters`); None: no limit.
        max_flops: most FLOPs of one forward on one image (measured by :func:`count_flops`); None: no limit.
    """

    image_size: int = 32
    num_channels: int = 1
    channels: list[int] = field(default_factory=lambda: [16, 32, 56])
    max_params: int | None = 25_000
    max_flops: int | None = 6_000_000

    def __post_init__(self):
        self.channels = [int(c) for c in self.channels]
        if self.num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 (grayscale) or 3 (RGB), got {self.num_channels}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {self.channels}")
        if int(self.image_size) != self.image_size or self.image_size < 2 ** len(self.channels):
            raise ValueError(f"image_size must be an int >= {2 ** len(self.channels)} for {len(self.channels)} "
                             f"pooling stages, got {self.image_size}")
        params, flops = count_parameters(self), count_flops(self)
        if self.max_params is not None and params > self.max_params:
            raise BudgetExceededError(f"target layout {self.channels} at {self.image_size}px has {params} parameters, "
                                      f"over the budget max_params={self.max_params}")
        if self.max_flops is not None and flops > self.max_flops:
            raise BudgetExceededError(f"target layout {self.channels} at {self.image_size}px costs {flops} FLOPs per "
                                      f"image, over the budget max_flops={self.max_flops}")

    def to_dict(self) -> dict:
        return asdict(self)


class TinyVerifierNet(nn.Module):
    """f: ``(N, C, S, S)`` pixels in [-1, 1] -> ``(N,)`` logits of "this is the enrolled user"."""

    def __init__(self, config: TargetConfig):
        super().__init__()
        self.config = config
        layers, width = [], config.num_channels
        for out in config.channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixel_values).mean(dim=(2, 3))).squeeze(-1)


def _meta_net(config: TargetConfig) -> TinyVerifierNet:
    with torch.device("meta"):  # shapes only: nothing allocated
        return TinyVerifierNet(config)


def parameter_shapes(config: TargetConfig) -> "OrderedDict[str, torch.Size]":
    """f's parameters in generation order: name -> shape."""
    return OrderedDict((name, p.shape) for name, p in _meta_net(config).named_parameters())


def fan_in(name: str, shape: torch.Size) -> int:
    """Inputs feeding one output unit of parameter ``name``: in_channels x kernel area (weights) or the layer's (bias)."""
    return int(math.prod(shape[1:])) if len(shape) > 1 else 1


def count_parameters(config: TargetConfig) -> int:
    """Measured parameter count of f (sum of its parameter shapes)."""
    return sum(int(math.prod(s)) for s in parameter_shapes(config).values())


def count_flops(config: TargetConfig) -> int:
    """Measured FLOPs of f on one image (``FlopCounterMode``: convolutions and matmuls, 2 per multiply-add)."""
    net = TinyVerifierNet(config)
    x = torch.zeros(1, config.num_channels, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return int(counter.get_total_flops())


def target_forward(net: TinyVerifierNet, weights: dict[str, torch.Tensor], pixel_values: torch.Tensor) -> torch.Tensor:
    """f with the given weights: ``weights`` name -> tensor of :func:`parameter_shapes`; (N, C, S, S) -> (N,) logits."""
    return functional_call(net, weights, (pixel_values,))
