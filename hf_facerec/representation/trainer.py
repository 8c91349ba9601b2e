"""`SSLPretrainTrainer`: self-supervised pre-training as a `transformers.Trainer` (Accelerate: DDP, FSDP, mixed
precision, checkpointing and resume as for `FaceRecTrainer`).

Checkpoints hold the whole :class:`~.modeling.SSLModel` (projection head, prototypes, teacher, DINO centre: a
resumed run continues exactly), written atomically by the package's
:class:`~hf_facerec.training.resume.ExactResumeTrainerMixin`, which also keys each image's multi-crop views by
(seed, sampler seed, epoch, index) when the dataset's transform is a :class:`~.augment.MultiCropTransform`.
``save_model()`` (the end of training) writes the backbone alone: a plain ``save_pretrained`` folder that
``FaceRecModel.from_backbone(path)`` and ``FaceRecTrainer`` fine-tuning start from.
"""

from __future__ import annotations

import os

from transformers import Trainer, TrainerCallback

from ..training.resume import ExactResumeTrainerMixin
from .modeling import SSLModel

__all__ = ["SSLPretrainTrainer"]


class _MomentumCallback(TrainerCallback):
    """The teacher's EMA after every optimizer step (DINO); a no-op for methods without a teacher."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.accelerator.unwrap_model(self.trainer.model).momentum_update()


class SSLPretrainTrainer(ExactResumeTrainerMixin, Trainer):
    """`Trainer` for an :class:`SSLModel` on batches ``{"global_crops", "local_crops"}`` (set the dataset's
    transform to a ``MultiCropTransform``; use ``remove_unused_columns=False``)."""

    def __init__(self, model: SSLModel, args=None, **kwargs):
        if not isinstance(model, SSLModel):
            raise ValueError(f"SSLPretrainTrainer trains an SSLModel, got {type(model).__name__}")
        if args is not None and args.remove_unused_columns:
            raise ValueError("SSLPretrainTrainer needs TrainingArguments(remove_unused_columns=False): the "
                             "multi-crop transform reads the image column")
        super().__init__(model=model, args=args, **kwargs)
        self.add_callback(_MomentumCallback(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(global_crops=inputs["global_crops"], local_crops=inputs.get("local_crops"))
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        with torch.no_grad():
            loss = self.compute_loss(model, self._prepare_inputs(inputs))
        return loss.detach(), None, None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints (``_internal_call``): the whole SSL model. Otherwise: the backbone alone, to ``output_dir``
        (default ``args.output_dir``)."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        output_dir = os.fspath(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.should_save:
            self.accelerator.unwrap_model(self.model).save_backbone(output_dir)
        self.accelerator.wait_for_everyone()
