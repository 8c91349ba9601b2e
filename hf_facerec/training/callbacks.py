"""Verification on pair sets during training: a plain function for trainers, and a ``TrainerCallback``.

:func:`evaluate_pair_sets` embeds every distinct image of each pair set once (with :class:`FaceEmbedder`),
scores the pairs by cosine and returns 10-fold accuracy, TAR@FAR, EER and AUC from the evaluation core, named
``{prefix}_{set}_{metric}`` (e.g. ``eval_lfw_accuracy``, ``eval_lfw_tar_at_far_1e-03``) so that
``metric_for_best_model="eval_lfw_accuracy"`` works with the Trainer's best-checkpoint logic.
:class:`VerificationCallback` runs it on the Trainer's evaluation schedule (``eval_steps=None``: its metrics are
added to the Trainer's) or on its own (``eval_steps=N``: it logs and keeps the best checkpoint itself).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
from transformers import TrainerCallback
from transformers.image_processing_utils import BaseImageProcessor

import datasets

from ..data.pairs import load_pair_file, pair_image_sources
from ..embedding import FLIP_MODES, FaceEmbedder
from ..evaluation import pair_scores, verification_report
from ..evaluation._checks import _rate_key  # the metric core's key for a rate ("1e-03"): one naming rule

__all__ = ["VerificationCallback", "evaluate_pair_sets", "load_pair_sets", "pair_set_metric_names"]

logger = logging.getLogger(__name__)

DEFAULT_VERIFICATION_FARS: tuple[float, ...] = (1e-3, 1e-2)


# ---- pair sets ----------------------------------------------------------------------------------------------


def _pair_set_name(path: str | os.PathLike) -> str:
    path = Path(path)
    return path.parent.name if path.name == "pairs.txt" else path.stem


def load_pair_sets(pair_sets) -> dict[str, datasets.Dataset]:
    """Normalise pair-set specifications to ``{name: Dataset}`` (the schema of :mod:`hf_facerec.data.pairs`).

    Accepts a mapping ``name -> Dataset or path``, or a sequence of paths / ``"name=path"`` strings (the
    ``verification_pairs`` training argument); a bare path is named after its file (``lfw.bin`` -> ``lfw``,
    ``.../lfw/pairs.txt`` -> ``lfw``).
    """
    if isinstance(pair_sets, (str, os.PathLike, datasets.Dataset)):
        pair_sets = [pair_sets]
    if isinstance(pair_sets, Mapping):
        items = list(pair_sets.items())
    elif isinstance(pair_sets, Sequence):
        items = []
        for spec in pair_sets:
            if isinstance(spec, datasets.Dataset):
                raise ValueError("name a Dataset pair set: pass a mapping {name: dataset}")
            name, sep, path = str(spec).partition("=")
            items.append((name, path) if sep else (_pair_set_name(spec), spec))
    else:
        raise ValueError(f"pair_sets must be a mapping or a sequence of paths, got {type(pair_sets).__name__}")
    if not items:
        raise ValueError("pair_sets is empty: give at least one pair set")
    loaded = {}
    for name, value in items:
        if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
            raise ValueError(f"pair set names must be non-empty strings without spaces, got {name!r}")
        if name in loaded:
            raise ValueError(f"pair set name {name!r} is used twice")
        loaded[name] = value if isinstance(value, datasets.Dataset) else load_pair_file(value)
        missing = {"image1", "image2", "is_same"} - set(loaded[name].column_names)
        if missing:
            raise ValueError(f"pair set {name!r} lacks column(s) {sorted(missing)}")
    return loaded


# ---- evaluation ---------------------------------------------------------------------------------------------


def _embedding_model(model):
    """The module that maps ``pixel_values`` to features: unwraps DDP (``.module``), peft (``get_base_model``,
    adapters stay active) and takes ``.facerec`` of a :class:`FaceRecForMarginClassification`."""
    while hasattr(model, "module") and not hasattr(model, "config"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, "facerec", model)


def pair_set_metric_names(name: str, fars: Sequence[float] = DEFAULT_VERIFICATION_FARS,
                          metric_key_prefix: str = "eval") -> list[str]:
    """The metric keys :func:`evaluate_pair_sets` returns for pair set ``name``."""
    keys = [_rate_key(float(far)) for far in fars]
    if not keys or len(set(keys)) != len(keys):
        raise ValueError(f"fars must be distinct FAR targets, got {list(fars)!r}")
    base = f"{metric_key_prefix}_{name}" if metric_key_prefix else name
    return [f"{base}_accuracy", f"{base}_accuracy_std", *(f"{base}_tar_at_far_{key}" for key in keys),
            f"{base}_eer", f"{base}_auc"]


def evaluate_pair_sets(model, pair_sets, image_processor: BaseImageProcessor | None = None, batch_size: int = 64,
                       flip: str = "none", fars: Sequence[float] = DEFAULT_VERIFICATION_FARS, n_folds: int = 10,
                       metric_key_prefix: str = "eval",
                       preprocess: Callable[[Any], Any] | None = None) -> dict[str, float]:
    """Verification metrics of ``model`` on each pair set.

    Args:
        model: a FaceRec model, a :class:`FaceRecForMarginClassification`, or either wrapped by peft or DDP.
        pair_sets: anything :func:`load_pair_sets` takes.
        image_processor, batch_size, flip, preprocess: as in :class:`FaceEmbedder` (``preprocess``, e.g. a face
            aligner, runs on every loaded image).
        fars: FAR targets of the TAR@FAR metrics; one below ``1 / #impostor pairs`` gives NaN.
        n_folds: folds when a set has no protocol folds (its ``fold`` column holds one value); otherwise the
            ``fold`` column defines them.

    Returns: ``{f"{prefix}_{set}_{metric}": float}`` for the metrics of :func:`pair_set_metric_names`
    (``accuracy`` is the k-fold mean, in [0, 1]).  The training flags of every submodule are restored.
    """
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    pair_set_metric_names("check", fars, metric_key_prefix)  # bad FAR targets fail before any embedding
    sets = load_pair_sets(pair_sets)
    embedding_model = _embedding_model(model)
    # Restore module by module: a frozen backbone may be held in eval mode while the heads train.
    modes = {module: module.training for module in model.modules()} if hasattr(model, "modules") else {}
    embedder = FaceEmbedder(embedding_model, image_processor=image_processor, batch_size=batch_size, flip=flip,
                            preprocess=preprocess)
    metrics: dict[str, float] = {}
    try:
        for name, dataset in sets.items():
            sources, first, second = pair_image_sources(dataset)
            embeddings = embedder(sources, progress=False)
            scores = pair_scores(embeddings, first, second)
            folds = np.asarray(dataset["fold"]) if "fold" in dataset.column_names else None
            if folds is not None and np.unique(folds).size < 2:
                folds = None  # no protocol folds: contiguous ones
            report = verification_report(scores, np.asarray(dataset["is_same"]), folds=folds, fars=fars,
                                         n_folds=n_folds)
            values = [report["accuracy"], report["accuracy_std"],
                      *(report["tar_at_far"][_rate_key(float(far))] for far in fars), report["eer"], report["auc"]]
            names = pair_set_metric_names(name, fars, metric_key_prefix)
            metrics.update({key: math.nan if value is None else float(value) for key, value in zip(names, values)})
    finally:
        for module, training in modes.items():
            module.training = training
    return metrics


# ---- the callback -------------------------------------------------------------------------------------------


class VerificationCallback(TrainerCallback):
    """Evaluate pair sets during training (:func:`evaluate_pair_sets`) and keep the best checkpoint.

    Two schedules:

    * ``eval_steps=None``: on each Trainer evaluation (``eval_strategy``; needs an ``eval_dataset`` or a trainer
      whose ``evaluate`` works without one) the metrics are added to the Trainer's metrics and to the log
      entry of that evaluation, so ``metric_for_best_model="eval_<set>_accuracy"`` +
      ``load_best_model_at_end`` pick checkpoints by them.  If the metrics are already there (a trainer that
      calls :func:`evaluate_pair_sets` itself), nothing is recomputed.
    * ``eval_steps=N``: every N optimiser steps, independently of the Trainer's evaluation (use
      ``eval_strategy="no"``).  The metrics are appended to ``state.log_history``; when ``metric_for_best_model``
      names one of them and it improves, ``state.best_metric`` / ``best_global_step`` are updated and, with
      ``save_strategy="best"``, a checkpoint is saved, which the Trainer records as ``best_model_checkpoint``
      (so ``load_best_model_at_end=True`` works).  With ``save_strategy="steps"`` align ``save_steps`` with
      ``eval_steps``.

    Under data parallelism every rank evaluates the full pair sets (same weights, same numbers), which keeps
    the best-checkpoint decision identical on all ranks.  ``last_metrics`` holds the latest results.
    """

    def __init__(self, pair_sets, image_processor: BaseImageProcessor | None = None, batch_size: int = 64,
                 flip: str = "none", eval_steps: int | None = None,
                 fars: Sequence[float] = DEFAULT_VERIFICATION_FARS, n_folds: int = 10,
                 metric_key_prefix: str = "eval", preprocess: Callable[[Any], Any] | None = None):
        if flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if eval_steps is not None and (isinstance(eval_steps, bool) or not isinstance(eval_steps, int)
                                       or eval_steps < 1):
            raise ValueError(f"eval_steps must be None or a positive int, got {eval_steps!r}")
        self.pair_sets = load_pair_sets(pair_sets)
        self.image_processor, self.batch_size, self.flip = image_processor, batch_size, flip
        self.eval_steps, self.fars, self.n_folds = eval_steps, tuple(fars), n_folds
        self.metric_key_prefix, self.preprocess = metric_key_prefix, preprocess
        self.metric_names = [key for name in self.pair_sets
                             for key in pair_set_metric_names(name, self.fars, metric_key_prefix)]
        self.last_metrics: dict[str, float] = {}
        self._last_step: int | None = None

    def evaluate(self, model, step: int | None = None, processing_class=None) -> dict[str, float]:
        """Run :func:`evaluate_pair_sets` (cached per ``step``)."""
        if step is not None and step == self._last_step:
            return dict(self.last_metrics)
        processor = self.image_processor
        if processor is None and isinstance(processing_class, BaseImageProcessor):
            processor = processing_class
        self.last_metrics = evaluate_pair_sets(model, self.pair_sets, processor, self.batch_size, self.flip,
                                               self.fars, self.n_folds, self.metric_key_prefix, self.preprocess)
        self._last_step = step
        logger.info("verification at step %s: %s", step, self.last_metrics)
        return dict(self.last_metrics)

    def _best_key(self, args) -> str | None:
        name = args.metric_for_best_model
        if not name:
            return None
        key = name if name.startswith("eval_") else f"eval_{name}"
        return key if key in self.metric_names else None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.eval_steps is not None and self._best_key(args) and args.eval_strategy != "no":
            raise ValueError(f"metric_for_best_model={args.metric_for_best_model!r} comes from this callback's own "
                             f"schedule (eval_steps={self.eval_steps}), but the Trainer evaluates too "
                             f"(eval_strategy={args.eval_strategy!r}) and would look for it there: set "
                             "eval_strategy='no', or eval_steps=None to evaluate on the Trainer's schedule")

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.eval_steps is None or state.global_step % self.eval_steps:
            return control
        metrics = self.evaluate(model, state.global_step, processing_class)
        entry = {**metrics, "step": state.global_step}
        if state.epoch is not None:
            entry["epoch"] = state.epoch
        state.log_history.append(entry)
        key = self._best_key(args)
        value = metrics.get(key, math.nan) if key else math.nan
        if not math.isnan(value):
            better = np.greater if args.greater_is_better is not False else np.less
            if state.best_metric is None or better(value, state.best_metric):
                state.best_metric, state.best_global_step = value, state.global_step
                if args.save_strategy == "best":
                    control.should_save = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        if self.eval_steps is not None or metrics is None or all(key in metrics for key in self.metric_names):
            return control
        ours = self.evaluate(model, state.global_step, processing_class)
        metrics.update(ours)  # the dict the Trainer goes on to rank checkpoints with
        last = state.log_history[-1] if state.log_history else {}
        if last.get("step") == state.global_step and any(key.startswith(f"{self.metric_key_prefix}_") for key in last):
            last.update(ours)  # the entry Trainer.evaluate just logged
        else:
            state.log_history.append({**ours, "step": state.global_step})
        return control
