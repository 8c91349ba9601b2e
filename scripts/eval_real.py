"""Real-data results of the Evaluation issue, on the research-only data of ../shared (never copied here).

    python scripts/eval_real.py --shared ../shared --output /tmp/hf_facerec_eval [--parts lfw,utkface,variants]

* ``lfw``: converts ../shared/models/mobilefacenet_casia (scripts/convert_mobilefacenet.py), runs the
  benchmark runner on LFW View 2 (YuNet alignment to the 96x112 template, flip-concatenated
  embeddings): 10-fold accuracy, TAR@FAR, and the per-gender bias report from
  ``lfw/gender_per_identity.csv`` (at FAR 1e-3 and, coarser but less noisy, 1e-2).
* ``utkface``: FMR per race, gender, age band (and race among adults) on UTKFace part 1 (no
  identities: impostor pairs only): the threshold reaches FAR 1e-3 on 1M uniformly drawn pairs of
  all images, then FMR is measured on up to 200K pairs drawn within each group and across groups.
* ``variants``: where the gap to the checkpoint's claimed 99.30% comes from (scripts/eval_real_variants.py).

Everything it writes (converted model, crops' embeddings, reports, plots) goes to ``--output``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from hf_facerec import FaceEmbedder
from hf_facerec.evaluation import pair_scores, plot_group_bars
from hf_facerec.benchmarks.cache import EmbeddingCache, embed_images, image_key, model_fingerprint
from hf_facerec.benchmarks.runner import evaluate_model
from hf_facerec.data.preprocess import build_preprocess
from hf_facerec.evaluation import MIXED_GROUP, impostor_fmr_report, impostor_threshold

RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
GENDERS = {"0": "male", "1": "female"}
AGE_BANDS = ((0, 17, "0-17"), (18, 29, "18-29"), (30, 44, "30-44"), (45, 59, "45-59"), (60, 200, "60+"))


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def convert_model(shared: Path, output: Path) -> Path:
    """Convert the MobileFaceNet checkpoint once into ``output/mobilefacenet`` (FaceRecModel +
    processor with the source's (x - 127.5) / 128 normalisation)."""
    target = output / "mobilefacenet"
    if not (target / "model.safetensors").is_file():
        convert = _load_script("convert_mobilefacenet")
        convert.main(["--checkpoint", str(shared / "models/mobilefacenet_casia/068.ckpt"), "--output", str(target)])
    return target


def yunet_path(shared: Path) -> Path:
    return next((shared / "models" / "yunet").glob("*.onnx"))


def run_lfw(model_dir: Path, shared: Path, output: Path) -> dict:
    """Parts 1 and 2: LFW accuracy + per-gender bias, through the benchmark runner."""
    lfw = shared / "data" / "lfw"
    common = dict(align="yunet", detector_model=yunet_path(shared), flip="concat", batch_size=128,
                  group_file=lfw / "gender_per_identity.csv", cache_dir=output / "embedding_cache")
    start = time.perf_counter()
    results = evaluate_model(model_dir, "lfw", shared / "data", output / "lfw", far=1e-3, **common)
    first = time.perf_counter() - start
    start = time.perf_counter()
    coarse = evaluate_model(model_dir, "lfw", shared / "data", output / "lfw_far1e-2", far=1e-2, **common)
    second = time.perf_counter() - start
    r = results["benchmarks"]["lfw"]
    v = r["verification"]
    print(f"\n== LFW (runner: YuNet 0.5 -> 96x112, (x-127.5)/128, flip concat) [{first:.0f} s; rerun from cache {second:.1f} s]")
    print(f"10-fold accuracy {100 * v['accuracy']:.2f}% +- {100 * v['accuracy_std']:.2f}, best-threshold {100 * v['best_threshold_accuracy']:.2f}%, "
          f"EER {100 * v['eer']:.2f}%, AUC {v['auc']:.5f}, TAR@FAR 1e-3 {v['tar_at_far']['1e-03']}, 1e-2 {v['tar_at_far']['1e-02']}; "
          f"{r['n_images']} images, {r['n_no_face']} without a face, cache {r['cache']} then {coarse['benchmarks']['lfw']['cache']}")
    for far, res in (("1e-3", results), ("1e-2", coarse)):
        g = res["benchmarks"]["lfw"]["bias"]["gender"]
        print(f"-- gender bias at FAR {far}: threshold {g['threshold']:.4f}")
        for name, rep in g["groups"].items():
            print(f"   {name}: accuracy {100 * rep['accuracy']:.2f}% +- {100 * rep['accuracy_std']:.2f}, FMR {rep['fmr']:.5f} ({rep['n_impostor']} impostors), "
                  f"FNMR {rep['fnmr']:.4f} ({rep['n_genuine']} genuine)")
        for name, rep in g["other_groups"].items():
            print(f"   {name}: FMR {rep['fmr']:.5f} ({rep['n_impostor']} impostors)")
        s = g["accuracy_summary"]
        print(f"   STD {100 * s['std']:.3f} pts, SER {s['ser']}, FDR {g['fdr']:.4f}, GARBE {g['garbe']:.4f}, "
              f"FMR max/min {g['fmr_max_min_ratio']}, FNMR max/min {g['fnmr_max_min_ratio']}")
    print("plots:", ", ".join(p for p in results["files"] + coarse["files"] if p.endswith(".png")))
    return {"far_1e-3": results, "far_1e-2": coarse}


def _utk_labels(path: Path) -> tuple[str | None, str | None, str | None]:
    """(race, gender, age band) from ``age_gender_race_date.jpg.chip.jpg``; None when a field is
    absent (two files lack the race: their third field is the date)."""
    parts = path.name.split("_") + ["", "", ""]
    age = int(parts[0]) if parts[0].isdigit() else -1
    band = next((name for low, high, name in AGE_BANDS if low <= age <= high), None)
    return RACES.get(parts[2]), GENDERS.get(parts[1]), band


def _random_pairs(rng, members: np.ndarray, others: np.ndarray | None, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs of distinct images: both in ``members`` (others None) or one in each set;
    all pairs when there are fewer than ``count``."""
    if others is None:
        total = members.size * (members.size - 1) // 2
        if total <= count:
            i, j = np.triu_indices(members.size, k=1)
            return members[i], members[j]
        a, b = rng.integers(0, members.size, (2, int(count * 1.1) + 16))
        keep = a != b
        a, b = np.minimum(a[keep], b[keep])[:count], np.maximum(a[keep], b[keep])[:count]
        return members[a], members[b]
    return members[rng.integers(0, members.size, count)], others[rng.integers(0, others.size, count)]


def run_utkface(model_dir: Path, shared: Path, output: Path, per_group: int = 200_000, population: int = 1_000_000) -> dict:
    """Part 3: FMR per race / gender / age band from impostor pairs of UTKFace part 1."""
    paths = sorted((shared / "data" / "utkface_part1").rglob("*.jpg"))
    labels = np.array([_utk_labels(p) for p in paths], dtype=object)  # (N, 3): race, gender, age band
    # Part 1 is dominated by children (3,925 of 9,780 under 18, unevenly across races): race among
    # adults only separates the race effect from the age effect.
    adult_race = np.where(np.isin(labels[:, 2], ["0-17", None]), None, labels[:, 0])
    labels = np.column_stack([labels, adult_race])
    embedder = FaceEmbedder.from_pretrained(model_dir, batch_size=128, flip="concat")
    embedder.model.to(memory_format=__import__("torch").channels_last)
    preprocess, describe = build_preprocess(embedder.model.config.face_size, "yunet", yunet_path(shared))
    start = time.perf_counter()
    sources = [str(p) for p in paths]
    embeddings, info = embed_images(embedder, sources, [image_key(s) for s in sources], preprocess,
                                    {**describe, "benchmark": "utkface_part1"}, EmbeddingCache(output / "embedding_cache"),
                                    model_fingerprint(embedder.model, embedder.image_processor))
    print(f"\n== UTKFace part 1: {len(paths)} images embedded in {time.perf_counter() - start:.0f} s (cache {info['cache']}), "
          f"{info['n_no_face']} without a face (centre crop used)")
    rng = np.random.default_rng(0)
    everyone = np.arange(len(paths))
    i, j = _random_pairs(rng, everyone, None, population)
    population_scores = pair_scores(embeddings, i, j)  # blocked: gathering 1M rows at once would take 1 GB
    threshold = impostor_threshold(population_scores, 1e-3)
    print(f"threshold at FAR 1e-3 over {i.size:,} uniformly drawn impostor pairs: {threshold:.4f}")
    reports = {}
    out = output / "utkface"
    for column, grouping in enumerate(("race", "gender", "age", "race_adults")):
        values = labels[:, column]
        names = sorted({v for v in values if v is not None})
        firsts, seconds = zip(*(_random_pairs(rng, np.flatnonzero(values == name), None, per_group) for name in names))
        a, b = np.concatenate(firsts), np.concatenate(seconds)
        report = impostor_fmr_report(pair_scores(embeddings, a, b), values[a], far=1e-3, threshold=threshold)
        # Cross-group impostors are reported beside the groups, not ranked with them (the least similar pairs).
        known = np.flatnonzero(np.not_equal(values, None))
        a, b = _random_pairs(rng, known, known, 2 * per_group)
        cross = np.flatnonzero(values[a] != values[b])[:per_group]
        mixed = pair_scores(embeddings, a[cross], b[cross]) >= threshold
        report["other_groups"] = {MIXED_GROUP: {"fmr": float(mixed.mean()), "fmr_std_error": float(np.sqrt(mixed.mean() * (1 - mixed.mean()) / mixed.size)),
                                                "false_matches": int(mixed.sum()), "n_impostor": int(mixed.size)}}
        report["n_images"] = {name: int(np.count_nonzero(values == name)) for name in names}
        reports[grouping] = report
        rows = {**report["groups"], **report["other_groups"]}
        plot = plot_group_bars({k: r["fmr"] for k, r in rows.items()}, {k: r["fmr_std_error"] for k, r in rows.items()},
                               out / f"utkface_fmr_{grouping}.png", ylabel="FMR (± binomial SE)",
                               title=f"UTKFace part 1: FMR by {grouping} (threshold at FAR 1e-3)")
        ratio = "unbounded" if report["fmr_max_min_ratio"] is None else f"{report['fmr_max_min_ratio']:.2f}"
        print(f"-- by {grouping}: FMR max/min {ratio}, Gini {report['fmr_gini']:.3f} (over the groups); plot {plot}")
        for name, r in rows.items():
            images = "" if name == MIXED_GROUP else f", {report['n_images'][name]} images"
            print(f"   {name:>7}: FMR {r['fmr']:.5f} +- {r['fmr_std_error']:.5f} ({r['false_matches']} / {r['n_impostor']:,} pairs{images})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "utkface_fmr.json").write_text(json.dumps({"threshold": threshold, "population_pairs": int(i.size), **reports}, indent=2))
    return reports


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--output", type=Path, default=Path("/tmp/hf_facerec_eval"))
    parser.add_argument("--parts", default="lfw,utkface,variants")
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "lfw" / "pairs.txt").is_file():
        raise SystemExit(f"needs the research data under {args.shared}/data and {args.shared}/models")
    parts = set(args.parts.split(","))
    model_dir = convert_model(args.shared, args.output)
    if "lfw" in parts:
        run_lfw(model_dir, args.shared, args.output)
    if "utkface" in parts:
        run_utkface(model_dir, args.shared, args.output)
    if "variants" in parts:
        _load_script("eval_real_variants").main(["--shared", str(args.shared), "--output", str(args.output), "--model", str(model_dir)])


if __name__ == "__main__":
    main()
