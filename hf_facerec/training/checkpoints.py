"""Checkpoints that are complete or absent, the resume point, and the loss total a resumed run reports.

``FaceRecTrainer`` writes each checkpoint into ``tmp-checkpoint-N/checkpoint-N`` inside the output folder and
renames it to ``checkpoint-N`` once every process has written its part (:func:`publish_checkpoint`), so a job killed
mid-save leaves a ``tmp-`` folder, never a half-written ``checkpoint-N``. :func:`last_complete_checkpoint` also skips
(with a warning) a ``checkpoint-N`` that lacks ``trainer_state.json`` or model weights, as one written by another
tool or an older version may. Each checkpoint carries ``facerec_train_loss.json``: the sum of the per-step training
losses so far, so that the resumed run's ``train_loss`` is the mean over the whole run, not over its own steps.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

__all__ = [
    "STAGING_PREFIX",
    "incomplete_reason",
    "last_complete_checkpoint",
    "publish_checkpoint",
    "read_loss_total",
    "resolve_resume_checkpoint",
    "write_loss_total",
]

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STAGING_PREFIX = "tmp-"  # tmp-checkpoint-N: no match for checkpoint-* (transformers' rotation and get_last_checkpoint)
LOSS_TOTAL = "facerec_train_loss.json"
# What the Trainer's save writes as the model: save_pretrained (plain or sharded), an adapter, FSDP or DeepSpeed.
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors", "adapter_model.bin", "pytorch_model_fsdp_*", "global_step*")


def incomplete_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` is not a complete checkpoint (no trainer_state.json, no model weights), or None if it is."""
    folder = Path(folder)
    if not (folder / "trainer_state.json").is_file():
        return "no trainer_state.json"
    if not any(next(folder.glob(pattern), None) is not None for pattern in _WEIGHTS):
        return "no model weights"
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir``, or None; newer incomplete ones are skipped with a
    one-line warning (``transformers.trainer_utils.get_last_checkpoint`` would return them)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    for _, path in sorted(steps, reverse=True):
        reason = incomplete_reason(path)
        if reason is None:
            return str(path)
        logger.warning("Skipping incomplete checkpoint %s (%s)", path, reason)
    return None


def resolve_resume_checkpoint(output_dir: str | os.PathLike, spec: str | bool | None) -> str | None:
    """``--resume_from_checkpoint`` -> a checkpoint folder or None: a path, ``last`` / True (the newest complete
    checkpoint, which must exist) or ``auto`` (the same, or None for a fresh start)."""
    if spec is None or spec is False or spec in ("", "false", "False", "none", "None"):
        return None
    if spec is True or spec in ("last", "auto", "true", "True"):
        found = last_complete_checkpoint(output_dir)
        if found is None and spec != "auto":
            raise ValueError(f"--resume_from_checkpoint {spec}: no complete checkpoint in {output_dir}")
        return found
    reason = incomplete_reason(spec)
    if reason is not None:
        raise ValueError(f"--resume_from_checkpoint {spec!r} is not a complete checkpoint folder ({reason})")
    return str(spec)


def publish_checkpoint(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename the written checkpoint ``staged`` to ``final`` (one rename: never partly there); an older ``final``
    (the same step saved again) is moved aside first and deleted after."""
    staged, final = Path(staged), Path(final)
    old = final.with_name(f"{STAGING_PREFIX}old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)


def write_loss_total(folder: str | os.PathLike, global_step: int, loss_sum: float) -> None:
    """Record the sum of the training losses of steps 1..global_step in checkpoint ``folder``."""
    Path(folder, LOSS_TOTAL).write_text(json.dumps({"global_step": int(global_step), "loss_sum": float(loss_sum)}))


def read_loss_total(folder: str | os.PathLike) -> tuple[int, float] | None:
    """``(global_step, loss_sum)`` recorded in checkpoint ``folder``, or None (an older checkpoint, or unreadable)."""
    try:
        data = json.loads(Path(folder, LOSS_TOTAL).read_text())
        return int(data["global_step"]), float(data["loss_sum"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
