"""The facial representation study on this machine's shared data (skips cleanly without it).

    python scripts/run_representation_study.py --budget tiny --out /tmp/representation_study

1. Pre-training images: UTKFace (its few-shot *training* split only: no test image is seen, even unlabelled) + the
   LFW images of the identities of View 2 folds 1-5 (centre crop 60..190 of the 250 px photos; folds 6-10 stay
   unseen). Both sets' size and redundancy (thumbnails; the converted MobileFaceNet when ../shared/models has it).
2. SSL pre-training of a ViT (width 192, 6 layers, patch 8) at the budget's size with SwAV and with DINO.
3. The few-shot table for the six tasks at 1 / 10 / 100 % labels: SwAV, DINO and the same ViT from random init
   (+ the converted MobileFaceNet on LFW verification).
4. The seed-000 question through the data-scale grid: LoRA / full fine-tuning from the SwAV start vs scratch, on
   100 / 300 / all identities of folds 1-5 (>= 2 images each), tested on the 3,000 pairs of folds 6-10.
Everything goes under --out (never the repository); summary.json holds every number and the CPU time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

LFW_CROP = (60, 60, 190, 190)
VIT = {"model_type": "vit", "hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3,
       "intermediate_size": 768, "patch_size": 8}
# mfn_redundancy: MobileFaceNet embeddings for the redundancy figures (~15 CPU-minutes here) besides thumbnails;
# steps / batch / size / n_local: pre-training; max_train / max_test / seeds / modes: few-shot; ds_*: data-scale grid.
BUDGETS = {
    "smoke": dict(mfn_redundancy=False, steps=2, batch=8, size=32, n_local=2, max_train=60, max_test=40,
                  seeds=(0,), modes=("linear_probe", "lora"), ds_steps=2, ds_batch=8, ds_counts="20",
                  ds_modes="lora,scratch"),
    "tiny": dict(mfn_redundancy=False, steps=40, batch=32, size=64, n_local=2, max_train=1000, max_test=600,
                 seeds=(0, 1), modes=("linear_probe",), ds_steps=20, ds_batch=32, ds_counts="100,300",
                 ds_modes="lora,full,scratch"),
    "small": dict(mfn_redundancy=True, steps=600, batch=64, size=64, n_local=4, max_train=None, max_test=None,
                  seeds=(0, 1, 2), modes=("linear_probe", "lora"), ds_steps=200, ds_batch=64,
                  ds_counts="100,300,all", ds_modes="lora,full,scratch"),
    "full": dict(mfn_redundancy=True, steps=5000, batch=128, size=96, n_local=6, max_train=None, max_test=None,
                 seeds=(0, 1, 2), modes=("linear_probe", "lora", "full"), ds_steps=1000, ds_batch=64,
                 ds_counts="100,300,all", ds_modes="lora,full,scratch"),
}


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def lfw_crops(data: Path, out: Path, size: int) -> tuple[list[str], Path, Path]:
    """Crops (resized to ``size``: the evaluation then needs no detector) of the folds 1-5 identities' images
    (out/lfw_crops_<size>/<id>/) and of the folds 6-10 pair images, and a CSV pair file of folds 6-10 over them.
    Returns (training crop paths, identity folder, pair CSV)."""
    from PIL import Image

    from hf_facerec.representation.tasks import get_task

    task = get_task("lfw_verification").load(data)
    root = out / f"lfw_crops_{size}"

    def crop(path: str) -> str:
        target = root / Path(path).parent.name / Path(path).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").crop(LFW_CROP).resize((size, size), Image.Resampling.BICUBIC).save(
                target, quality=95)
        return str(target)

    train = [crop(p) for p in task.train_images]
    test = [crop(p) for p in task.test_images]
    pair_csv = out / f"lfw_folds6-10_pairs_{size}.csv"
    with open(pair_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path1", "path2", "label", "fold"])
        for (i, j), same, fold in zip(task.pairs.tolist(), task.is_same.tolist(), task.folds.tolist()):
            writer.writerow([test[i], test[j], int(same), fold])
    train_ids = out / f"lfw_train_ids_{size}"  # identity folders of links, held-out identities absent
    train_ids.mkdir(exist_ok=True)
    for identity in {Path(p).parent.name for p in train}:
        link = train_ids / identity
        if not link.exists():
            link.symlink_to(root / identity, target_is_directory=True)
    return train, train_ids, pair_csv


def redundancy(name: str, paths: list[str], labels, mobilefacenet: Path | None) -> dict:
    from hf_facerec.representation.redundancy import (dataset_statistics, embed_images, redundancy_report,
                                                      thumbnail_embeddings)

    out = {"statistics": dataset_statistics(len(paths), labels)}
    embeddings = {"thumbnails": (thumbnail_embeddings(paths), (0.95, 0.98))}
    if mobilefacenet is not None:
        embeddings["mobilefacenet"] = (embed_images(str(mobilefacenet), paths, batch_size=128), (0.8, 0.9))
    for kind, (vectors, thresholds) in embeddings.items():
        for threshold in thresholds:
            report = redundancy_report(vectors, threshold, k=10, labels=labels)
            for key in ("pairs", "scores", "cluster_of"):
                report.pop(key)
            out[f"{kind}@{threshold}"] = report
            print(f"[redundancy] {name} {kind} >= {threshold}: {report['near_duplicate_fraction']:.2%} of "
                  f"{report['images']} images have a near-copy, {report['clusters']} clusters, "
                  f"de-duplicated {report['deduplicated_images']}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="tiny", choices=sorted(BUDGETS))
    parser.add_argument("--data", default=os.environ.get("HF_FACEREC_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--models", default=str(REPO.parent / "shared" / "models"))
    parser.add_argument("--out", default="/tmp/representation_study")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip: redundancy,fewshot,data_scale")
    args = parser.parse_args(argv)
    data, out, budget = Path(args.data), Path(args.out), BUDGETS[args.budget]
    skip = set(filter(None, args.skip.split(",")))
    if not (data / "utkface_part1").is_dir() or not (data / "lfw").is_dir():
        print(f"skip: the shared data ({data}) is not here")
        return 0
    import torch

    from hf_facerec.representation.fewshot import Pretraining, run_fewshot
    from hf_facerec.representation.pretrain import pretrain
    from hf_facerec.representation.tasks import DEFAULT_TASKS, get_task

    out.mkdir(parents=True, exist_ok=True)
    start_wall, start_cpu = time.time(), cpu_seconds()
    summary: dict = {"budget": args.budget, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in budget.items()}, "backbone": VIT,
                     "torch_threads": torch.get_num_threads(), "timings": {}}

    def mark(step: str, since: list) -> None:
        summary["timings"][step] = {"wall_s": round(time.time() - since[0], 1),
                                    "cpu_s": round(cpu_seconds() - since[1], 1)}
        since[:] = [time.time(), cpu_seconds()]
        (out / "summary.json").write_text(json.dumps(summary, indent=2))

    clock = [time.time(), cpu_seconds()]
    utk_train = get_task("utkface_gender").load(data).train_images
    lfw_train, lfw_ids, pair_csv = lfw_crops(data, out, budget["size"])
    images = utk_train + lfw_train
    summary["pretraining_images"] = {"utkface_train_split": len(utk_train), "lfw_folds1-5": len(lfw_train)}
    mark("prepare", clock)

    mobilefacenet = None
    checkpoint = Path(args.models) / "mobilefacenet_casia" / "068.ckpt"
    if checkpoint.is_file():
        mobilefacenet = out / "mobilefacenet"
        if not (mobilefacenet / "config.json").is_file():
            import convert_mobilefacenet

            convert_mobilefacenet.main(["--checkpoint", str(checkpoint), "--output", str(mobilefacenet)])
    if "redundancy" not in skip:
        from hf_facerec.data.attributes import read_utkface

        utk_all = read_utkface(data / "utkface_part1").paths
        model = mobilefacenet if budget["mfn_redundancy"] else None  # ~15 min of CPU for both sets here
        summary["redundancy"] = {
            "utkface": redundancy("utkface", utk_all, None, model),
            "lfw_folds1-5": redundancy("lfw_folds1-5", lfw_train, [Path(p).parent.name for p in lfw_train], model)}
        mark("redundancy", clock)

    backbones = {}
    for method in ("swav", "dino"):
        run_dir = out / f"ssl_{method}"
        if not (run_dir / "backbone" / "config.json").is_file():
            result = pretrain(images, run_dir, VIT, method, image_size=budget["size"], local_size=budget["size"] // 2,
                              n_local=budget["n_local"], max_steps=budget["steps"], batch_size=budget["batch"],
                              learning_rate=5e-4, save_steps=max(budget["steps"] // 2, 1),
                              model_options={"n_prototypes": 256, "hidden_dim": 512, "projection_dim": 128})
            summary.setdefault("pretraining", {})[method] = result
            print(f"[pretrain] {method}: {result}", flush=True)
        backbones[method] = str(run_dir / "backbone")
        mark(f"pretrain_{method}", clock)

    common = dict(fractions=(0.01, 0.1, 1.0), modes=budget["modes"], seeds=budget["seeds"], image_size=budget["size"],
                  epochs=3, probe_steps=150, max_train=budget["max_train"], max_test=budget["max_test"])
    if "fewshot" not in skip:
        lines = [Pretraining("swav", backbones["swav"]), Pretraining("dino", backbones["dino"]),
                 Pretraining("random_init", backbones["swav"], random_init=True)]
        result = run_fewshot(lines, list(DEFAULT_TASKS), data, out / "fewshot", **common)
        summary["fewshot"] = result["summary"]
        if mobilefacenet is not None:
            mfn = run_fewshot([Pretraining("mobilefacenet_casia", str(mobilefacenet))], ["lfw_verification"], data,
                              out / "fewshot_mobilefacenet", **{**common, "modes": ("linear_probe",)})
            summary["fewshot_mobilefacenet"] = mfn["summary"]
        mark("fewshot", clock)

    if "data_scale" not in skip:
        from hf_facerec.training.data_scale import run_grid

        config = out / "data_scale.yaml"
        config.write_text("\n".join([
            f"backbone: {backbones['swav']}", f"image_size: {budget['size']}", "embedding_size: 128",
            "min_images_per_identity: 2", "augmentation: light", "margin_type: arcface", "margin_scale: 32.0",
            'margin_kwargs: {"margin": 0.3}', f"per_device_train_batch_size: {budget['ds_batch']}",
            f"max_steps: {budget['ds_steps']}", "learning_rate: 1.0e-3", "head_learning_rate: 1.0e-2",
            f"warmup_steps: {max(1, budget['ds_steps'] // 10)}", "lr_scheduler_type: cosine", "lora_rank: 8",
            "logging_steps: 10", 'save_strategy: "no"', "seed: 0", "use_cpu: true", "dataloader_num_workers: 0",
            "report_to: none", f"output_dir: {out / 'data_scale'}"]) + "\n")
        rows = run_grid(str(config), budget["ds_counts"], budget["ds_modes"], [f"lfw6-10={pair_csv}"],
                        out / "data_scale", flip="sum", train_args=["--train_dir", str(lfw_ids)])
        summary["data_scale"] = rows
        mark("data_scale", clock)

    summary["total"] = {"wall_s": round(time.time() - start_wall, 1), "cpu_s": round(cpu_seconds() - start_cpu, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["total"]), f"-> {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
