"""The search's results plot: best reward so far against trials per method, and the searched loss's target logit
against the baseline margin's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._files import atomic_write


def target_logit_curve(margin_type: str, scale: float, margin_kwargs: dict, theta: np.ndarray) -> np.ndarray:
    """The positive logit (B,) a margin gives at angles ``theta`` (B,) radians, by running the margin itself."""
    import torch

    from ..models.margins import build_margin_penalty

    margin = build_margin_penalty(margin_type, scale, **margin_kwargs).eval()
    cosine = torch.from_numpy(np.cos(theta)).float().unsqueeze(1)
    return margin(cosine, torch.zeros(len(theta), dtype=torch.long)).squeeze(1).numpy()


def plot_search(curves: dict[str, np.ndarray], path: str | Path, searched_loss: dict | None = None,
                baseline_loss: dict | None = None, title: str = "Comprehensive search") -> None:
    """``curves``: method -> (n_trials,) best reward so far. ``searched_loss`` / ``baseline_loss``: dicts with
    margin_type, margin_scale, margin_kwargs (the best trial's and e.g. ArcFace s=64 m=0.5), drawn on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if searched_loss else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.0 * panels, 4.2), squeeze=False)
    ax = axes[0, 0]
    for method, curve in curves.items():
        curve = np.asarray(curve, dtype=float)
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=method)
    ax.set_xlabel("trial")
    ax.set_ylabel("best reward so far")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if searched_loss:
        ax = axes[0, 1]
        theta = np.linspace(0.0, math.pi, 181)
        for name, loss in (("searched", searched_loss), ("baseline", baseline_loss)):
            if loss:
                logit = target_logit_curve(loss["margin_type"], loss["margin_scale"], loss.get("margin_kwargs") or {},
                                           theta)
                ax.plot(np.degrees(theta), logit, label=f"{name}: {loss['margin_type']} s={loss['margin_scale']:g} "
                        f"{loss.get('margin_kwargs') or ''}")
        ax.plot(np.degrees(theta), (searched_loss["margin_scale"]) * np.cos(theta), "k:", label="no margin (s_neg cos)")
        ax.set_xlabel("angle to the class center (degrees)")
        ax.set_ylabel("target logit")
        ax.set_title("searched loss vs baseline margin")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
