"""Train on the identities of LFW folds 1-5, test on the pairs of folds 6-10 (identity-disjoint), on CPU.

    python scripts/train_lfw_folds.py --out /tmp/lfw_folds --aligned_arcface /tmp/lfw_aligned_yunet

Steps (everything is written under --out, outside the repository; finished runs are reused, --force redoes them):
1. Align every LFW image with YuNet (score >= 0.5) to the ArcFace 112x112 template and to the 96x112 template
   (MobileFaceNet), unless an existing folder with the same settings is given / already there.
2. Training identities = identities of folds 1-5 pairs (+ LFW identities in no pair, `--include_unpaired`),
   checked disjoint from the identities of folds 6-10 pairs, kept with >= 2 images; exposed as folders of links.
3. Runs: `scratch` (configs/experiments/lfw_folds_scratch.yaml through `hf-facerec train`'s code), and from the
   converted CASIA-WebFace MobileFaceNet (no foundation model ships offline): `zero_shot` (no training),
   `linear_probe`, `lora`, `full` (configs/experiments/lfw_folds_mobilefacenet.yaml + the per-mode settings below).
4. Each run is evaluated on the 3,000 pairs of folds 6-10: 5-fold protocol accuracy (threshold from the other 4
   folds), TAR@FAR=1e-2, AUC, flip-sum embeddings. The table goes to stdout, results.md and results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/convert_mobilefacenet.py

from transformers import AutoImageProcessor, AutoModel, TrainerCallback, set_seed

import hf_facerec
from hf_facerec.data.align_folder import align_folder
from hf_facerec.data.folders import list_identity_images
from hf_facerec.data.pairs import load_lfw_pairs
from hf_facerec.data.protocols import (
    link_identity_subset,
    parse_fold_range,
    select_folds,
    split_identities_by_folds,
)
from hf_facerec.training import build
from hf_facerec.training.callbacks import evaluate_pair_sets

PRETRAINED_MODES = ("linear_probe", "lora", "full")
RUNS = ("zero_shot", "scratch", *PRETRAINED_MODES)
# Per-mode settings on top of lfw_folds_mobilefacenet.yaml. Steps are sized to a few minutes each on 2 cores shared
# with other jobs: linear_probe only runs the frozen backbone forward, lora/full also backpropagate through it.
MODE_FLAGS = {
    "linear_probe": ["--max_steps", "60", "--learning_rate", "1e-3"],
    "lora": ["--max_steps", "40", "--per_device_train_batch_size", "32", "--learning_rate", "1e-3",
             "--head_learning_rate", "1e-3"],
    "full": ["--max_steps", "40", "--per_device_train_batch_size", "32", "--learning_rate", "1e-4",
             "--head_learning_rate", "1e-3"],
}
FARS = (1e-3, 1e-2)
SET = "lfw_test"


def _aligned(root: Path, lfw_images: Path, template: str, yunet: str, workers: int) -> Path:
    """An aligned copy of LFW at `root`: reused when its align_report matches (YuNet, score 0.5, template),
    else (re)made with `align_folder` (which skips images already there)."""
    report_path = root / "align_report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        settings = report.get("settings", {})
        if (settings.get("detector") == "yunet" and settings.get("template") == template
                and settings.get("min_score") == 0.5 and report.get("aligned") == report.get("total")):
            return root
    print(f"aligning {lfw_images} -> {root} ({template})", flush=True)
    align_folder(lfw_images, root, detector="yunet", detector_kwargs={"model_path": yunet}, template=template,
                 min_score=0.5, workers=workers, progress=False)
    return root


def _wallclock_limit(seconds: float) -> TrainerCallback:
    """Stops training once `seconds` have passed (the safety net of a CPU budget; recorded in the results)."""

    class _Limit(TrainerCallback):
        stopped_early = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start > seconds:
                control.should_training_stop = self.stopped_early = True

    return _Limit()


def _evaluate(model, processor, pairs) -> dict:
    start = time.perf_counter()
    metrics = evaluate_pair_sets(model, {SET: pairs}, image_processor=processor, batch_size=128, flip="sum",
                                 fars=FARS, metric_key_prefix="")
    out = {key[len(SET) + 1:]: value for key, value in metrics.items()}
    out["eval_seconds"] = round(time.perf_counter() - start, 1)
    return out


def _loss_curve(log_history: list[dict]) -> dict:
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return {"first_logged_loss": losses[0] if losses else None, "last_logged_loss": losses[-1] if losses else None}


# ---- the pretrained MobileFaceNet ---------------------------------------------------------------------------
def _pretrained_backbone(checkpoint: str):
    from convert_mobilefacenet import load_mobilefacenet_checkpoint

    return load_mobilefacenet_checkpoint(checkpoint)


def _mobilefacenet_processor(face_size):
    # The checkpoint normalises pixels as (x - 127.5) / 128 (see convert_mobilefacenet.py).
    height, width = face_size
    return hf_facerec.FaceRecImageProcessor(size={"height": height, "width": width}, image_mean=[0.5] * 3,
                                            image_std=[128 / 255] * 3)


def _pretrained_model(checkpoint: str, model_args, num_identities: int, centers: torch.Tensor | None):
    """Converted backbone -> identity-initialised linear head -> margin head (centers = mean embeddings)."""
    backbone = _pretrained_backbone(checkpoint)
    config = hf_facerec.FaceRecConfig(
        backbone_config=backbone.config, embedding_size=model_args.embedding_size, pooling=model_args.pooling,
        embedding_head=model_args.embedding_head, image_size=backbone.config.image_size,
        num_identities=num_identities, **model_args.margin_settings(),
    )
    model = hf_facerec.FaceRecForMarginClassification(config, backbone=backbone)
    linear = getattr(model.facerec.embedding_head, "linear", None)
    if linear is not None:  # start exactly at the zero-shot embedding
        if linear.weight.shape[0] != linear.weight.shape[1]:
            raise ValueError("the identity start needs embedding_size == the backbone's pooled width")
        with torch.no_grad():
            linear.weight.copy_(torch.eye(linear.weight.shape[0]))
            linear.bias.zero_()
    if centers is not None:
        with torch.no_grad():
            model.margin_head.weight.copy_(centers)
    return model


def _mean_embeddings(model, processor, dataset) -> torch.Tensor:
    """(K, D) normalised mean embedding of each identity (no augmentation): the margin head's starting centers,
    so fine-tuning starts from a head that already classifies instead of random centers."""
    from hf_facerec.embedding import FaceEmbedder

    raw = dataset.cast_column("image", type(dataset.features["image"])(decode=False))
    paths = [value["path"] for value in raw["image"]]
    embeddings = torch.as_tensor(FaceEmbedder(model.facerec.eval(), image_processor=processor, batch_size=128)(
        paths, progress=False))
    labels = torch.as_tensor(dataset["label"])
    sums = torch.zeros(int(labels.max()) + 1, embeddings.shape[1]).index_add_(0, labels, embeddings)
    return torch.nn.functional.normalize(sums, dim=1)


def _fit(model, processor, dataset, data_args, training_args, budget_s: float):
    """Train as `hf-facerec train` does (same transform, augmentation and trainer), with a wall-clock cap."""
    from hf_facerec.data.augment import default_train_augmentation, make_train_transform
    from hf_facerec.training.trainer import FaceRecTrainer

    augmentation = default_train_augmentation(data_args.augmentation, seed=training_args.seed)
    dataset.set_transform(make_train_transform(processor, augmentation, seed=training_args.seed))
    limit = _wallclock_limit(budget_s)
    trainer = FaceRecTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=processor,
                             callbacks=[limit])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_final_model(training_args.output_dir)
    final, final_processor = AutoModel.from_pretrained(training_args.output_dir), AutoImageProcessor.from_pretrained(
        training_args.output_dir)  # evaluate what was saved
    extra = {**_loss_curve(trainer.state.log_history), "stopped_by_budget": limit.stopped_early,
             "max_steps": training_args.max_steps, "batch_size": training_args.per_device_train_batch_size}
    return final, final_processor, trainer.state.global_step, seconds, extra


def _row(name, start, split, steps, seconds, metrics, extra=None) -> dict:
    return {"run": name, "start": start, "identities": split["train_identities"], "images": split["train_images"],
            "steps": steps, "train_seconds": round(seconds, 1), **metrics, **(extra or {})}


def _run_scratch(args, train_dir: Path, split: dict, pairs) -> dict:
    """configs/experiments/lfw_folds_scratch.yaml with `hf-facerec train`'s parser, model and dataset builders."""
    argv = ["--config", str(REPO / "configs/experiments/lfw_folds_scratch.yaml"), "--train_dir", str(train_dir),
            "--output_dir", str(args.out / "runs" / "scratch"), *args.scratch_flags]
    model_args, data_args, training_args = build.parse_train_arguments(argv)
    set_seed(training_args.seed)
    dataset = build.load_train_dataset(data_args, model_args.image_size, training_args.seed)
    model = build.build_model(model_args, dataset.features["label"].num_classes, training_args.finetune_mode)
    height, width = model.config.face_size
    processor = hf_facerec.FaceRecImageProcessor(size={"height": height, "width": width})
    final, final_processor, steps, seconds, extra = _fit(model, processor, dataset, data_args, training_args,
                                                         args.budget_minutes * 60)
    return _row("scratch", "random init (IResNet-18 / 4 width)", split, steps, seconds,
                _evaluate(final, final_processor, pairs), extra)


def _run_pretrained(args, mode: str, train_dir: Path, split: dict, pairs, state: dict) -> dict:
    argv = ["--config", str(REPO / "configs/experiments/lfw_folds_mobilefacenet.yaml"), "--train_dir", str(train_dir),
            "--finetune_mode", mode, "--output_dir", str(args.out / "runs" / mode), *MODE_FLAGS[mode]]
    model_args, data_args, training_args = build.parse_train_arguments(argv)
    set_seed(training_args.seed)
    dataset = build.load_train_dataset(data_args, 112, training_args.seed)
    if "centers" not in state:  # computed once, shared by the pretrained runs
        base = _pretrained_model(args.checkpoint, model_args, split["train_identities"], None)
        start = time.perf_counter()
        state["centers"] = _mean_embeddings(base, _mobilefacenet_processor(base.config.face_size), dataset)
        print(f"class centers from mean embeddings: {time.perf_counter() - start:.0f} s", flush=True)
    model = _pretrained_model(args.checkpoint, model_args, split["train_identities"], state["centers"])
    processor = _mobilefacenet_processor(model.config.face_size)
    final, final_processor, steps, seconds, extra = _fit(model, processor, dataset, data_args, training_args,
                                                         args.budget_minutes * 60)
    return _row(mode, "CASIA MobileFaceNet", split, steps, seconds, _evaluate(final, final_processor, pairs), extra)


def _table(rows: list[dict]) -> str:
    header = ("| run | start | identities | images | steps | train time | accuracy (folds 6-10) | TAR@FAR=1e-2 "
              "| AUC |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['start']} | {r['identities']} | {r['images']} | {r['steps']} | "
                     f"{r['train_seconds'] / 60:.1f} min | {100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f}"
                     f" | {100 * r['tar_at_far_1e-02']:.2f} | {r['auc']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("HF_FACEREC_DATA", "/work/shared/data"))
    models = data.parent / "models"
    parser.add_argument("--out", type=Path, default=Path("/tmp/lfw_folds"), help="output folder (not the repo)")
    parser.add_argument("--lfw", type=Path, default=data / "lfw", help="LFW folder: images/ and pairs.txt")
    parser.add_argument("--yunet", default=str(next((models / "yunet").glob("*.onnx"), "")), help="YuNet .onnx")
    parser.add_argument("--checkpoint", default=str(models / "mobilefacenet_casia" / "068.ckpt"))
    parser.add_argument("--aligned_arcface", type=Path, default=None,
                        help="existing ArcFace-aligned LFW copy (default: OUT/aligned_arcface)")
    parser.add_argument("--aligned_96x112", type=Path, default=None, help="default: OUT/aligned_96x112")
    parser.add_argument("--train_folds", default="1-5", help="1-based LFW View 2 folds to train on")
    parser.add_argument("--test_folds", default="6-10", help="1-based folds whose pairs are the test")
    parser.add_argument("--include_unpaired", action=argparse.BooleanOptionalAction, default=True,
                        help="also train on LFW identities that are in no pair of any fold")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {RUNS}")
    parser.add_argument("--budget_minutes", type=float, default=15.0, help="wall-clock cap of one training run")
    parser.add_argument("--scratch_flags", nargs=argparse.REMAINDER, default=[],
                        help="extra hf-facerec train flags for the scratch run (last on the line)")
    parser.add_argument("--force", action="store_true", help="redo runs whose results exist")
    parser.add_argument("--workers", type=int, default=1, help="alignment processes")
    args = parser.parse_args(argv)
    runs = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {RUNS}")
    if args.out.resolve() == REPO or REPO in args.out.resolve().parents:
        parser.error("--out must be outside the repository (research-only data and weights)")
    args.out.mkdir(parents=True, exist_ok=True)

    images = args.lfw / "images"
    aligned = {
        "arcface": _aligned(args.aligned_arcface or args.out / "aligned_arcface", images, "arcface", args.yunet,
                            args.workers),
        "96x112": _aligned(args.aligned_96x112 or args.out / "aligned_96x112", images, "96x112", args.yunet,
                           args.workers),
    }
    train_folds, test_folds = parse_fold_range(args.train_folds), parse_fold_range(args.test_folds)
    all_pairs = {key: load_lfw_pairs(args.lfw / "pairs.txt", root) for key, root in aligned.items()}
    counts = {path.name: len(list_identity_images(path)) for path in aligned["arcface"].iterdir() if path.is_dir()}
    split = split_identities_by_folds(all_pairs["arcface"], train_folds, test_folds, counts, min_images=2,
                                      include_unpaired=args.include_unpaired)
    summary = split.summary()
    only_paired = split_identities_by_folds(all_pairs["arcface"], train_folds, test_folds, counts, min_images=2)
    summary["train_identities_from_fold_pairs_only"] = len(only_paired.train)
    summary["train_images_from_fold_pairs_only"] = only_paired.num_train_images
    (args.out / "split.json").write_text(json.dumps({**summary, "train": list(split.train)}, indent=1))
    print("split:", json.dumps(summary), flush=True)
    train_dirs = {key: link_identity_subset(root, args.out / f"train_ids_{key}", split.train)
                  for key, root in aligned.items()}
    test_pairs = {key: select_folds(pairs, test_folds) for key, pairs in all_pairs.items()}

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results_dir = args.out / "results"
    results_dir.mkdir(exist_ok=True)
    state: dict = {}
    for name in runs:
        path = results_dir / f"{name}.json"
        if path.is_file() and not args.force:
            continue
        print(f"== {name} ({time.strftime('%H:%M:%S')})", flush=True)
        if name == "zero_shot":
            from convert_mobilefacenet import wrap_as_facerec

            model = wrap_as_facerec(_pretrained_backbone(args.checkpoint))  # the 128-d embedding as converted
            row = _row(name, "CASIA MobileFaceNet", summary, 0, 0.0,
                       _evaluate(model, _mobilefacenet_processor(model.config.face_size), test_pairs["96x112"]))
        elif name == "scratch":
            row = _run_scratch(args, train_dirs["arcface"], summary, test_pairs["arcface"])
        else:
            row = _run_pretrained(args, name, train_dirs["96x112"], summary, test_pairs["96x112"], state)
        path.write_text(json.dumps(row, indent=1))
        print(json.dumps(row), flush=True)
    rows = [json.loads((results_dir / f"{name}.json").read_text()) for name in RUNS
            if (results_dir / f"{name}.json").is_file()]
    table = _table(rows)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps({"split": summary, "runs": rows}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
