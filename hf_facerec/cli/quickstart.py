"""`hf-facerec quickstart`: the README's main job, offline, on a CPU (all its cores: ``--workers``).

With no arguments it trains a small face recognizer from scratch on SYNTHETIC identities (procedurally drawn
face-like images, `hf_facerec.data.synthetic`; nobody's face), evaluates verification and demographic bias on
held-out synthetic identities, and writes:

    OUTPUT/model/            FaceRecModel + image processor (AutoModel.from_pretrained(OUTPUT/model) after import)
    OUTPUT/results.json      verification report (10-fold accuracy, TAR@FAR, EER, AUC) and bias report per group
    OUTPUT/*.png             ROC, DET, score histogram, per-group bars
    OUTPUT/model/README.md   a model card with the measured results

With ``--data DIR --pairs FILE`` it does the same on real data: DIR is an identity folder (aligned crops,
``DIR/<identity>/<image>``), FILE a pair list (LFW ``pairs.txt``, insightface ``.bin`` or a CSV
``path1,path2,label[,group]``).

Where the time goes (``results.json`` ``timings_s``; ``scripts/bench_quickstart.py``): the synthetic faces are
rendered once, by ``--workers`` processes, straight to uint8 arrays; during training one DataLoader worker
augments the next batches while the main process runs the model on the remaining threads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

SYNTHETIC_GROUPS = ("A", "B", "C")

# A small ViT that trains in minutes on a 2-core CPU (about 1.3M parameters, 49 tokens at 112x112).
_SMALL_VIT = dict(
    image_size=112, patch_size=16, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="outputs/quickstart", help="output folder (default: %(default)s)")
    parser.add_argument("--data", default=None, help="identity folder DIR/<identity>/<image> (default: synthetic)")
    parser.add_argument("--pairs", default=None, help="pairs file: LFW pairs.txt, .bin or .csv (needs --data)")
    parser.add_argument("--pairs-images", default=None, help="image root of the pair file (default: --data for an LFW pairs.txt)")
    parser.add_argument("--identities", type=int, default=300, help="synthetic training identities")
    parser.add_argument("--images-per-identity", type=int, default=12, help="synthetic images per identity")
    parser.add_argument("--eval-identities", type=int, default=200, help="synthetic evaluation identities")
    parser.add_argument("--pairs-per-fold", type=int, default=100, help="synthetic pairs per fold (10 folds)")
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--margin-type", default="cosface", help="margin penalty (default: %(default)s)")
    parser.add_argument("--far", type=float, default=1e-2, help="FAR of the global threshold of the bias report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint in OUTPUT")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes that render the synthetic faces and augment batches (default: %(default)s)")


class _ArrayFaces:
    """An identity dataset over in-memory crops: ``images`` (N, H, W, 3) uint8, ``labels`` (N,) int.

    ``__getitems__`` runs ``transform`` (``make_train_transform``) on a whole batch, as ``set_transform`` does on a
    ``datasets.Dataset``, so the DataLoader workers decode nothing (the crops are already pixels).
    """

    def __init__(self, images, labels, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices) -> list[dict]:
        batch = self.transform({"image": [self.images[i] for i in indices], "label": self.labels[indices]})
        return [{"pixel_values": batch["pixel_values"][k], "labels": batch["labels"][k]} for k in range(len(indices))]

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]


def _datasets(args, transform):
    """(train dataset with ``transform`` set, number of identities, evaluation pair dataset, description)."""
    if args.data is None:
        from hf_facerec.data.synthetic import make_synthetic_pairs, render_synthetic_faces

        # Rendered once, in parallel, straight to pixels: no PNG encode here and no decode per training step.
        faces = render_synthetic_faces(
            args.identities, args.images_per_identity, seed=args.seed, groups=SYNTHETIC_GROUPS,
            num_workers=args.workers,
        )
        pairs = make_synthetic_pairs(
            args.eval_identities, pairs_per_fold=args.pairs_per_fold, seed=args.seed, groups=SYNTHETIC_GROUPS,
            num_workers=args.workers,
        )
        description = (
            f"synthetic identities (hf_facerec.data.synthetic, seed {args.seed}): {args.identities} training "
            f"identities x {args.images_per_identity} images; evaluation on {len(pairs)} pairs of "
            f"{args.eval_identities} held-out identities, groups {', '.join(SYNTHETIC_GROUPS)}"
        )
        return _ArrayFaces(faces["images"], faces["labels"], transform), args.identities, pairs, description
    if args.pairs is None:
        raise ValueError("--data needs --pairs (a pair list to evaluate on)")
    from hf_facerec.data.folders import load_identity_folder
    from hf_facerec.data.pairs import load_pair_file

    train = load_identity_folder(args.data, min_images_per_identity=2)
    train.set_transform(transform)
    # An LFW pairs.txt names images of the identity folder itself unless --pairs-images says otherwise.
    lfw = Path(args.pairs).suffix.lower() == ".txt"
    pairs = load_pair_file(args.pairs, images=args.pairs_images or (args.data if lfw else None))
    num_identities = train.features["label"].num_classes
    description = f"{train.num_rows} images of {num_identities} identities from {args.data}; " \
                  f"evaluation on {len(pairs)} pairs of {args.pairs}"
    return train, num_identities, pairs, description


def _build_model(num_identities: int, margin_type: str):
    from transformers import ViTConfig

    from hf_facerec.models import FaceRecConfig, FaceRecForMarginClassification

    config = FaceRecConfig(
        backbone_config=ViTConfig(**_SMALL_VIT),
        embedding_size=128,
        num_identities=num_identities,
        margin_type=margin_type,
        margin_scale=32.0,
    )
    return FaceRecForMarginClassification(config)


def _evaluate_pairs(embedder, pairs, output: Path, far: float) -> dict:
    """Verification report on all pairs, bias report over the groups that have genuine and impostor pairs
    (impostor-only groups such as "mixed" have no FNMR), and the plots."""
    import numpy as np

    from hf_facerec.data.pairs import pair_image_sources
    from hf_facerec.evaluation import (
        bias_report,
        groups_with_both_classes,
        pair_scores,
        plot_det,
        plot_group_bars,
        plot_roc,
        plot_score_histogram,
        roc_curve,
        verification_report,
    )

    sources, first, second = pair_image_sources(pairs)
    scores = pair_scores(embedder(sources, progress=True), first, second)
    labels = np.asarray(pairs["is_same"], dtype=bool)
    folds = np.asarray(pairs["fold"])
    groups = np.asarray(pairs["group"], dtype=object)
    results = {"verification": verification_report(scores, labels, folds=folds)}
    fpr, tpr, _ = roc_curve(scores, labels)
    plot_roc({"model": (fpr, tpr)}, output / "roc.png")
    plot_det({"model": (fpr, 1.0 - tpr)}, output / "det.png")
    plot_score_histogram(scores, labels, output / "scores.png")
    paired = groups_with_both_classes(labels, groups)
    keep = np.isin(groups, paired)
    if len(paired) >= 2 and far * np.count_nonzero(~labels[keep]) < 1:
        results["bias"] = {"skipped": f"FAR {far:g} is below 1/#impostor pairs of the grouped pairs; use a larger --far"}
    elif len(paired) >= 2:
        bias = bias_report(scores[keep], labels[keep], groups[keep], far=far, folds=folds[keep])
        results["bias"] = bias
        plot_group_bars({g: r["accuracy"] for g, r in bias["groups"].items()},
                        {g: r["accuracy_std"] for g, r in bias["groups"].items()},
                        output / "bias_accuracy.png", ylabel="10-fold accuracy")
        plot_group_bars({g: r["fnmr"] for g, r in bias["groups"].items()}, None, output / "bias_fnmr.png",
                        ylabel=f"FNMR at global FAR {far:g}")
    return results


def run(args: argparse.Namespace) -> int:
    import torch

    from hf_facerec.data.augment import default_train_augmentation, make_train_transform
    from hf_facerec.hub.card import write_model_card
    from hf_facerec.models import FaceRecImageProcessor
    from hf_facerec.training import FaceRecTrainer, FaceRecTrainingArguments

    if isinstance(args.workers, bool) or args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:  # wall seconds per stage, for results.json and scripts/bench_quickstart.py
        timings[stage] = round(time.perf_counter() - started - sum(timings.values()), 2)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    processor = FaceRecImageProcessor()
    transform = make_train_transform(processor, default_train_augmentation("light", seed=args.seed))
    train, num_identities, pairs, data_description = _datasets(args, transform)
    print(f"[quickstart] data: {data_description}")
    lap("data")

    model = _build_model(num_identities, args.margin_type)
    # One loader worker augments the next batches while the main process trains on both cores; on one core
    # the main process does both (a worker would only add a copy per batch).
    loader_workers = 1 if args.workers > 1 else 0
    training_args = FaceRecTrainingArguments(
        output_dir=str(output / "checkpoints"),
        finetune_mode="scratch",
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=0.05,
        warmup_steps=max(1, args.steps // 20),
        lr_scheduler_type="cosine",
        logging_steps=max(1, args.steps // 20),
        save_steps=max(1, args.steps // 4),
        save_total_limit=1,
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=loader_workers,
        dataloader_persistent_workers=loader_workers > 0,  # not re-forked at each of the ~10 epochs
        disable_tqdm=False,
    )
    trainer = FaceRecTrainer(model=model, args=training_args, train_dataset=train, processing_class=processor)
    resume = args.resume and any((output / "checkpoints").glob("checkpoint-*"))
    train_result = trainer.train(resume_from_checkpoint=True if resume else None)
    lap("train")
    model_dir = trainer.save_final_model(output / "model")
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"[quickstart] trained {args.steps} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    lap("save")

    from hf_facerec.embedding import FaceEmbedder

    embedder = FaceEmbedder.from_pretrained(model_dir, flip="sum")
    results = _evaluate_pairs(embedder, pairs, output, far=args.far)
    lap("evaluate")
    summary = {
        "data": data_description,
        "model": str(model_dir),
        "training": {
            "finetune_mode": "scratch",
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "margin_type": args.margin_type,
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "train_runtime_s": train_result.metrics.get("train_runtime"),
        },
        "results": results,
        "timings_s": timings,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    (output / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    write_model_card(model_dir, summary)
    verification = results["verification"]
    print(
        f"[quickstart] 10-fold accuracy {verification['accuracy']:.4f} +- {verification['accuracy_std']:.4f}, "
        f"EER {verification['eer']:.4f}, AUC {verification['auc']:.4f}; results in {output}/results.json, "
        f"model in {model_dir}, {summary['wall_time_s']} s"
    )
    return 0
