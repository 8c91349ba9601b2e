"""The search space: categorical (and discretised continuous) decisions over cleaning, architecture and loss,
the constraints a sampled architecture must meet before it trains, and the reward.

Every decision is sampled in every trial (a flat space, 9 groups of the paper become ~20 named decisions here):
a decision a configuration does not use (the IResNet widths of a ViT) is simply ignored, so the controller's
policy is one independent categorical per decision and Optuna sees the same parameters in every trial.

    space = SearchSpace.default(image_size=32)
    space.add(Decision("vit_depth", (2, 4, 6, 8), "architecture", default=4))    # extend or replace a decision
    params = space.defaults()                       # {name: value}
    measured = space.check(params)                  # ConstraintError before any training if over budget
    reward(accuracy, measured["flops"], target_flops=space.target_flops)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("cleaning", "architecture", "loss")
FLOP_PENALTY = 0.05  # the paper's reward: accuracy - 0.05 * |FLOPs / target - 1|


class ConstraintError(ValueError):
    """A sampled configuration breaks a constraint (parameters, FLOPs, an invalid shape): rejected untrained."""


@dataclass(frozen=True)
class Decision:
    """One categorical decision: ``name``, its ``options`` (None, bool, int, float or str, as Optuna takes),
    its ``group`` (one of GROUPS) and the ``default`` (baseline) option that one-aspect-at-a-time search holds."""

    name: str
    options: tuple
    group: str
    default: Any = None

    def __post_init__(self):
        if not self.options or len(set(self.options)) != len(self.options):
            raise ValueError(f"decision {self.name!r} needs distinct options, got {self.options!r}")
        if self.group not in GROUPS:
            raise ValueError(f"decision {self.name!r}: group must be one of {GROUPS}, got {self.group!r}")
        for option in self.options:
            if option is not None and not isinstance(option, (bool, int, float, str)):
                raise ValueError(f"decision {self.name!r}: option {option!r} is not None/bool/int/float/str")
        if self.default not in self.options:
            object.__setattr__(self, "default", self.options[0])


def reward(accuracy: float, flops: float, target_flops: float, penalty: float = FLOP_PENALTY) -> float:
    """``accuracy - penalty * |flops / target_flops - 1|``: the paper's reward (target 350M FLOPs there)."""
    if not target_flops > 0:
        raise ValueError(f"target_flops must be positive, got {target_flops!r}")
    return float(accuracy) - penalty * abs(float(flops) / target_flops - 1.0)


def count_flops(model, image_size: int, num_channels: int = 3) -> int:
    """FLOPs of one forward pass on a (1, C, H, W) input, counted by ``torch.utils.flop_counter``
    (a multiply-add is 2 FLOPs; matmuls and convolutions, as the counter does)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, num_channels, image_size, image_size))
    return int(counter.get_total_flops())


@dataclass
class SearchSpace:
    """Decisions by name, constraints and the reward target. Subclass it or :meth:`add` decisions; override
    :meth:`model_arguments` / :meth:`cleaning_config` to map new decisions onto what trains.

    Args:
        image_size: the proxy's face crop side (FLOPs are measured at it).
        target_flops: the reward's FLOP target. max_params / max_flops / min_flops: hard limits (None: none).
    """

    decisions: dict[str, Decision] = field(default_factory=dict)
    image_size: int = 32
    target_flops: float = 5e6
    max_params: int | None = None
    max_flops: float | None = None
    min_flops: float | None = None

    def add(self, decision: Decision) -> "SearchSpace":
        """Add (or replace, by name) a decision; returns self."""
        self.decisions[decision.name] = decision
        return self

    def names(self, group: str | None = None) -> list[str]:
        return [name for name, d in self.decisions.items() if group is None or d.group == group]

    def defaults(self) -> dict:
        return {name: d.default for name, d in self.decisions.items()}

    @classmethod
    def default(cls, **kwargs) -> "SearchSpace":
        """The package's space, shaped for CPU proxies (widths, depths and sizes are lists users replace)."""
        space = cls(**kwargs)
        for d in (
            Decision("clean_duplicate", (None, 0.95), "cleaning", None),
            Decision("clean_merge", (None, 0.8, 0.7), "cleaning", None),
            Decision("clean_noisy", (None, 0.0, 0.1), "cleaning", None),
            Decision("clean_outlier_fraction", (None, 0.05, 0.1), "cleaning", None),
            Decision("family", ("vit", "iresnet"), "architecture", "vit"),
            Decision("vit_depth", (2, 4, 6), "architecture", 4),
            Decision("vit_width", (32, 64, 96), "architecture", 64),
            Decision("vit_heads", (2, 4), "architecture", 4),
            Decision("vit_patch", (4, 8, 16), "architecture", 8),
            Decision("vit_mlp_ratio", (2, 4), "architecture", 2),
            Decision("iresnet_blocks", ("1-1-1-1", "1-2-2-1", "2-2-2-2"), "architecture", "1-1-1-1"),
            Decision("iresnet_width", (8, 16, 32), "architecture", 16),
            Decision("embedding_size", (64, 128, 256), "architecture", 128),
            Decision("margin_family", ("rescaled", "arcface", "cosface"), "loss", "arcface"),
            Decision("s_pos", (16.0, 32.0, 48.0, 64.0), "loss", 64.0),
            Decision("s_neg", (16.0, 32.0, 48.0, 64.0), "loss", 64.0),
            Decision("m1", (1.0, 1.1, 1.2), "loss", 1.0),
            Decision("m2", (0.0, 0.2, 0.3, 0.5), "loss", 0.5),
            Decision("m3", (0.0, 0.1, 0.2, 0.35), "loss", 0.0),
            Decision("partial_fc_rate", (1.0, 0.5), "loss", 1.0),
        ):
            space.add(d)
        return space

    # ---------------------------------------------------------------- what a configuration trains
    def cleaning_config(self, params: dict):
        """The :class:`~.cleaning.CleaningConfig` of ``params`` (every rule off when the space has none)."""
        from .cleaning import CleaningConfig

        return CleaningConfig(duplicate_threshold=params.get("clean_duplicate"),
                              merge_threshold=params.get("clean_merge"), noisy_margin=params.get("clean_noisy"),
                              outlier_fraction=params.get("clean_outlier_fraction"), min_images=2)

    def model_arguments(self, params: dict) -> dict:
        """``ModelArguments`` fields (what a ``configs/train/*.yaml`` holds) of ``params``.

        ViTs are the ``tiny-vit`` preset with overrides, IResNets the ``iresnet18`` preset with ``layers`` and
        ``hidden_sizes`` overridden. Losses: ``rescaled`` takes s_pos, s_neg, m1, m2, m3; ``arcface`` s_neg and m2;
        ``cosface`` s_neg and m3.
        """
        p = {**self.defaults(), **params}
        if p["family"] == "vit":
            width, heads = int(p["vit_width"]), int(p["vit_heads"])
            if width % heads:
                raise ConstraintError(f"vit_width {width} is not divisible by vit_heads {heads}")
            if self.image_size % int(p["vit_patch"]):
                raise ConstraintError(f"image_size {self.image_size} is not divisible by vit_patch {p['vit_patch']}")
            backbone, overrides = "tiny-vit", {
                "num_hidden_layers": int(p["vit_depth"]), "hidden_size": width, "num_attention_heads": heads,
                "patch_size": int(p["vit_patch"]), "intermediate_size": int(p["vit_mlp_ratio"] * width)}
        elif p["family"] == "iresnet":
            blocks = [int(b) for b in str(p["iresnet_blocks"]).split("-")]
            width = int(p["iresnet_width"])
            backbone, overrides = "iresnet18", {"layers": blocks,
                                                "hidden_sizes": [width * 2 ** i for i in range(len(blocks))]}
        else:
            raise ConstraintError(f"unknown architecture family {p['family']!r}")
        family = p["margin_family"]
        if family == "rescaled":
            margin = {"s_pos": float(p["s_pos"]), "m1": float(p["m1"]), "m2": float(p["m2"]), "m3": float(p["m3"])}
        elif family in ("arcface", "curricularface", "adaface"):
            margin = {"margin": float(p["m2"])}
        elif family == "cosface":
            margin = {"margin": float(p["m3"])}
        else:
            raise ConstraintError(f"unknown margin family {family!r}")
        return {"backbone": backbone, "backbone_overrides": json.dumps(overrides), "image_size": self.image_size,
                "embedding_size": int(p["embedding_size"]), "margin_type": family,
                "margin_scale": float(p["s_neg"]), "margin_kwargs": margin,
                "partial_fc_sample_rate": float(p["partial_fc_rate"])}

    def build_model(self, params: dict, num_identities: int):
        """The ``FaceRecForMarginClassification`` that ``scripts/train.py`` builds from :meth:`model_arguments`."""
        from ..training.build import ModelArguments, build_model

        return build_model(ModelArguments(**self.model_arguments(params)), num_identities, "scratch")

    def measure(self, params: dict) -> dict:
        """``{"params": embedding-model parameters, "flops": FLOPs per image}`` of the built model (the margin
        head is left out: its size is the data's, not the architecture's)."""
        model = self.build_model(params, num_identities=2).facerec
        return {"params": sum(p.numel() for p in model.parameters()),
                "flops": count_flops(model, self.image_size, model.config.num_channels)}

    def check(self, params: dict) -> dict:
        """:meth:`measure`, then the limits: raises :class:`ConstraintError` (nothing trains) or returns the
        measurements."""
        try:
            measured = self.measure(params)
        except ConstraintError:
            raise
        except ValueError as error:  # an invalid shape the model itself refuses
            raise ConstraintError(f"configuration does not build: {error}") from error
        if self.max_params is not None and measured["params"] > self.max_params:
            raise ConstraintError(f"{measured['params']:,} parameters > max_params {self.max_params:,}")
        if self.max_flops is not None and measured["flops"] > self.max_flops:
            raise ConstraintError(f"{measured['flops']:,} FLOPs > max_flops {self.max_flops:,.0f}")
        if self.min_flops is not None and measured["flops"] < self.min_flops:
            raise ConstraintError(f"{measured['flops']:,} FLOPs < min_flops {self.min_flops:,.0f}")
        return measured

    def suggest(self, trial) -> dict:
        """Ask an Optuna trial for every decision (in the space's order)."""
        return {name: trial.suggest_categorical(name, list(d.options)) for name, d in self.decisions.items()}
