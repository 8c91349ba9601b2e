"""`FaceRecTrainer`: the transformers `Trainer` for margin-loss face recognition.

On top of `Trainer` (and so of Accelerate: DDP, FSDP, DeepSpeed, mixed precision, checkpointing, resume) it
adds: the finetune modes applied once to the model (`prepare_model_for_finetuning`), the margin loss in
`compute_loss`, parameter groups with their own learning rates and weight decay, class centers sharded across
processes, verification pair sets evaluated with the Trainer's evaluation schedule, and the end of training:
`finalize_model()` (merge the adapter), `save_adapter(dir)`, `save_final_model(dir)`.

Resume (`trainer.train(resume_from_checkpoint=...)`) is the Trainer's own: a checkpoint holds the model (the
full state dict, adapter and heads included, through `save_pretrained`), the optimizer, the scheduler, the
trainer state (global step) and the RNG states (`rng_state.pth`); on resume the Trainer skips the batches the
sampler already yielded in the current epoch, so the data order continues where it stopped. On top of it: the
augmentation of a `make_train_transform` dataset is keyed by (seed, epoch, index) (`sample_keys`), checkpoints are
written atomically and `train_loss` covers the whole run after a resume (`resume`, `sample_keys`, `checkpoints`).
"""

from __future__ import annotations

import copy
import functools
import os
import types

import torch
from torch import nn
from transformers import Trainer

from ..models.backbones import NO_DECAY_TOKENS
from .arguments import FaceRecTrainingArguments
from .distributed import ShardedHeadTrainerMixin, gather_margin_head, gathered_margin_head, shard_margin_head
from .launch import check_launch, ddp_find_unused_parameters
from .peft import apply_peft, build_peft_config, has_adapter, merge_adapter, save_adapter, unwrap_facerec
from .resume import ExactResumeTrainerMixin

__all__ = ["FaceRecTrainer", "prepare_model_for_finetuning", "parameter_groups"]

# Wrappers (DDP, FSDP, torch.compile, activation checkpointing) insert these path components into parameter names.
_WRAPPER_COMPONENTS = frozenset({"module", "_fsdp_wrapped_module", "_orig_mod", "_checkpoint_wrapped_module"})
_PARTS = ("backbone", "embedding_head", "margin_head")


# ---------------------------------------------------------------------------------------------------------------
# Finetune modes
# ---------------------------------------------------------------------------------------------------------------
def prepare_model_for_finetuning(model: nn.Module, args: FaceRecTrainingArguments) -> nn.Module:
    """Apply `args.finetune_mode` to `model` in place, once; returns `model`.

    - full: everything trainable.
    - lora: a peft adapter (`args.peft_method`) on the backbone, which is otherwise frozen; heads trainable.
    - linear_probe: backbone frozen and locked in eval mode (`model.train()` no longer reaches it), heads trainable.
    - scratch: backbone re-initialised from its config (seeded by `args.seed`), everything trainable.

    The margin head trains in every mode. Calling it again with the same mode is a no-op; another mode raises.
    """
    applied = getattr(model, "_facerec_finetune_mode", None)
    if applied is not None:
        if applied != args.finetune_mode:
            raise ValueError(
                f"The model was already prepared for finetune_mode={applied!r}, not {args.finetune_mode!r}"
            )
        return model
    if not isinstance(getattr(model, "margin_head", None), nn.Module):
        raise ValueError(
            f"FaceRecTrainer trains a FaceRecForMarginClassification (a model with a margin head), got "
            f"{type(model).__name__}"
        )
    facerec = unwrap_facerec(model)
    model.requires_grad_(True)
    mode = args.finetune_mode
    if mode == "scratch":
        _reinitialize(facerec.backbone, args.seed)
    elif mode == "linear_probe":
        _freeze_in_eval(facerec.backbone)
    elif mode == "lora":
        peft_config = build_peft_config(
            model.config.backbone_type, args.peft_method, args.lora_rank, args.lora_alpha, args.lora_dropout,
            args.use_rslora, args.lora_target_modules,
        )
        apply_peft(model, peft_config)
    model._facerec_finetune_mode = mode
    return model


def _reinitialize(backbone: nn.Module, seed: int) -> None:
    """Random weights for `backbone`, as its config would build them, drawn under `seed` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        # PyTorch defaults first, for any module the model's own _init_weights does not cover ...
        for module in backbone.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        # ... then the model's scheme. transformers marks initialised modules and tensors and skips them.
        if hasattr(backbone, "initialize_weights"):
            for module in backbone.modules():
                module.__dict__.pop("_is_hf_initialized", None)
                for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
                    if hasattr(tensor, "_is_hf_initialized"):
                        del tensor._is_hf_initialized
            backbone.initialize_weights()


def _eval_only_train(self: nn.Module, mode: bool = True) -> nn.Module:
    # Bound as `train` on a frozen backbone: BatchNorm statistics and dropout must not move whoever calls train().
    return nn.Module.train(self, False)


def _freeze_in_eval(backbone: nn.Module) -> None:
    backbone.requires_grad_(False)
    backbone.train = types.MethodType(_eval_only_train, backbone)
    backbone.eval()


# ---------------------------------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------------------------------
def _parameter_part(name: str) -> str:
    """"backbone", "embedding_head" or "margin_head" for a parameter name of the (possibly wrapped) model."""
    parts = [part for part in name.split(".") if part not in _WRAPPER_COMPONENTS]
    if parts and parts[0] == "margin_head":
        return "margin_head"
    if parts[:2] == ["facerec", "embedding_head"] or parts[:1] == ["embedding_head"]:
        return "embedding_head"
    return "backbone"


def _decays(name: str, parameter: torch.Tensor) -> bool:
    """Weight decay applies to weight matrices and kernels; not to biases, norms (1-D) nor embeddings/tokens."""
    return parameter.ndim >= 2 and not any(token in name for token in NO_DECAY_TOKENS)


def parameter_groups(model: nn.Module, args: FaceRecTrainingArguments) -> list[dict]:
    """Optimizer parameter groups of the trainable parameters: per part (backbone, embedding head, margin head)
    x (decay, no decay), with the part's learning rate. Each group carries a "name" ("backbone", ...,
    "margin_head_no_decay"); empty groups are left out."""
    groups: dict[tuple[str, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part, decay = _parameter_part(name), _decays(name, parameter)
        if (part, decay) not in groups:
            learning_rate = (
                args.resolved_backbone_learning_rate if part == "backbone" else args.resolved_head_learning_rate
            )
            groups[(part, decay)] = {
                "name": part if decay else f"{part}_no_decay",
                "params": [],
                "lr": learning_rate,
                "weight_decay": args.weight_decay if decay else 0.0,
            }
        groups[(part, decay)]["params"].append(parameter)
    # A stable order (independent of module registration order) keeps optimizer checkpoints loadable.
    return [groups[key] for key in sorted(groups, key=lambda key: (_PARTS.index(key[0]), not key[1]))]


# ---------------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------------
class FaceRecTrainer(ShardedHeadTrainerMixin, ExactResumeTrainerMixin, Trainer):
    """`Trainer` for `FaceRecForMarginClassification` with [`FaceRecTrainingArguments`].

    Inputs are batches with `pixel_values` (B, C, H, W) and `labels` (B,) identity indices, e.g. a `datasets`
    identity dataset with `set_transform(make_train_transform(processor))`. The model is prepared for
    `args.finetune_mode` at construction (see `prepare_model_for_finetuning`); pass the image processor as
    `processing_class` so checkpoints and the final model carry it.
    """

    # The model returns a per-batch mean: the Trainer must divide it by the gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model: nn.Module | None = None, args: FaceRecTrainingArguments | None = None, **kwargs):
        if model is None:
            raise ValueError("FaceRecTrainer needs a model (model_init is not supported)")
        if not isinstance(args, FaceRecTrainingArguments):
            raise ValueError(f"FaceRecTrainer needs FaceRecTrainingArguments, got {type(args).__name__}")
        check_launch(args.world_size)  # before any work: a mislaunched run must not start N lone trainings
        prepare_model_for_finetuning(model, args)
        if args.world_size > 1:
            # Before sharding (the probe needs the full head) and before Trainer turns it into DDP's kwargs.
            args.ddp_find_unused_parameters = ddp_find_unused_parameters(model, args.ddp_find_unused_parameters)
        if args.shard_class_centers and args.world_size > 1:
            # Before the Trainer builds the optimizer and DDP wraps the model (see hf_facerec.training.distributed).
            shard_margin_head(model, args.process_index, args.world_size)
        if args.verification_pairs and kwargs.get("eval_dataset") is None:
            # Trainer refuses an evaluation schedule without an eval_dataset; the pair sets are ours to evaluate.
            kwargs["eval_dataset"] = {}
        super().__init__(model=model, args=args, **kwargs)
        if args.shard_class_centers and args.world_size > 1 and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            # ZeRO / FSDP would partition (and all-gather) each rank's own shard again as if it were replicated.
            raise ValueError("shard_class_centers needs plain data parallelism: use configs/accelerate/ddp.yaml, not "
                             "DeepSpeed or FSDP")
        # forward() takes **kwargs, from which Trainer infers it normalises by num_items_in_batch; it does not.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's margin loss (a mean over the batch) for `inputs` with `pixel_values` and `labels`."""
        missing = [key for key in ("pixel_values", "labels") if key not in inputs]
        if missing:
            raise ValueError(
                f"FaceRecTrainer batches need {missing} (got {sorted(inputs)}); with set_transform keep "
                "remove_unused_columns=False"
            )
        outputs = model(pixel_values=inputs["pixel_values"], labels=inputs["labels"])
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The optimizer of `args.optim` over `parameter_groups` (own learning rates, no decay on norms/biases)."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            if {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
                raise ValueError(f"optim={self.args.optim!r} builds its own parameter groups; FaceRecTrainer needs "
                                 "a plain torch optimizer (adamw_torch, sgd, ...)")
            self.optimizer = optimizer_cls(parameter_groups(opt_model, self.args), **optimizer_kwargs)
        return self.optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # transformers 5 writes models whose modules it renamed (ViT, DINOv2, CLIP: q_proj, ...) under their legacy
        # key names, but the Trainer's resume (and load_best_model_at_end) loads checkpoint keys verbatim, without
        # the renaming, and misses them all. Checkpoints keep today's names (from_pretrained reads both).
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_original_format=False)
        try:
            super()._save(output_dir, state_dict)
        finally:
            del model.save_pretrained

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Loss on `eval_dataset` (if any) + verification metrics on `args.verification_pairs` (if any)."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics: dict[str, float] = {}
        if dataset is not None and not (isinstance(dataset, dict) and not dataset):
            metrics.update(super().evaluate(eval_dataset, ignore_keys, metric_key_prefix))
        if self.args.verification_pairs:
            pair_metrics = self.evaluate_verification(metric_key_prefix)
            self.log(pair_metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, pair_metrics)
            metrics.update(pair_metrics)
        return metrics

    def evaluate_verification(self, metric_key_prefix: str = "eval") -> dict[str, float]:
        """10-fold accuracy, TAR@FAR, ... on each pair set of `args.verification_pairs`, as `<prefix>_<name>_<metric>`
        (`hf_facerec.training.callbacks.evaluate_pair_sets`; pair sets are paths or `name=path`)."""
        from .callbacks import evaluate_pair_sets

        results = evaluate_pair_sets(
            self.accelerator.unwrap_model(self.model), self.args.verification_pairs,
            image_processor=self.processing_class, batch_size=self.args.per_device_eval_batch_size,
            flip=self.args.verification_flip, metric_key_prefix=metric_key_prefix,
        )
        prefix = f"{metric_key_prefix}_"
        return {key if key.startswith(prefix) else prefix + key: float(value) for key, value in results.items()}

    # -- the end of training ----------------------------------------------------------------------------------
    def _consolidated_model(self) -> nn.Module | None:
        """The trained model, unwrapped, with full weights (collective: call it on every rank).

        Plain / DDP training: the model itself. FSDP / DeepSpeed hold sharded weights, so there a copy is rebuilt on
        the main process from the gathered state dict (with the same adapter); other ranks get None.
        """
        model = self.accelerator.unwrap_model(self.model)
        if not (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            return model
        state_dict = self.accelerator.get_state_dict(self.model_wrapped)
        if not self.args.should_save:
            return None
        full = type(model)(model.config)
        if has_adapter(model):
            apply_peft(full, copy.deepcopy(unwrap_facerec(model).backbone.peft_config["default"]))
        full.load_state_dict(state_dict)
        return full

    def finalize_model(self) -> nn.Module | None:
        """The final model: adapter merged into the backbone (a no-op outside lora), unwrapped (collective).

        In place for plain / DDP training (the adapter is gone afterwards: call it once training is over); under
        FSDP / DeepSpeed a merged copy on the main process (None on the other ranks).
        """
        model = self._consolidated_model()
        if model is not None:
            merge_adapter(model)
        return model

    def save_adapter(self, output_dir: str | os.PathLike) -> None:
        """Save the backbone adapter + the heads (`hf_facerec.training.peft.save_adapter`), before `finalize_model`.

        Collective (a sharded margin head is gathered, FSDP / DeepSpeed weights consolidated); the main process writes.
        """
        with gathered_margin_head(self.accelerator.unwrap_model(self.model)):
            model = self._consolidated_model()
            if self.args.should_save:
                save_adapter(model, output_dir)
        self.accelerator.wait_for_everyone()

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Push the final embedding model with the hf_facerec card, results and thresholds (`hf_facerec.hub.push`)
        instead of the Trainer's generic card: the same upload as `hf-facerec push` (weights, remote code,
        README.md, preprocessor_config.json of `processing_class` or the default processor). `kwargs`: `results`
        (evaluation results dict or JSON path), `summary` (card fields), `calibration`, `create_pr`, and the
        Trainer's card keywords `license`, `finetuned_from` (-> base_model), `dataset` (-> datasets); others are a
        TypeError, not dropped. The trainer's model is left as it is (a merged copy is pushed). Collective; returns
        the CommitInfo on the main process, None elsewhere."""
        from pathlib import Path

        from ..hub.card import training_summary
        from ..hub.push import push_to_hub

        card = {key: kwargs.pop(name) for name, key in (("license", "license"), ("finetuned_from", "base_model"),
                                                         ("dataset", "datasets")) if kwargs.get(name) is not None}
        results, calibration = kwargs.pop("results", None), kwargs.pop("calibration", None)
        summary = {"training": training_summary(self.args, global_step=self.state.global_step), **card,
                   **(kwargs.pop("summary", None) or {})}
        create_pr = bool(kwargs.pop("create_pr", False))
        if kwargs:
            raise TypeError(f"FaceRecTrainer.push_to_hub got unexpected keywords {sorted(kwargs)}")
        model = self._consolidated_model()
        if not self.args.should_save:
            return None
        model = copy.deepcopy(model)
        merge_adapter(model)
        return push_to_hub(
            model, self.args.hub_model_id or Path(self.args.output_dir).name, results,
            private=self.args.hub_private_repo if private is None else private, summary=summary,
            calibration=calibration, image_processor=self.processing_class, token=token or self.args.hub_token,
            commit_message=commit_message or "End of training", revision=revision, create_pr=create_pr,
        )

    def save_final_model(self, output_dir: str | os.PathLike | None = None, include_margin_head: bool = False) -> str:
        """Merge the adapter and save the model + image processor to `output_dir` (default `args.output_dir`).

        By default the embedding model alone (`FaceRecModel`, loads with `AutoModel.from_pretrained`, no peft);
        with `include_margin_head` the whole `FaceRecForMarginClassification`. Collective; the main process writes.
        """
        output_dir = str(output_dir if output_dir is not None else self.args.output_dir)
        if include_margin_head:
            gather_margin_head(self.accelerator.unwrap_model(self.model))  # a no-op for an unsharded head
        model = self.finalize_model()
        if self.args.should_save:
            (model if include_margin_head else model.facerec).save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
        self.accelerator.wait_for_everyone()
        return output_dir
