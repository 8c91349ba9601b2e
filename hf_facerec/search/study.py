"""Search trials: sample a configuration, reject it if it breaks a constraint, clean the training identities,
train a small proxy with :class:`~hf_facerec.training.FaceRecTrainer` for a few steps, score held-out identities
(10-fold verification accuracy on pairs of them, :func:`~hf_facerec.evaluation.verification.kfold_accuracy`),
reward ``accuracy - 0.05 * |FLOPs / target - 1|``.

    data = SearchData(train, val, train_embeddings, image_size=32)
    study = run_search("rl", space, data, n_trials=30, storage="sqlite:///search.db", output="runs/search")
    export_best_config(study, space, data, "configs/train/searched.yaml", "runs/search/best_data")

Every trial records ``config``, ``reward``, ``accuracy``, ``flops``, ``params``, ``wall_s`` (and why it was
pruned) as Optuna user attributes; :func:`write_trials_csv` turns the storage into a CSV.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from .._files import atomic_write, check_output_dir
from .controller import INTERRUPTED, OneAtATimeSampler, ReinforceSampler, mark_interrupted
from .space import ConstraintError, SearchSpace, reward

METHODS = ("rl", "random", "one-at-a-time")
CSV_FIELDS = ("method", "number", "state", "reward", "accuracy", "tar_at_far_1e-2", "flops", "params", "images",
              "identities", "wall_s", "pruned_reason", "config")
logger = logging.getLogger(__name__)


@dataclass
class ProxySettings:
    """How each trial trains its proxy (CPU-sized defaults)."""

    steps: int = 60
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 5
    augmentation: str = "none"
    seed: int = 0


class SearchData:
    """The training identities with their reference embeddings (for cleaning) and the held-out identities.

    Args:
        train: ``datasets.Dataset`` (image, label). train_embeddings: (len(train), D) reference embeddings.
        val: held-out identities (image, label), scored by verification on ``max_pairs`` pairs (half genuine).
        image_size: the proxy's input side (val images are resized to it once).
    """

    def __init__(self, train, val, train_embeddings, image_size: int, max_pairs: int = 3000, seed: int = 0):
        import datasets

        from ..data.images import load_rgb
        from ..models import FaceRecImageProcessor
        from .cleaning import _image_source

        if len(train_embeddings) != len(train):
            raise ValueError(f"train_embeddings have {len(train_embeddings)} rows, train {len(train)}")
        self.train, self.train_embeddings, self.image_size = train, np.asarray(train_embeddings), int(image_size)
        raw = val.cast_column("image", datasets.Image(decode=False))
        processor = FaceRecImageProcessor(size={"height": image_size, "width": image_size})
        self.val_pixels = processor(images=[load_rgb(_image_source(c)) for c in raw["image"]],
                                    return_tensors="pt")["pixel_values"]
        self.pairs = verification_pairs(np.asarray(val["label"]), max_pairs, seed)


def verification_pairs(labels: np.ndarray, max_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``max_pairs // 2`` genuine and as many impostor pairs among images with ``labels`` (N,), shuffled:
    ``(index1, index2, is_same)``."""
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    half = max_pairs // 2
    genuine = np.flatnonzero(same)
    impostor = np.flatnonzero(~same)
    if len(genuine) < 10 or len(impostor) < 10:
        raise ValueError("held-out identities give fewer than 10 genuine or impostor pairs: add images or identities")
    genuine = rng.choice(genuine, min(half, len(genuine)), replace=False)
    impostor = rng.choice(impostor, min(len(genuine), len(impostor)), replace=False)
    chosen = rng.permutation(np.concatenate([genuine, impostor]))
    return i[chosen], j[chosen], same[chosen]


def train_proxy(space: SearchSpace, params: dict, dataset, settings: ProxySettings, output_dir: str):
    """Build the configuration's model and train it ``settings.steps`` steps on ``dataset``; returns the model."""
    import datasets
    from transformers import PrinterCallback, set_seed

    from ..data.augment import default_train_augmentation, make_train_transform
    from ..models import FaceRecImageProcessor
    from ..training import FaceRecTrainer, FaceRecTrainingArguments

    set_seed(settings.seed)
    num_identities = int(max(dataset["label"])) + 1
    model = space.build_model(params, num_identities)
    processor = FaceRecImageProcessor(size={"height": space.image_size, "width": space.image_size})
    augmentation = None if settings.augmentation == "none" else default_train_augmentation(settings.augmentation,
                                                                                            seed=settings.seed)
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    dataset.set_transform(make_train_transform(processor, augmentation, seed=settings.seed))
    args = FaceRecTrainingArguments(
        output_dir=output_dir, finetune_mode="scratch", max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps, lr_scheduler_type="cosine", weight_decay=0.05, save_strategy="no",
        report_to="none", logging_steps=max(settings.steps, 1), seed=settings.seed, dataloader_num_workers=0,
        disable_tqdm=True, use_cpu=True, dataloader_drop_last=True)  # a 1-image last batch breaks BatchNorm heads
    trainer = FaceRecTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.remove_callback(PrinterCallback)  # the loss lines would interleave with the search's own output
    trainer.train()
    return model


def score(model, data: SearchData) -> dict:
    """Verification of the held-out identities: 10-fold accuracy and TAR at FAR 1e-2."""
    import torch

    from ..embedding import FaceEmbedder
    from ..evaluation.roc import tar_at_far
    from ..evaluation.scoring import pair_scores
    from ..evaluation.verification import kfold_accuracy

    embedder = FaceEmbedder(model.facerec, detector=None)
    with torch.no_grad():
        embeddings = torch.cat([embedder.embed_pixel_values(chunk) for chunk in data.val_pixels.split(256)]).numpy()
    i, j, same = data.pairs
    scores = pair_scores(embeddings, i, j)
    return {"accuracy": kfold_accuracy(scores, same)["mean"], "tar_at_far_1e-2": tar_at_far(scores, same, [1e-2])[1e-2]}


class SearchObjective:
    """The Optuna objective of one search: ``objective(trial) -> reward`` (``TrialPruned`` when a constraint fails)."""

    def __init__(self, space: SearchSpace, data: SearchData, settings: ProxySettings, work_dir: str | Path):
        self.space, self.data, self.settings, self.work_dir = space, data, settings, Path(work_dir)

    def __call__(self, trial: optuna.Trial) -> float:
        from .cleaning import clean_dataset

        start = time.perf_counter()
        params = self.space.suggest(trial)
        trial.set_user_attr("config", params)
        try:
            measured = self.space.check(params)
        except ConstraintError as error:  # rejected before any data is cleaned or any step trained
            trial.set_user_attr("pruned_reason", str(error))
            raise optuna.TrialPruned(str(error)) from error
        trial.set_user_attr("flops", measured["flops"])
        trial.set_user_attr("params", measured["params"])
        cleaned, result = clean_dataset(self.data.train, self.space.cleaning_config(params),
                                        embeddings=self.data.train_embeddings)
        trial.set_user_attr("images", len(cleaned))
        trial.set_user_attr("identities", result.counts["identities_after"])
        if result.counts["identities_after"] < 2:
            trial.set_user_attr("pruned_reason", "cleaning left fewer than 2 identities")
            raise optuna.TrialPruned("cleaning left fewer than 2 identities")
        model = train_proxy(self.space, params, cleaned, self.settings, str(self.work_dir / f"trial-{trial.number}"))
        metrics = score(model, self.data)
        value = reward(metrics["accuracy"], measured["flops"], self.space.target_flops)
        for key, val in {**metrics, "reward": value, "wall_s": time.perf_counter() - start}.items():
            trial.set_user_attr(key, float(val))
        return value


def make_sampler(method: str, space: SearchSpace, n_trials: int, seed: int = 0) -> optuna.samplers.BaseSampler:
    """``rl``: :class:`ReinforceSampler`; ``random``: Optuna's RandomSampler; ``one-at-a-time``: :class:`OneAtATimeSampler`."""
    if method == "rl":
        return ReinforceSampler(seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "one-at-a-time":
        return OneAtATimeSampler(space, n_trials, seed=seed)
    raise ValueError(f"unknown search method {method!r}; choose one of {', '.join(METHODS)}")


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that use up the budget: every COMPLETE, PRUNED or FAIL trial but interrupted ones."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                    TrialState.FAIL))
               if not t.user_attrs.get(INTERRUPTED))


def run_search(method: str, space: SearchSpace, data: SearchData, n_trials: int, output: str | Path,
               storage: str | None = None, study_name: str | None = None, settings: ProxySettings | None = None,
               seed: int = 0, resume: bool = False) -> optuna.Study:
    """Run (or continue, from ``storage``) one search until it has ``n_trials`` counted trials; other workers may
    share the storage. ``resume`` first marks trials left RUNNING by a killed worker as interrupted (only when
    no other worker is running). Writes ``OUTPUT/trials_{method}.csv``."""
    output = check_output_dir(output, "search output folder")
    settings = settings or ProxySettings(seed=seed)
    study = optuna.create_study(study_name=study_name or f"search-{method}", storage=storage, direction="maximize",
                                sampler=make_sampler(method, space, n_trials, seed), load_if_exists=True)
    study.set_user_attr("method", method)
    if resume:
        mark_interrupted(study)
    objective = SearchObjective(space, data, settings, output / "work")

    def stop_at_budget(study, trial):
        write_trials_csv(study, output / f"trials_{method}.csv")
        if counted_trials(study) >= n_trials:
            study.stop()

    if counted_trials(study) < n_trials:
        study.optimize(objective, callbacks=[stop_at_budget], catch=(RuntimeError, ValueError))
    write_trials_csv(study, output / f"trials_{method}.csv")
    return study


def trial_rows(study: optuna.Study) -> list[dict]:
    method = study.user_attrs.get("method", study.study_name)
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        rows.append({"method": method, "number": t.number, "state": t.state.name,
                     **{k: attrs.get(k) for k in CSV_FIELDS[3:-1]}, "config": json.dumps(attrs.get("config"))})
    return rows


def write_trials_csv(study: optuna.Study, path: str | Path) -> None:
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(trial_rows(study))


def best_so_far(study: optuna.Study) -> np.ndarray:
    """(n_trials,) best reward among trials 0..i (nan before the first completed one)."""
    values = [t.value if t.state == TrialState.COMPLETE else np.nan for t in study.get_trials(deepcopy=False)]
    return np.fmax.accumulate(np.array(values, dtype=float)) if values else np.array([])


def export_best_config(study: optuna.Study, space: SearchSpace, data: SearchData, path: str | Path,
                       dataset_dir: str | Path, steps: int = 2000, batch_size: int = 128,
                       learning_rate: float = 1e-3, output_dir: str = "outputs/searched",
                       augmentation: str = "light") -> Path:
    """Write the best trial as a ``configs/train``-style YAML that ``scripts/train.py --config`` runs, with its
    cleaning step applied: the cleaned training identities are saved to ``dataset_dir`` (``train_dataset``)."""
    import yaml

    from .cleaning import clean_dataset

    params = study.best_trial.user_attrs["config"]
    cleaned, _ = clean_dataset(data.train, space.cleaning_config(params), embeddings=data.train_embeddings)
    dataset_dir = Path(dataset_dir)
    cleaned.save_to_disk(str(dataset_dir))
    values = {**space.model_arguments(params), "train_dataset": str(dataset_dir), "augmentation": augmentation,
              "output_dir": output_dir, "finetune_mode": "scratch", "max_steps": steps,
              "per_device_train_batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": 0.05,
              "warmup_steps": max(steps // 20, 1), "lr_scheduler_type": "cosine", "save_strategy": "steps",
              "save_steps": max(steps // 2, 1), "save_total_limit": 2, "logging_steps": max(steps // 20, 1),
              "seed": 0, "dataloader_num_workers": 0, "dataloader_drop_last": True, "report_to": "none"}
    header = (f"# Best configuration of search {study.study_name!r}: trial {study.best_trial.number}, reward "
              f"{study.best_value:.4f}, accuracy {study.best_trial.user_attrs.get('accuracy', float('nan')):.4f}, "
              f"{study.best_trial.user_attrs.get('flops', 0):,} FLOPs.\n"
              f"# Cleaning (applied to train_dataset): {json.dumps(asdict(space.cleaning_config(params)))}\n"
              f"# Searched decisions: {json.dumps(params)}\n#   python scripts/train.py --config {Path(path).name}\n")
    check_output_dir(Path(path).parent, "config folder")
    with atomic_write(path) as handle:
        handle.write(header + yaml.safe_dump(values, sort_keys=False))
    return Path(path)
