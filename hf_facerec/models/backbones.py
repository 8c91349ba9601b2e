"""The one table of backbone-family facts: token layout, feature width, default adapter targets.

Pooling, the embedding head's input width, LoRA's default target modules and weight decay all read the same
entry, so a new family is one row here. Shipped as remote code next to saved checkpoints (imports nothing but the
standard library).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BackboneFamily", "BACKBONE_FAMILIES", "CLS_TOKEN_BACKBONES", "NO_DECAY_TOKENS", "feature_width"]


@dataclass(frozen=True)
class BackboneFamily:
    """What the package must know about one backbone ``model_type``.

    Args:
        cls_token: ``last_hidden_state`` starts with a CLS token (then ``num_register_tokens`` registers, then
            patches), so "cls" pooling exists and "mean" skips those prefix tokens.
        width: the config attribute holding the width of the last feature map or token: ``"hidden_size"``,
            ``"hidden_sizes"`` (its last entry: CNN stages) or ``"feature_size"`` (MobileFaceNet's last map).
        lora_targets: default adapter target modules: a tuple of module-name endings, or one regex string that
            peft full-matches against module names relative to the backbone; ``None``: no default.
    """

    cls_token: bool = False
    width: str = "hidden_size"
    lora_targets: tuple[str, ...] | str | None = None


_QV = ("q_proj", "v_proj")
_VIT = BackboneFamily(cls_token=True, lora_targets=_QV)

BACKBONE_FAMILIES: dict[str, BackboneFamily] = {
    "vit": _VIT,
    "deit": _VIT,
    "dinov2": _VIT,
    "dinov2_with_registers": _VIT,
    "dinov3_vit": _VIT,
    "beit": _VIT,
    "clip_vision_model": _VIT,
    "vit_msn": BackboneFamily(cls_token=True),
    "vit_mae": BackboneFamily(cls_token=True),
    "data2vec-vision": BackboneFamily(cls_token=True),
    "siglip_vision_model": BackboneFamily(lora_targets=_QV),  # no CLS token: an attention-pooling head instead
    "swin": BackboneFamily(lora_targets=_QV),  # hidden_sizes lists stage widths, but its output is hidden_size wide
    "convnext": BackboneFamily(width="hidden_sizes", lora_targets=("pwconv1", "pwconv2")),
    "resnet": BackboneFamily(width="hidden_sizes", lora_targets=r".*\.layer\.\d+\.convolution"),
    "iresnet": BackboneFamily(width="hidden_sizes", lora_targets=("conv1", "conv2")),
    "mobilefacenet": BackboneFamily(width="feature_size", lora_targets=r".*(expand|project)\.convolution"),
}

CLS_TOKEN_BACKBONES = frozenset(name for name, family in BACKBONE_FAMILIES.items() if family.cls_token)

# Parameters that are not "weights" in the weight-decay sense although they have 2+ dimensions.
NO_DECAY_TOKENS = (
    "position_embedding", "pos_embed", "cls_token", "class_embedding", "register_tokens", "mask_token",
    "relative_position_bias_table",
)


def feature_width(backbone_config: Any) -> int:
    """Width of the backbone's last feature map or token, from its config alone.

    A family not in the table falls back on ``hidden_sizes[-1]`` when the config lists stage widths (most CNNs in
    transformers), else ``hidden_size``.
    """
    family = BACKBONE_FAMILIES.get(backbone_config.model_type)
    if family is None:
        hidden_sizes = getattr(backbone_config, "hidden_sizes", None)
        attribute = "hidden_sizes" if hidden_sizes else "hidden_size"
    else:
        attribute = family.width
    value = getattr(backbone_config, attribute)
    return int(value[-1] if attribute == "hidden_sizes" else value)
