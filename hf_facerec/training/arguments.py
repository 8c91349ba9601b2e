"""`FaceRecTrainingArguments`: `transformers.TrainingArguments` plus the face-recognition training knobs.

The finetune mode, the PEFT recipe (defaults: the foundation-model study's LoRA, rank 16, alpha 16, dropout
0.25, rank-stabilised scaling, attention query/value projections), per-part learning rates, sharded class
centers and the verification pair sets evaluated during training. Defaults that differ from `TrainingArguments`:
`remove_unused_columns=False` (datasets use `set_transform`, whose columns the Trainer cannot see) and
`report_to="none"`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import TrainingArguments

from .options import FINETUNE_MODES, PEFT_METHODS, FaceRecTrainingOptions, is_finite_number

__all__ = ["FaceRecTrainingArguments", "FINETUNE_MODES", "PEFT_METHODS", "is_finite_number"]


@dataclass
class FaceRecTrainingArguments(FaceRecTrainingOptions, TrainingArguments):
    """`TrainingArguments` + what [`FaceRecTrainer`] needs to fine-tune a face recognizer.

    Finetune modes (applied once, by `prepare_model_for_finetuning`):

    - `full`: every parameter trains.
    - `lora`: the backbone is wrapped with a PEFT adapter (`peft_method`: LoRA, DoRA or LoHa) and frozen; the
      adapter, the embedding head and the margin head train. `finalize_model()` merges the adapter.
    - `linear_probe`: the backbone is frozen and held in eval mode (BatchNorm statistics and dropout do not
      move: it stays bit-identical); the embedding head and the margin head train.
    - `scratch`: the backbone is re-initialised (random weights from its config, seeded by `seed`), then
      everything trains; use it with a model built from a config rather than from pretrained weights.

    The margin head is the model's (`FaceRecConfig.margin_type`, ...): set it when building the model
    (`ModelArguments` on the command line, `from_pretrained(..., margin_type=...)` in code).
    """

    def __post_init__(self):
        super().__post_init__()
        self._validate_facerec()

    def _validate_facerec(self) -> None:
        if self.finetune_mode not in FINETUNE_MODES:
            raise ValueError(f"finetune_mode must be one of {FINETUNE_MODES}, got {self.finetune_mode!r}")
        if self.peft_method not in PEFT_METHODS:
            raise ValueError(f"peft_method must be one of {PEFT_METHODS}, got {self.peft_method!r}")
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 1:
            raise ValueError(f"lora_rank must be a positive int, got {self.lora_rank!r}")
        if not is_finite_number(self.lora_alpha) or self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be a positive number, got {self.lora_alpha!r}")
        if not is_finite_number(self.lora_dropout) or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.lora_target_modules is not None and (
            isinstance(self.lora_target_modules, str) or not self.lora_target_modules
        ):
            raise ValueError(f"lora_target_modules must be a non-empty list of names, got {self.lora_target_modules!r}")
        for name in ("head_learning_rate", "backbone_learning_rate"):
            value = getattr(self, name)
            if value is not None and (not is_finite_number(value) or value < 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.verification_flip not in ("none", "sum", "concat"):
            raise ValueError(f"verification_flip must be none, sum or concat, got {self.verification_flip!r}")

    @property
    def resolved_head_learning_rate(self) -> float:
        """Learning rate of the embedding and margin heads."""
        return self.learning_rate if self.head_learning_rate is None else self.head_learning_rate

    @property
    def resolved_backbone_learning_rate(self) -> float:
        """Learning rate of the backbone (or of its adapter)."""
        return self.learning_rate if self.backbone_learning_rate is None else self.backbone_learning_rate

    @property
    def uses_peft(self) -> bool:
        return self.finetune_mode == "lora"

