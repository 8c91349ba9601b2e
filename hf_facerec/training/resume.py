"""Exact resume for `FaceRecTrainer`: keyed augmentation, atomic checkpoints, a whole-run `train_loss`.

`ExactResumeTrainerMixin` goes before `transformers.Trainer` in the bases. It reads a `datasets.Dataset` whose
transform is a `make_train_transform` one by sample keys (`sample_keys`: each image's augmentation is a function of
(seed, sampler seed, epoch, index), nothing to save), writes checkpoints through a `tmp-` folder renamed into place
and records the loss total in them (`checkpoints`), and resolves `resume_from_checkpoint=True` to the newest
complete checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil

from transformers.trainer_utils import TrainOutput, rotate_checkpoints

from .checkpoints import LOSS_TOTAL, STAGING_PREFIX, publish_checkpoint, read_loss_total, resolve_resume_checkpoint
from .checkpoints import write_loss_total
from .sample_keys import KeyedSampler, keyed_train_dataset

__all__ = ["ExactResumeTrainerMixin"]

logger = logging.getLogger(__name__)


class ExactResumeTrainerMixin:
    """Mix into a `transformers.Trainer` subclass (before `Trainer`): see the module docstring."""

    _loss_before: tuple[int, float] = (0, 0.0)  # (global step, loss sum) of the checkpoint resumed from
    _staging_run_dir: str | None = None

    def get_train_dataloader(self):
        """The Trainer's loader; a `datasets.Dataset` with a `make_train_transform` transform is read by sample keys
        (`hf_facerec.training.sample_keys`), so its augmentation resumes exactly."""
        keyed = keyed_train_dataset(self.train_dataset)
        sampler = self._keyed_sampler() if keyed is not None else None
        if sampler is None:
            return super().get_train_dataloader()
        loader = self._get_dataloader(dataset=keyed, description="Training", batch_size=self._train_batch_size,
                                      sampler_fn=lambda _: sampler, is_training=True)
        if hasattr(loader, "set_sampler"):
            # As accelerate does for its SeedableRandomSampler: on several ranks set_epoch then reaches the sampler
            # through the resumed epoch's skip_first_batches loader (BatchSamplerShard has no .sampler otherwise).
            loader.set_sampler(sampler)
        return loader

    def _keyed_sampler(self) -> KeyedSampler | None:
        from accelerate.data_loader import SeedableRandomSampler
        from torch.utils.data import RandomSampler, SequentialSampler

        sampler, config = self._get_train_sampler(self.train_dataset), self.accelerator.dataloader_config
        if isinstance(sampler, RandomSampler) and config.use_seedable_sampler:
            # What accelerator.prepare makes of a RandomSampler; it cannot see one inside KeyedSampler.
            sampler = SeedableRandomSampler(data_source=sampler.data_source, replacement=sampler.replacement,
                                            num_samples=sampler._num_samples, generator=sampler.generator,
                                            data_seed=config.data_seed)
            return KeyedSampler(sampler, sampler.initial_seed)
        if type(sampler) is SequentialSampler:
            return KeyedSampler(sampler, self.args.data_seed if self.args.data_seed is not None else self.args.seed)
        return None  # grouped / rebalanced batches, an unseeded shuffle: read as the Trainer reads them

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None,
              **kwargs) -> TrainOutput:
        """`Trainer.train`; `resume_from_checkpoint=True` takes the newest *complete* checkpoint, and after a resume
        `train_loss` is the mean over all steps of the run (the Trainer's covers the steps after the resume)."""
        if isinstance(resume_from_checkpoint, bool):
            resume_from_checkpoint = resolve_resume_checkpoint(self.args.output_dir, resume_from_checkpoint)
        before = read_loss_total(resume_from_checkpoint) if resume_from_checkpoint else (0, 0.0)
        self._loss_before = before or (0, 0.0)
        output = super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)
        if before is None:
            logger.warning("%s has no %s: train_loss covers only the steps after it", resume_from_checkpoint,
                           LOSS_TOTAL)
            return output
        if before[0] == 0:
            return output
        loss = (before[1] + self._total_loss_scalar) / max(self.state.global_step, 1)
        output.metrics["train_loss"] = loss
        for entry in reversed(self.state.log_history):
            if "train_loss" in entry:
                entry["train_loss"] = loss
                break
        return TrainOutput(output.global_step, loss, output.metrics)

    def _get_output_dir(self, trial) -> str:
        # The staging folder while _save_checkpoint writes, so that super() writes there.
        return self._staging_run_dir if self._staging_run_dir is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` into `tmp-checkpoint-N/`, renamed to `checkpoint-N` once every process wrote
        its part: a kill mid-save leaves no partial `checkpoint-N`. Records the loss total for a resumed run."""
        push = self.args.push_to_hub and self.args.hub_strategy in ("checkpoint", "all_checkpoints")
        run_dir, name = self._get_output_dir(trial), f"checkpoint-{self.state.global_step}"
        staging, final = os.path.join(run_dir, STAGING_PREFIX + name), os.path.join(run_dir, name)
        staged = os.path.join(staging, name)
        loss_sum = self._loss_before[1] + self._total_loss_scalar + self._tr_loss.item()
        if push:  # the hub upload reads the folder in the background: it must keep its name
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                write_loss_total(final, self.state.global_step, loss_sum)
            return
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left by a save that was killed
        self.accelerator.wait_for_everyone()
        self._staging_run_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_run_dir = None
        if self.args.should_save:
            if self.state.best_model_checkpoint == staged:  # super() saw the best checkpoint under its staging name
                self.state.best_model_checkpoint = final
                self.state.save_to_json(os.path.join(staged, "trainer_state.json"))
            write_loss_total(staged, self.state.global_step, loss_sum)
        self.accelerator.wait_for_everyone()  # every rank's rng_state / shards are in
        if self.args.should_save:
            publish_checkpoint(staged, final)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()
