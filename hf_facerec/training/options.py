"""The face-recognition training knobs as a plain dataclass: what `hf-facerec train --help` lists without torch.

[`FaceRecTrainingArguments`] is `transformers.TrainingArguments` plus these fields; this module imports neither,
so the command line can describe them in a fraction of a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["FaceRecTrainingOptions", "FINETUNE_MODES", "PEFT_METHODS", "is_finite_number"]

FINETUNE_MODES = ("full", "lora", "linear_probe", "scratch")
PEFT_METHODS = ("lora", "dora", "loha")


@dataclass
class FaceRecTrainingOptions:
    """The fields [`FaceRecTrainingArguments`] adds to `TrainingArguments` (see its docstring)."""

    finetune_mode: str = field(
        default="full",
        metadata={"help": "How the backbone trains.", "choices": list(FINETUNE_MODES)},
    )
    peft_method: str = field(
        default="lora",
        metadata={
            "help": "PEFT method for finetune_mode=lora: lora, dora (LoRA with weight decomposition) or loha.",
            "choices": list(PEFT_METHODS),
        },
    )
    lora_rank: int = field(default=16, metadata={"help": "Adapter rank r."})
    lora_alpha: float = field(default=16.0, metadata={"help": "Adapter alpha (scaling alpha/sqrt(r) with rsLoRA)."})
    lora_dropout: float = field(
        default=0.25,
        metadata={"help": "Dropout on the adapter input (LoRA/DoRA); LoHa uses it as its rank dropout."},
    )
    use_rslora: bool = field(
        default=True, metadata={"help": "Rank-stabilised LoRA scaling alpha/sqrt(r) (LoRA/DoRA only)."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Backbone module names (suffixes) the adapter wraps; default: resolved per backbone family "
            "(attention q_proj/v_proj for ViT, DINOv2, CLIP, Swin; block convolutions for CNNs)."
        },
    )
    shard_class_centers: bool = field(
        default=False,
        metadata={"help": "Shard the class centers across processes (each rank holds 1/world of them)."},
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the embedding head and the margin head (None: learning_rate)."},
    )
    backbone_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the backbone / its adapter (None: learning_rate)."}
    )
    verification_pairs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Pair sets evaluated at each evaluation, as paths or name=path (metrics "
            "eval_<name>_accuracy, ...)."
        },
    )
    verification_flip: str = field(
        default="sum",
        metadata={"help": "Flip test-time augmentation for verification.", "choices": ["none", "sum", "concat"]},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: face datasets use set_transform, whose output columns the Trainer cannot see."},
    )



def is_finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
