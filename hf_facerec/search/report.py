"""The cleaning report: ``cleaning.json`` (settings and counts per rule), ``cleaning.csv`` (every removed or
relabelled image with its rule, score and reason) and ``cleaning.png`` (example thumbnails per rule)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .._files import atomic_write, check_output_dir
from .cleaning import RULES, CleaningResult

_CSV_FIELDS = ("index", "rule", "label", "new_label", "score", "detail", "path")


def _paths(dataset, indices: list[int]) -> list[str]:
    """The file path of each row ``indices`` of the dataset's image column ("" for in-memory images)."""
    if dataset is None or "image" not in dataset.column_names or not indices:
        return [""] * len(indices)
    import datasets

    cells = dataset.cast_column("image", datasets.Image(decode=False)).select(indices)["image"]
    return [(c.get("path") or "") if isinstance(c, dict) else (c if isinstance(c, str) else "") for c in cells]


def write_cleaning_report(result: CleaningResult, output_dir, dataset=None, examples: int = 6) -> dict:
    """Write the three report files into ``output_dir``; ``dataset`` (the uncleaned one) gives the thumbnails
    and image paths. Returns the JSON summary."""
    out = check_output_dir(output_dir, "cleaning report folder")
    summary = {"config": result.config, "counts": result.counts}
    with atomic_write(out / "cleaning.json") as handle:
        json.dump(summary, handle, indent=2)
    with atomic_write(out / "cleaning.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        paths = _paths(dataset, [record["index"] for record in result.records])
        for record, path in zip(result.records, paths):
            writer.writerow({**record, "path": path})
    if dataset is not None and "image" in dataset.column_names:
        plot_examples(result, dataset, out / "cleaning.png", examples)
    return summary


def plot_examples(result: CleaningResult, dataset, path: Path, examples: int = 6) -> None:
    """One row per rule that touched something: up to ``examples`` thumbnails, the image's old label (and the
    label it was merged into) and the rule's score as titles."""
    import datasets
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.images import load_rgb
    from .cleaning import _image_source

    rows = [(rule, [r for r in result.records if r["rule"] == rule][:examples]) for rule in (*RULES, "small")]
    rows = [(rule, records) for rule, records in rows if records]
    raw = dataset.cast_column("image", datasets.Image(decode=False))
    fig, axes = plt.subplots(max(len(rows), 1), examples, figsize=(1.6 * examples, 1.9 * max(len(rows), 1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not rows:
        axes[0, 0].set_title("no image removed or merged", fontsize=9, loc="left")
    for r, (rule, records) in enumerate(rows):
        axes[r, 0].text(-0.15, 0.5, rule, rotation=90, va="center", ha="right", transform=axes[r, 0].transAxes)
        for c, record in enumerate(records):
            image = load_rgb(_image_source(raw[record["index"]]["image"]))
            image.thumbnail((96, 96))
            axes[r, c].imshow(image)
            new = f"->{record['new_label']}" if rule == "merge" else ""
            axes[r, c].set_title(f"id {record['label']}{new}  {record['score']:.2f}", fontsize=7)
    fig.suptitle("Cleaning: examples per rule (label, score)", fontsize=10)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
