"""The data-scale protocol of the foundation-model study: a grid of {identity counts} x {finetune modes}.

Each cell trains with the same training config (`hf-facerec train`'s YAML/flags) on the first (or a seeded
random) K identities of the dataset, in one finetune mode, then evaluates the final model on the pair sets.
Cells whose `result.json` exists are skipped, so an interrupted grid resumes where it stopped.

    hf-facerec data-scale --config configs/train/dinov2_small_lora.yaml --identity-counts 1000,5000,10000,all \
        --modes lora,full,scratch --pairs lfw=data/lfw.bin --output runs/data_scale

Writes OUTPUT/results.json, OUTPUT/results.md and OUTPUT/accuracy_vs_identities.png (one line per mode).
"""

from __future__ import annotations

import json
from pathlib import Path

from .arguments import FINETUNE_MODES


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
    """Train one grid cell as `hf-facerec train` would (same config, K identities, one mode)."""
    from .build import parse_train_arguments, train

    argv = ["--config", config, "--finetune_mode", mode, "--output_dir", str(cell_dir), *extra]
    if count is not None:
        argv += ["--max_identities", str(count)]
    train(*parse_train_arguments(argv))


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


def run_grid(config: str, identity_counts: str, modes: str, pairs: list[str], output: str | Path,
             flip: str = "sum", train_args: list[str] | None = None) -> list[dict]:
    """Train and evaluate every cell (skipping finished ones); write results.json/.md and the plot.

    Args:
        config: the training config shared by every cell. identity_counts: ``"1000,5000,all"``.
        modes: ``"lora,full,scratch"``. pairs: ``["name=path", ...]`` pair sets. output: the grid folder.
        flip: flip TTA at evaluation. train_args: extra `hf-facerec train` flags for every cell.
    Returns:
        One row per cell: ``{"identities", "requested", "mode", "metrics"}``.
    """
    counts, modes = _counts(identity_counts), _modes(modes)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for count in counts:
        for mode in modes:
            cell_dir = output / f"{count or 'all'}_{mode}"
            result_path = cell_dir / "result.json"
            if not result_path.exists():
                train_cell(config, count, mode, cell_dir, list(train_args or []))
                num_identities = json.loads((cell_dir / "config.json").read_text())["num_identities"]
                metrics = evaluate_cell(cell_dir, pairs, flip)
                result_path.write_text(json.dumps(
                    {"identities": num_identities, "requested": count, "mode": mode, "metrics": metrics}, indent=2))
            rows.append(json.loads(result_path.read_text()))
            print(f"[data-scale] {rows[-1]['identities']} identities, {mode}: {rows[-1]['metrics']}")
    pair_names = sorted({key[: -len("_accuracy")] for key in rows[0]["metrics"] if key.endswith("_accuracy")})
    (output / "results.json").write_text(json.dumps(rows, indent=2))
    (output / "results.md").write_text(_markdown(rows, pair_names))
    _plot(rows, pair_names[0], output / "accuracy_vs_identities.png")
    print((output / "results.md").read_text())
    return rows
