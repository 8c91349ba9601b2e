"""One call from images to a pre-trained backbone folder: what ``hf-facerec pretrain`` and the study script run."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["backbone_config", "pretrain"]


def backbone_config(spec: str | dict, image_size: int):
    """A backbone config from a JSON object / file (``{"model_type": "vit", "hidden_size": 192, ...}``) or a saved
    folder's config.json; ``image_size`` is set where the config has one."""
    from transformers import AutoConfig, CONFIG_MAPPING

    if isinstance(spec, str) and Path(spec).is_dir():
        config = AutoConfig.from_pretrained(spec)
    else:
        if isinstance(spec, str):
            text = Path(spec).read_text() if Path(spec).is_file() else spec
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"backbone config {text[:80]!r} is neither a folder, a JSON file nor JSON") from error
        spec = dict(spec)
        model_type = spec.pop("model_type", None)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"backbone config needs a transformers model_type, got {model_type!r}")
        config = CONFIG_MAPPING[model_type](**spec)
    if hasattr(config, "image_size"):
        config.image_size = image_size
    return config


def pretrain(images, output_dir, backbone: str | dict, method: str = "swav", image_size: int = 112,
             local_size: int = 48, n_local: int = 4, max_steps: int = 1000, batch_size: int = 64,
             learning_rate: float = 1e-3, weight_decay: float = 0.04, warmup_ratio: float = 0.05,
             save_steps: int = 500, seed: int = 0, resume: str | bool | None = None, image_column: str = "image",
             streaming: bool = False, max_images: int | None = None, from_weights: bool = False, workers: int = 0,
             model_options: dict | None = None, extra_args: dict | None = None) -> dict:
    """Pre-train ``backbone`` (a config spec for :func:`backbone_config`, or with ``from_weights`` a backbone folder
    whose weights to continue from) with ``method`` on ``images`` (:func:`~.data.load_unlabelled_images`).

    Writes ``output_dir/checkpoint-N`` (whole SSL model, for resume), ``output_dir/backbone`` (plain backbone) and
    ``output_dir/pretrain_results.json``; returns the results dict.
    """
    import torch
    from transformers import TrainingArguments

    from .._files import atomic_write, check_output_dir
    from .augment import MultiCropTransform
    from .data import load_unlabelled_images
    from .modeling import SSLModel
    from .trainer import SSLPretrainTrainer

    output = check_output_dir(output_dir)
    dataset = load_unlabelled_images(images, image_column, streaming, max_images=max_images)
    transform = MultiCropTransform(image_size, local_size, 2, n_local, seed=seed)
    if streaming:
        dataset = dataset.map(transform, batched=True, remove_columns=["image"])
    else:
        dataset.set_transform(transform)
    torch.manual_seed(seed)
    source = os.fspath(backbone) if from_weights else backbone_config(backbone, image_size)
    model = SSLModel(source, method, image_size=image_size, **(model_options or {}))
    args = TrainingArguments(
        str(output), max_steps=max_steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=weight_decay, warmup_steps=warmup_ratio,  # < 1: a fraction of max_steps (transformers 5)
        lr_scheduler_type="cosine", save_steps=save_steps,
        save_total_limit=2, logging_steps=max(1, min(50, max_steps // 20)), seed=seed, remove_unused_columns=False,
        report_to=[], dataloader_num_workers=workers, dataloader_drop_last=True, **(extra_args or {}))
    trainer = SSLPretrainTrainer(model, args, train_dataset=dataset)
    out = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(output / "backbone")
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    results = {"method": method, "global_step": out.global_step, "train_loss": out.training_loss,
               "first_logged_loss": losses[0] if losses else None, "last_logged_loss": losses[-1] if losses else None,
               "images": None if streaming else len(dataset), "backbone": str(output / "backbone"),
               **{k: v for k, v in out.metrics.items() if k.startswith("train_")}}
    with atomic_write(output / "pretrain_results.json") as handle:
        json.dump(results, handle, indent=2)
    return results
