"""The data-scale protocol of the foundation-model study: a grid of {identity counts} x {finetune modes}.

Each cell trains with the same training config (`hf-facerec train`'s YAML/flags) on the first (or a seeded
random) K identities of the dataset, in one finetune mode, then evaluates the final model on the pair sets.
Cells whose `result.json` exists are skipped, so an interrupted grid resumes where it stopped.

    hf-facerec data-scale --config configs/train/dinov2_small_lora.yaml --identity-counts 1000,5000,10000,all \
        --modes lora,full,scratch --pairs lfw=data/lfw.bin --output runs/data_scale

Writes OUTPUT/results.json, OUTPUT/results.md and OUTPUT/accuracy_vs_identities.png (one line per mode).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..training.arguments import FINETUNE_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config (YAML/JSON) shared by every cell")
    parser.add_argument("--identity-counts", required=True, help="comma-separated counts, 'all' for every identity")
    parser.add_argument("--modes", default="lora,full,scratch", help="comma-separated finetune modes")
    parser.add_argument("--pairs", nargs="+", required=True, help="pair sets: name=path (.bin, pairs.txt, .csv)")
    parser.add_argument("--output", required=True, help="grid folder")
    parser.add_argument("--flip", default="sum", choices=["none", "sum", "concat"], help="flip TTA at evaluation")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="extra `hf-facerec train` flags for every cell (must come last)")


def _counts(spec: str) -> list[int | None]:
    counts = []
    for item in spec.split(","):
        item = item.strip()
        if item == "all":
            counts.append(None)
        elif item.isdigit() and int(item) > 0:
            counts.append(int(item))
        else:
            raise ValueError(f"identity counts are positive integers or 'all', got {item!r}")
    return counts


def _modes(spec: str) -> list[str]:
    modes = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(FINETUNE_MODES))
    if unknown or not modes:
        raise ValueError(f"modes must be among {FINETUNE_MODES}, got {modes}")
    return modes


def train_cell(config: str, count: int | None, mode: str, cell_dir: Path, extra: list[str]) -> None:
    """Train one grid cell with `hf-facerec train` (same config, K identities, one mode)."""
    from . import train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = ["--config", config, "--finetune_mode", mode, "--output_dir", str(cell_dir), *extra]
    if count is not None:
        argv += ["--max_identities", str(count)]
    train_cli.run(parser.parse_args(argv))


def evaluate_cell(cell_dir: Path, pairs: list[str], flip: str) -> dict[str, float]:
    from ..models import FaceRecImageProcessor, FaceRecModel
    from .callbacks import evaluate_pair_sets

    model = FaceRecModel.from_pretrained(cell_dir).eval()
    processor = FaceRecImageProcessor.from_pretrained(cell_dir)
    return evaluate_pair_sets(model, pairs, image_processor=processor, flip=flip, metric_key_prefix="")


def _markdown(rows: list[dict], pair_names: list[str]) -> str:
    header = "| identities | mode | " + " | ".join(f"{name} accuracy" for name in pair_names) + " |"
    lines = [header, "|" + "---|" * (2 + len(pair_names))]
    for row in rows:
        cells = [f"{row['metrics'][f'{name}_accuracy']:.4f}" for name in pair_names]
        lines.append(f"| {row['identities']} | {row['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], pair_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in dict.fromkeys(row["mode"] for row in rows):
        points = sorted((row["identities"], row["metrics"][f"{pair_name}_accuracy"]) for row in rows
                        if row["mode"] == mode)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("training identities")
    ax.set_ylabel(f"{pair_name} 10-fold accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    counts, modes = _counts(args.identity_counts), _modes(args.modes)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for count in counts:
        for mode in modes:
            cell_dir = output / f"{count or 'all'}_{mode}"
            result_path = cell_dir / "result.json"
            if not result_path.exists():
                train_cell(args.config, count, mode, cell_dir, args.train_args)
                num_identities = json.loads((cell_dir / "config.json").read_text())["num_identities"]
                metrics = evaluate_cell(cell_dir, args.pairs, args.flip)
                result_path.write_text(json.dumps(
                    {"identities": num_identities, "requested": count, "mode": mode, "metrics": metrics}, indent=2))
            rows.append(json.loads(result_path.read_text()))
            print(f"[data-scale] {rows[-1]['identities']} identities, {mode}: {rows[-1]['metrics']}")
    pair_names = sorted({key[: -len("_accuracy")] for key in rows[0]["metrics"] if key.endswith("_accuracy")})
    (output / "results.json").write_text(json.dumps(rows, indent=2))
    (output / "results.md").write_text(_markdown(rows, pair_names))
    _plot(rows, pair_names[0], output / "accuracy_vs_identities.png")
    print((output / "results.md").read_text())
    return 0
