"""Training: `FaceRecTrainingArguments` + `FaceRecTrainer` (full, LoRA/DoRA/LoHa, linear probe, scratch) on the
transformers Trainer and Accelerate; PEFT helpers in `hf_facerec.training.peft`; what the command line builds in `hf_facerec.training.build`.

Names are imported lazily: `import hf_facerec.training.distributed` (or any sibling) does not pull in the Trainer.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FaceRecTrainingArguments": "arguments",
    "FINETUNE_MODES": "arguments",
    "PEFT_METHODS": "arguments",
    "FaceRecTrainer": "trainer",
    "prepare_model_for_finetuning": "trainer",
    "parameter_groups": "trainer",
    "apply_peft": "peft",
    "build_peft_config": "peft",
    "merge_adapter": "peft",
    "save_adapter": "peft",
    "load_adapter": "peft",
    "resolve_target_modules": "peft",
    "trainable_parameter_counts": "peft",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
