"""The few-shot benchmark's summary (mean and spread over seeds), markdown table and plot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .._files import atomic_write

__all__ = ["summarise", "write_markdown", "write_plot"]


def summarise(rows: list[dict], tasks) -> list[dict]:
    """One entry per (task, pre-training, mode, fraction): the headline metric's mean / std over seeds (and of
    every other score's mean)."""
    metric = {t.name: t.metric for t in tasks}
    groups = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["pretraining"], row["mode"], row["fraction"])].append(row)
    out = []
    for (task, pretraining, mode, fraction), members in groups.items():
        values = [m["scores"][metric[task]] for m in members if m["scores"].get(metric[task]) is not None]
        means = {k: float(np.mean([m["scores"][k] for m in members if m["scores"].get(k) is not None]))
                 for k in members[0]["scores"] if any(m["scores"].get(k) is not None for m in members)}
        out.append({"task": task, "pretraining": pretraining, "mode": mode, "fraction": fraction,
                    "metric": metric[task], "mean": float(np.mean(values)) if values else None,
                    "std": float(np.std(values)) if values else None, "seeds": len(members),
                    "n_train": members[0]["n_train"], "means": means})
    return out


def write_markdown(result: dict, path: Path) -> Path:
    """A table: one row per (task, pre-training, mode), one column per label fraction, ``mean ± std``."""
    summary, fractions = result["summary"], sorted(result["config"]["fractions"])
    cells = {(s["task"], s["pretraining"], s["mode"], s["fraction"]): s for s in summary}
    keys = sorted({(s["task"], s["pretraining"], s["mode"]) for s in summary})
    lines = ["| task | metric | pre-training | mode | " + " | ".join(f"{f:g}" for f in fractions) + " |",
             "|---|---|---|---|" + "---|" * len(fractions)]
    for task, pretraining, mode in keys:
        row = []
        for f in fractions:
            s = cells.get((task, pretraining, mode, f))
            row.append("-" if s is None or s["mean"] is None else f"{s['mean']:.4f} ± {s['std']:.4f} (n={s['n_train']})")
        metric = next(s["metric"] for s in summary if s["task"] == task)
        lines.append(f"| {task} | {metric} | {pretraining} | {mode} | " + " | ".join(row) + " |")
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def write_plot(result: dict, tasks, path: Path) -> Path:
    """Score against label fraction (log x), one panel per task, one line per pre-training (and mode)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = result["summary"]
    names = [t.name for t in tasks]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    several_modes = len(result["config"]["modes"]) > 1
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, i + 1)
        lines = sorted({(s["pretraining"], s["mode"]) for s in summary if s["task"] == task.name})
        for pretraining, mode in lines:
            pts = sorted((s["fraction"], s["mean"], s["std"]) for s in summary if s["task"] == task.name
                         and s["pretraining"] == pretraining and s["mode"] == mode and s["mean"] is not None)
            if not pts:
                continue
            x, y, e = (np.array(v, float) for v in zip(*pts))
            ax.errorbar(x * 100, y, yerr=e, marker="o", capsize=3,
                        label=f"{pretraining} ({mode})" if several_modes else pretraining)
        ax.set_xscale("log")
        ax.set_xlabel("labels used (%)")
        ax.set_ylabel(task.metric + ("" if task.higher_is_better else " (lower is better)"))
        ax.set_title(task.name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")
    return path
