"""Few-shot benchmark: a head on frozen (``linear_probe``) or adapted (``lora``, ``full``) features of each
pre-training, on a fraction of each task's labels, over several seeds.

* Label subsets (:func:`nested_label_subsets`): per stratum (class, age decade, ...) a seeded permutation, of which
  each fraction takes the first ``round(f * n)`` (at least 1): stratified, seeded, and nested (1% inside 10%).
* Heads (:func:`fit_predict`): ``linear_probe`` fits scikit-learn on features computed once (standardised;
  logistic regression for classes, ridge with a leave-one-out penalty for age and points) or, for verification,
  a linear embedding with a CosFace loss over the training identities. ``lora`` (peft, through
  :mod:`hf_facerec.training.peft`) and ``full`` train backbone + a LayerNorm-Linear head (started at the prior)
  together: cross-entropy, L1 on standardised age, L1 on normalised point coordinates, CosFace.
* Scores (:func:`score_task`): accuracy / balanced accuracy / macro-F1 (scikit-learn), MAE, NME by inter-ocular
  distance with failure rates at 8 % / 10 %, and verification through
  :func:`hf_facerec.evaluation.verification.verification_report` (k-fold accuracy over the test folds, TAR@FAR).
:func:`run_fewshot` loops pre-trainings x tasks x modes x seeds x fractions and writes results.json,
results.md and fewshot.png (:mod:`.fewshot_report`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import load_rgb
from ..models import FaceRecModel
from .tasks import TaskData, get_task

__all__ = ["FRACTIONS", "MODES", "Pretraining", "classification_scores", "fit_predict", "landmark_scores",
           "load_encoder", "load_pixels", "mean_absolute_error", "nested_label_subsets", "run_fewshot", "score_task"]

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
MODES = ("linear_probe", "lora", "full")


# -- label subsets and metrics -----------------------------------------------------------------------------------
def nested_label_subsets(strata, fractions=FRACTIONS, seed: int = 0) -> dict[float, np.ndarray]:
    """Stratified, seeded, nested training subsets: ``{fraction: sorted indices}``.

    Each stratum's indices are permuted once under ``seed``; fraction ``f`` keeps the first
    ``max(1, round(f * n_stratum))`` of every stratum, so a smaller fraction's subset lies inside a larger one's.
    """
    strata = np.asarray(strata)
    fractions = sorted(float(f) for f in fractions)
    if strata.ndim != 1 or len(strata) == 0:
        raise ValueError(f"strata must be a non-empty (N,) array, got shape {strata.shape}")
    if not fractions or fractions[0] <= 0 or fractions[-1] > 1:
        raise ValueError(f"label fractions must lie in (0, 1], got {fractions}")
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(np.flatnonzero(strata == value)) for value in np.unique(strata)]
    return {f: np.sort(np.concatenate([o[: max(1, int(round(f * len(o))))] for o in orders])) for f in fractions}


def classification_scores(y_true, y_pred) -> dict[str, float]:
    """``accuracy``, ``balanced_accuracy`` and ``macro_f1`` (over the classes present in y_true or y_pred)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def mean_absolute_error(y_true, y_pred) -> dict[str, float]:
    """``mae``: mean |y_pred - y_true|."""
    return {"mae": float(np.mean(np.abs(np.asarray(y_pred, float) - np.asarray(y_true, float))))}


def landmark_scores(pred, true, left: int = 36, right: int = 45, thresholds=(0.08, 0.10)) -> dict[str, float]:
    """NME: per face, the mean point-to-point error divided by the distance between points ``left`` and ``right``
    of the ground truth (300-W: outer eye corners, "inter-ocular"), averaged; ``failure_rate_8`` / ``_10``: the
    fraction of faces whose NME exceeds 8 % / 10 %. ``pred``, ``true``: (N, P, 2)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmarks must both be (N, P, 2), got {pred.shape} and {true.shape}")
    ocular = np.linalg.norm(true[:, left] - true[:, right], axis=-1)
    per_face = np.linalg.norm(pred - true, axis=-1).mean(axis=1) / ocular
    out = {"nme": float(per_face.mean())}
    out.update({f"failure_rate_{round(t * 100)}": float((per_face > t).mean()) for t in thresholds})
    return out


def score_task(data: TaskData, kind: str, predictions: np.ndarray) -> dict:
    """Scores of ``predictions`` on ``data``'s test set: classes (N,), values (N,), points (N, P, 2) or, for
    verification, (N_test_images, D) embeddings."""
    if kind == "classification":
        return classification_scores(data.test_targets, predictions)
    if kind == "regression":
        return mean_absolute_error(data.test_targets, predictions)
    if kind == "landmarks":
        return landmark_scores(predictions, data.test_targets, *data.ocular)
    from ..evaluation.verification import verification_report

    emb = F.normalize(torch.as_tensor(predictions, dtype=torch.float32), dim=1).numpy()
    scores = (emb[data.pairs[:, 0]] * emb[data.pairs[:, 1]]).sum(1)
    report = verification_report(scores, data.is_same, folds=data.folds)
    return {"accuracy": report["accuracy"], "accuracy_std": report["accuracy_std"], "auc": report["auc"],
            "tar_at_far_1e-02": report["tar_at_far"].get("1e-02"), "eer": report["eer"]}


# -- encoders and pixels ------------------------------------------------------------------------------------------
@dataclass
class Pretraining:
    """One line of the benchmark: ``path`` a backbone folder (``SSLModel.save_backbone``, any ``save_pretrained``
    vision backbone) or a FaceRec model folder; ``random_init``: the same architecture, random weights."""

    name: str
    path: str
    random_init: bool = False


def load_encoder(pretraining: Pretraining, image_size: int, seed: int = 0) -> FaceRecModel:
    """A FaceRecModel whose ``features`` are the pooled backbone vector (a FaceRec folder: its own embedding head's
    features, at its own input size)."""
    from .modeling import build_encoder

    config = Path(pretraining.path, "config.json")
    if not config.is_file():
        raise FileNotFoundError(f"pre-training {pretraining.name!r}: no config.json in {pretraining.path}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if json.loads(config.read_text()).get("model_type") == "facerec":
            model = FaceRecModel.from_pretrained(pretraining.path)
            return FaceRecModel(model.config) if pretraining.random_init else model
        return build_encoder(pretraining.path, image_size, random_init=pretraining.random_init)


def load_pixels(images, size: tuple[int, int], crop: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(N, 3, H, W) uint8 of ``images`` (decoded by ``load_rgb``, optionally cropped to ``crop`` box, resized)."""
    from tqdm.auto import tqdm

    h, w = size
    out = torch.empty(len(images), 3, h, w, dtype=torch.uint8)
    for i, image in enumerate(tqdm(images, desc="decode", leave=False, disable=len(images) < 500)):
        pil = load_rgb(image)
        pil = pil.crop(crop) if crop is not None else pil
        out[i] = torch.from_numpy(np.array(pil.resize((w, h), 2))).permute(2, 0, 1)  # 2 = bilinear
    return out


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div_(127.5).sub_(1.0)  # FACE_MEAN / FACE_STD = 0.5


@torch.no_grad()
def _features(encoder: nn.Module, pixels: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(_normalised(pixels[i:i + batch_size])).features
                      for i in range(0, len(pixels), batch_size)]) if len(pixels) else torch.empty(0)


# -- heads ----------------------------------------------------------------------------------------------------------
def _targets(kind: str, y: np.ndarray, image_size) -> tuple[torch.Tensor, dict]:
    """Training targets as the loss wants them, and how to map predictions back."""
    if kind in ("classification", "verification"):
        return torch.as_tensor(y, dtype=torch.long), {}
    if kind == "regression":
        mean, std = float(np.mean(y)), float(np.std(y)) or 1.0
        return torch.as_tensor((y - mean) / std, dtype=torch.float32)[:, None], {"mean": mean, "std": std}
    scale = np.array([image_size[1], image_size[0]], np.float32)  # (x, y) by (w, h)
    return torch.as_tensor(y / scale - 0.5, dtype=torch.float32).flatten(1), {"scale": scale, "points": y.shape[1]}


def _decode(kind: str, out: torch.Tensor, info: dict) -> np.ndarray:
    out = out.detach().float().numpy()
    if kind == "classification":
        return out.argmax(1)
    if kind == "regression":
        return out[:, 0] * info["std"] + info["mean"]
    if kind == "landmarks":
        return (out.reshape(len(out), info["points"], 2) + 0.5) * info["scale"]
    return out


def _sklearn_probe(kind: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, image_size) -> np.ndarray:
    """The linear probe proper: standardised features -> logistic regression (classes) or ridge regression with
    its penalty chosen by leave-one-out (values, flattened points): no step count to tune, sane with 2 labels."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "classification":
        if len(np.unique(train_y)) == 1:
            return np.full(len(test_x), train_y[0])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        return model.fit(train_x, train_y).predict(test_x)
    y = train_y.reshape(len(train_y), -1).astype(np.float64)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))
    pred = model.fit(train_x, y).predict(test_x)
    return pred.reshape(len(test_x)) if kind == "regression" else pred.reshape(len(test_x), *train_y.shape[1:])


def fit_predict(kind: str, encoder: nn.Module, mode: str, train_x: torch.Tensor, train_y: np.ndarray,
                test_x: torch.Tensor, *, n_classes: int = 0, image_size=(256, 256), epochs: int = 10,
                probe_steps: int = 300, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                embedding_size: int = 128, lora_rank: int = 8, min_steps: int = 50) -> np.ndarray:
    """Fit a head (and, unless ``linear_probe``, the backbone) and predict the test set.

    Args:
        train_x / test_x: for ``linear_probe`` (N, width) frozen features; else (N, 3, H, W) uint8 pixels.
        train_y: (N,) classes / values or (N, P, 2) points. n_classes: classes (identities for verification).
        epochs / min_steps: adaptation length (at least ``min_steps`` optimizer steps); probe_steps: the probe's.
    Returns:
        predictions for :func:`score_task`.
    """
    from ..models.heads import build_margin_head

    if mode == "linear_probe" and kind != "verification":
        return _sklearn_probe(kind, train_x.numpy(), np.asarray(train_y), test_x.numpy(), image_size)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        y, info = _targets(kind, np.asarray(train_y), image_size)
        width = train_x.shape[1] if mode == "linear_probe" else encoder.config.embedding_size
        n_out = {"classification": n_classes, "regression": 1, "verification": embedding_size}.get(kind, y.shape[-1])
        head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_out))
        if kind != "verification":  # start at the prior (mean target / uniform classes): few labels move it little
            nn.init.zeros_(head[1].weight)
            with torch.no_grad():
                head[1].bias.copy_(y.float().mean(0) if kind != "classification" else torch.zeros(n_out))
        margin = (build_margin_head(embedding_size, n_classes, "cosface", 30.0, margin=0.35)
                  if kind == "verification" else None)
        model = None
        if mode != "linear_probe":
            model = copy.deepcopy(encoder)
            if mode == "lora":
                from ..training.peft import apply_peft, build_peft_config

                model.requires_grad_(False)
                apply_peft(model, build_peft_config(model.config.backbone_type, "lora", rank=lora_rank,
                                                    alpha=2.0 * lora_rank, dropout=0.0))
            elif mode != "full":
                raise ValueError(f"adaptation mode must be one of {MODES}, got {mode!r}")
            model.train()
        params = [{"params": [*head.parameters(), *(margin.parameters() if margin else [])], "lr": lr * 10}]
        if model is not None:
            params.append({"params": [p for p in model.parameters() if p.requires_grad], "lr": lr})
        optimizer = torch.optim.AdamW(params, weight_decay=1e-4)

        def forward(x):
            features = x if model is None else model(_normalised(x)).features
            return head(features)

        def loss_of(out, target):
            if kind == "classification":
                return F.cross_entropy(out, target)
            if kind == "verification":
                return margin(out, target).loss
            return F.l1_loss(out, target)

        n = len(train_x)
        steps = probe_steps if model is None else max(min_steps, epochs * math.ceil(n / batch_size))
        size = n if model is None and n <= 4096 else batch_size  # probe: full batch when it fits
        for step in range(steps):
            index = torch.randperm(n, generator=generator)[:size] if size < n else torch.arange(n)
            loss = loss_of(forward(train_x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if model is not None:
            model.eval()
        head.eval()
        with torch.no_grad():
            out = torch.cat([forward(test_x[i:i + 256]) for i in range(0, len(test_x), 256)])
    return _decode(kind, out, info)


# -- the runner -----------------------------------------------------------------------------------------------------
def run_fewshot(pretrainings: list[Pretraining], tasks, data_root, output_dir, fractions=(0.01, 0.1, 1.0),
                modes=("linear_probe",), seeds=(0, 1, 2), image_size: int = 64, epochs: int = 10,
                probe_steps: int = 300, lr: float = 1e-3, batch_size: int = 64, max_train: int | None = None,
                max_test: int | None = None, min_steps: int = 50, progress: bool = True) -> dict:
    """Every (pre-training, task, mode, seed, fraction) cell; writes results.json / results.md / fewshot.png into
    ``output_dir`` and returns ``{"config", "results" (one row per cell), "summary" (mean, std over seeds)}``."""
    from tqdm.auto import tqdm

    from .._files import atomic_write, check_output_dir
    from .fewshot_report import summarise, write_markdown, write_plot

    output = check_output_dir(output_dir)
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"adaptation mode must be one of {MODES}, got {mode!r}")
    task_objects = [get_task(t) if isinstance(t, str) else t for t in tasks]
    config = {"pretrainings": [asdict(p) for p in pretrainings], "tasks": [t.name for t in task_objects],
              "fractions": list(fractions), "modes": list(modes), "seeds": list(seeds), "image_size": image_size,
              "epochs": epochs, "min_steps": min_steps, "probe_steps": probe_steps, "lr": lr, "max_train": max_train,
              "max_test": max_test}
    rows = []
    cells = len(pretrainings) * len(task_objects) * len(modes) * len(seeds) * len(fractions)
    bar = tqdm(total=cells, desc="few-shot", disable=not progress)
    encoders = {p.name: load_encoder(p, image_size) for p in pretrainings}
    for task in task_objects:
        data = task.load(data_root, max_train=max_train, max_test=max_test)
        strata = data.strata if data.strata is not None else (
            data.train_targets if task.kind in ("classification", "verification") else np.zeros(len(data.train_images)))
        n_classes = len(data.classes) if data.classes else int(np.max(data.train_targets)) + 1 if task.kind in (
            "classification", "verification") else 0
        crop = (60, 60, 190, 190) if task.name == "lfw_verification" else None  # LFW: unaligned 250 px, face centred
        pixels: dict[tuple, tuple] = {}
        for p in pretrainings:
            encoder = encoders[p.name]
            size = tuple(encoder.config.face_size)
            if size not in pixels:
                pixels[size] = (load_pixels(data.train_images, size, crop), load_pixels(data.test_images, size, crop))
            train_px, test_px = pixels[size]
            frozen = (_features(encoder, train_px), _features(encoder, test_px)) if "linear_probe" in modes else None
            for mode in modes:
                train_x, test_x = frozen if mode == "linear_probe" else (train_px, test_px)
                for seed in seeds:
                    for fraction, index in nested_label_subsets(strata, fractions, seed).items():
                        pred = fit_predict(task.kind, encoder, mode, train_x[index], data.train_targets[index], test_x,
                                           n_classes=n_classes, image_size=data.image_size or size, epochs=epochs,
                                           probe_steps=probe_steps, lr=lr, batch_size=batch_size, seed=seed,
                                           min_steps=min_steps)
                        rows.append({"pretraining": p.name, "task": task.name, "mode": mode, "seed": seed,
                                     "fraction": fraction, "n_train": int(len(index)),
                                     "scores": score_task(data, task.kind, pred)})
                        bar.update(1)
    bar.close()
    result = {"config": config, "results": rows, "summary": summarise(rows, task_objects)}
    with atomic_write(output / "results.json") as handle:
        json.dump(result, handle, indent=2)
    write_markdown(result, output / "results.md")
    write_plot(result, task_objects, output / "fewshot.png")
    return result
