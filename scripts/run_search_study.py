"""The comprehensive search on LFW, on CPU: joint RL vs random vs one-aspect-at-a-time under one trial budget.

    python scripts/run_search_study.py --budget 24 --out /tmp/search_study

1. LFW identities of View 2 folds 1-5 (>= 2 images) and the images of folds 6-10 pairs are aligned with YuNet to
   the 96x112 template (reused when already there).
2. Reference embeddings of the folds 1-5 images: the converted CASIA MobileFaceNet (flip concat, as its source
   evaluates); the default cleaning rules' report on them goes to OUT/cleaning/ (counts, CSV, thumbnails).
3. The folds 1-5 identities are split 80/20 (seeded) into search-train and search-held-out identities; each method
   runs `--budget` trials (tiny ViT / IResNet proxies at --image-size px, --steps steps), reward on the held-out
   identities (10-fold verification accuracy - 0.05 * |FLOPs / target - 1|).
4. The best configuration of each method is cleaned and trained --final-steps steps on all folds 1-5 identities and
   tested once on the 3,000 pairs of folds 6-10 (protocol folds, flip sum). results.json / results.md under OUT.

Skips (exit 0) when ../shared (HF_FACEREC_DATA) is absent. Never writes into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # convert_mobilefacenet.py


def _aligned(lfw: Path, out: Path, yunet: str) -> Path:
    from hf_facerec.data.align_folder import align_folder
    from hf_facerec.data.pairs import load_lfw_pairs
    from hf_facerec.data.protocols import link_identity_subset, pair_identities, split_identities_by_folds

    pairs = load_lfw_pairs(lfw / "pairs.txt", lfw / "images")
    counts = {p.name: len(list(p.iterdir())) for p in (lfw / "images").iterdir() if p.is_dir()}
    split = split_identities_by_folds(pairs, range(5), range(5, 10), counts, min_images=2)
    links = link_identity_subset(lfw / "images", out / "lfw_links", set(split.train) | pair_identities(pairs, range(5, 10)))
    report = align_folder(links, out / "aligned_96x112", detector="yunet", detector_kwargs={"model_path": yunet},
                          template="96x112", min_score=0.5, progress=False, follow_symlinks=True)
    print(f"aligned {report.aligned} new, {report.skipped_existing} existing, failures {report.counts()}", flush=True)
    return link_identity_subset(out / "aligned_96x112", out / "train_ids", split.train)


def _test_pairs(lfw: Path, aligned_root: Path):
    """Folds 6-10 pairs on the aligned images (pairs with an image YuNet found no face in are dropped: counted)."""
    import datasets

    from hf_facerec.data.pairs import load_lfw_pairs
    from hf_facerec.data.protocols import select_folds

    pairs = select_folds(load_lfw_pairs(lfw / "pairs.txt", aligned_root, check_files=False), range(5, 10))
    raw = pairs.cast_column("image1", datasets.Image(decode=False)).cast_column("image2", datasets.Image(decode=False))
    keep = [i for i, (a, b) in enumerate(zip(raw["image1"], raw["image2"]))
            if Path(a["path"]).is_file() and Path(b["path"]).is_file()]
    return pairs.select(keep), len(pairs) - len(keep)


def _split_identities(dataset, fraction: float, seed: int):
    import numpy as np

    labels = np.asarray(dataset["label"])
    ids = np.random.default_rng(seed).permutation(np.unique(labels))
    held = set(ids[: int(round(fraction * len(ids)))].tolist())
    val_rows = [i for i, label in enumerate(labels) if label in held]
    train_rows = [i for i, label in enumerate(labels) if label not in held]
    return train_rows, val_rows


def _renumber(dataset):
    import datasets
    import numpy as np

    labels = np.asarray(dataset["label"])
    _, new = np.unique(labels, return_inverse=True)
    return dataset.remove_columns("label").add_column("label", new.tolist(), feature=datasets.Value("int64"))


def export_full(out: Path, summary: dict, space, dataset, embeddings, steps: int, settings) -> dict:
    """Each method's best configuration as a training YAML over ALL folds 1-5 identities (what the final runs train
    on), cleaned by its rules: OUT/final/best_{method}.yaml with its data in OUT/final/best_data_{method}."""
    from types import SimpleNamespace

    import optuna

    from hf_facerec.search.study import export_best_config

    full = SimpleNamespace(train=dataset, train_embeddings=embeddings)
    paths = {}
    for method, entry in summary["methods"].items():
        if "config" in entry:
            study = optuna.load_study(study_name=f"search-{method}", storage=summary["storage"])
            paths[method] = str(export_best_config(
                study, space, full, out / "final" / f"best_{method}.yaml", out / "final" / f"best_data_{method}",
                steps=steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                augmentation=settings.augmentation, output_dir=str(out / "final" / f"full_{method}")))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data_root = Path(os.environ.get("HF_FACEREC_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--budget", type=int, default=24, help="trials per method")
    parser.add_argument("--out", type=Path, default=Path("/tmp/search_study"), help="output folder (not the repo)")
    parser.add_argument("--methods", default="rl,random,one-at-a-time")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="proxy steps per trial")
    parser.add_argument("--final-steps", type=int, default=300, help="steps of the final runs on folds 1-5")
    parser.add_argument("--target-flops", type=float, default=5e6)
    parser.add_argument("--max-flops", type=float, default=6e7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    lfw, models = data_root / "lfw", data_root.parent / "models"
    if not (lfw / "pairs.txt").is_file() or not (models / "mobilefacenet_casia" / "068.ckpt").is_file():
        print(f"skipped: needs {lfw} and {models}/mobilefacenet_casia (real data in ../shared)")
        return 0
    if args.out.resolve() == REPO or REPO in args.out.resolve().parents:
        parser.error("--out must be outside the repository (research-only data)")
    import numpy as np
    import torch

    from hf_facerec.data.folders import load_identity_folder
    from hf_facerec.embedding import FaceEmbedder
    from hf_facerec.models import FaceRecImageProcessor
    from hf_facerec.search.cleaning import CleaningConfig, clean_dataset, embed_dataset
    from hf_facerec.search.report import write_cleaning_report
    from hf_facerec.search.runner import compare_methods
    from hf_facerec.search.space import SearchSpace
    from hf_facerec.search.study import ProxySettings, SearchData, train_proxy
    from hf_facerec.training.callbacks import evaluate_pair_sets

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_dir = _aligned(lfw, args.out, str(next((models / "yunet").glob("*.onnx"))))
    dataset = load_identity_folder(train_dir, min_images_per_identity=2)
    reference = args.out / "mobilefacenet"
    embeddings_path = args.out / "reference_embeddings.npy"
    if not embeddings_path.is_file():
        if not (reference / "config.json").is_file():
            import convert_mobilefacenet

            convert_mobilefacenet.main(["--checkpoint", str(models / "mobilefacenet_casia" / "068.ckpt"),
                                        "--output", str(reference)])
        np.save(embeddings_path, embed_dataset(dataset, FaceEmbedder.from_pretrained(reference, flip="concat")))
    embeddings = np.load(embeddings_path)
    print(f"{len(dataset)} images of {dataset.features['label'].num_classes} identities (folds 1-5)", flush=True)

    default_cleaning = CleaningConfig(duplicate_threshold=0.95, merge_threshold=0.7, noisy_margin=0.0,
                                      outlier_fraction=0.05, min_images=2)
    _, cleaning = clean_dataset(dataset, default_cleaning, embeddings=embeddings)
    cleaning_report = write_cleaning_report(cleaning, args.out / "cleaning", dataset)
    per_rule = {}
    for rule, config in (("duplicate", CleaningConfig(duplicate_threshold=0.95)),
                         ("merge", CleaningConfig(merge_threshold=0.7)), ("noisy", CleaningConfig(noisy_margin=0.0)),
                         ("outlier_5pct", CleaningConfig(outlier_fraction=0.05))):
        per_rule[rule] = clean_dataset(dataset, config, embeddings=embeddings)[1].counts
    print("cleaning (all rules):", json.dumps(cleaning_report["counts"]), flush=True)

    train_rows, val_rows = _split_identities(dataset, 0.2, args.seed)
    search_train = _renumber(dataset.select(train_rows))
    data = SearchData(search_train, _renumber(dataset.select(val_rows)), embeddings[train_rows], args.image_size,
                      seed=args.seed)
    space = SearchSpace.default(image_size=args.image_size, target_flops=args.target_flops, max_flops=args.max_flops)
    settings = ProxySettings(steps=args.steps, seed=args.seed)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    summary = compare_methods(space, data, methods, args.budget, args.out / "search", settings=settings,
                              seed=args.seed, export_steps=args.final_steps)

    pairs, dropped = _test_pairs(lfw, args.out / "aligned_96x112")
    processor = FaceRecImageProcessor(size={"height": args.image_size, "width": args.image_size})
    final = {}
    for method, entry in summary["methods"].items():
        if "config" not in entry:
            continue
        start = time.perf_counter()
        cleaned, _ = clean_dataset(dataset, space.cleaning_config(entry["config"]), embeddings=embeddings)
        model = train_proxy(space, entry["config"], cleaned, ProxySettings(steps=args.final_steps, seed=args.seed),
                            str(args.out / "final" / method))
        metrics = evaluate_pair_sets(model, {"lfw": pairs}, image_processor=processor, batch_size=256, flip="sum",
                                     fars=(1e-2,), metric_key_prefix="", preprocess=lambda image: image)
        final[method] = {"images": len(cleaned), **{k.removeprefix("lfw_"): v for k, v in metrics.items()},
                         "train_eval_s": round(time.perf_counter() - start, 1)}
        print(method, json.dumps(final[method]), flush=True)
    exported = export_full(args.out, summary, space, dataset, embeddings, args.final_steps,
                           ProxySettings(steps=args.final_steps, seed=args.seed))
    results = {"budget": args.budget, "exported_configs": exported, "steps": args.steps, "final_steps": args.final_steps,
               "image_size": args.image_size, "target_flops": args.target_flops, "search": summary,
               "cleaning_all_rules": cleaning_report["counts"], "cleaning_per_rule": per_rule,
               "test_pairs": len(pairs), "test_pairs_dropped": dropped, "final_folds_6_10": final,
               "wall_s": round(time.perf_counter() - started, 1)}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = ["| method | best search reward | held-out acc | FLOPs | search wall | folds 6-10 acc | TAR@FAR=1e-2 |",
             "|---|---|---|---|---|---|---|"]
    for method, entry in summary["methods"].items():
        f = final.get(method, {})
        lines.append(f"| {method} | {entry.get('best_reward', float('nan')):.4f} | {entry.get('accuracy', float('nan')):.4f} "
                     f"| {entry.get('flops', 0):,} | {entry['trials_wall_s'] / 60:.1f} min | {f.get('accuracy', float('nan')):.4f} "
                     f"| {f.get('tar_at_far_1e-02', float('nan')):.4f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
