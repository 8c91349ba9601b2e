"""Training h on episodes: a `transformers.Trainer` (so Accelerate, logging, checkpoints) with scheduled objectives.

Objectives (the paper's schedule is not public; this one is documented and configurable), at step s of S:

* alignment warm-up: f's logit is fitted by soft-target BCE to ``sigmoid((cos - align_threshold) / align_temperature)``,
  cos = h_bb's cosine between the pooled enrolment embedding and the probe's embedding: f starts by imitating the
  backbone's decision, an easy target that needs no hard negatives;
* main: weighted BCE against the true labels (positives weighted ``pos_weight``, default #negatives / #positives of
  the episode, so both classes count equally) + ``norm_penalty`` x mean squared raw generated weight.

``w(s) = 1`` for ``s < align_fraction * S``, then falls linearly to 0 over ``transition_fraction * S`` steps;
loss = w * alignment + (1 - w) * (weighted BCE + norm penalty). Ablations: ``objective_schedule=False`` (w = 0
throughout), ``norm_penalty=0``; KCS off lives in :class:`~.sampling.EpisodeConfig`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainingArguments

__all__ = ["HyperNetTrainer", "HyperNetTrainingArguments", "calibrate_align_threshold", "objective_weight"]


@dataclass
class HyperNetTrainingArguments(TrainingArguments):
    """`TrainingArguments` + the objectives of the module docstring. Defaults differ: `remove_unused_columns=False`,
    `report_to="none"`, `save_strategy="no"`."""

    remove_unused_columns: bool = False
    report_to: str | list[str] | None = "none"
    save_strategy: str = "no"
    objective_schedule: bool = True
    align_fraction: float = 0.15
    transition_fraction: float = 0.25
    align_threshold: float = 0.3
    align_temperature: float = 0.05
    pos_weight: float | None = None
    norm_penalty: float = 1e-3

    def __post_init__(self):
        for name in ("align_fraction", "transition_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.align_temperature > 0 or not self.norm_penalty >= 0:
            raise ValueError("align_temperature must be > 0 and norm_penalty >= 0")
        if self.pos_weight is not None and not self.pos_weight > 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
        super().__post_init__()


def objective_weight(step: int, total: int, args: HyperNetTrainingArguments) -> float:
    """w(s): the weight of the alignment objective at step s of `total` (module docstring)."""
    if not args.objective_schedule:
        return 0.0
    t = step / max(1, total)
    if t < args.align_fraction:
        return 1.0
    if args.transition_fraction == 0:
        return 0.0
    return float(max(0.0, 1.0 - (t - args.align_fraction) / args.transition_fraction))


def calibrate_align_threshold(embeddings: np.ndarray, labels: np.ndarray, n_pairs: int = 20000, seed: int = 0) -> float:
    """h_bb's EER threshold (:func:`~hf_facerec.evaluation.roc.equal_error_rate`) on random training pairs: the
    cosine the alignment target maps to p = 1/2."""
    from ..evaluation.roc import equal_error_rate
    from ..evaluation.scoring import pair_scores

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    a, b = rng.integers(0, len(labels), n_pairs), rng.integers(0, len(labels), n_pairs)
    same_order = np.argsort(labels, kind="stable")  # genuine pairs: two images of one identity
    start = np.searchsorted(labels[same_order], labels[a], side="left")
    count = np.searchsorted(labels[same_order], labels[a], side="right") - start
    g = same_order[start + rng.integers(0, count)]
    keep = g != a
    first = np.concatenate([a[keep], a])
    second = np.concatenate([g[keep], b])
    scores = pair_scores(embeddings, first, second)
    return float(equal_error_rate(scores, labels[first] == labels[second])[1])


class HyperNetTrainer(Trainer):
    """Trains [`FaceRecHyperNetwork`] (h_gen; h_bb stays frozen) on an [`EpisodeDataset`], in order (the dataset's
    index carries the KCS difficulty schedule). Logs the objectives' parts (`align`, `bce`, `norm`, `w_align`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parts: dict[str, list[float]] = defaultdict(list)

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: HyperNetTrainingArguments = self.args
        labels = inputs.pop("labels").float()
        probe_embeddings = inputs.pop("probe_embeddings")
        inputs.pop("probe_identities", None)
        outputs = model(**inputs)
        logits = outputs.logits
        w = objective_weight(self.state.global_step, self.state.max_steps, args)
        n_pos = labels.sum()
        pos_weight = args.pos_weight if args.pos_weight is not None else ((labels.numel() - n_pos) / n_pos.clamp(min=1))
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
        norm = outputs.raw_weights.pow(2).mean()
        loss = bce + args.norm_penalty * norm
        align = torch.zeros((), device=logits.device)
        if w > 0:
            cos = torch.einsum("bd,bmd->bm", outputs.enrol_embeddings, F.normalize(probe_embeddings, dim=-1))
            target = torch.sigmoid((cos - args.align_threshold) / args.align_temperature)
            align = F.binary_cross_entropy_with_logits(logits, target)
            loss = w * align + (1 - w) * loss
        for key, value in (("align", align), ("bce", bce), ("norm", norm)):
            self._parts[key].append(float(value.detach()))
        self._parts["w_align"].append(w)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._parts:
            logs.update({key: float(np.mean(values)) for key, values in self._parts.items()})
            self._parts.clear()
        super().log(logs, start_time)
