"""PNG plots of the evaluation numbers: ROC, DET, score histograms, per-group bars.

matplotlib is imported lazily (only the ``[eval]`` extra needs it) and used through its
object-oriented API with the Agg canvas: no pyplot global state, no GUI backend, safe in
threads and on headless machines. Every function saves one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._checks import _as_labels, _as_scores

__all__ = ["plot_det", "plot_group_bars", "plot_roc", "plot_score_histogram"]


def _new_axes(figsize=(6.0, 4.5)):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'hf_facerec[eval]'") from err
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _as_curve(name, curve) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(curve, (tuple, list)) or len(curve) < 2:
        raise ValueError(f"curve {name!r} must be a tuple (x (n,), y (n,)), e.g. roc_curve(...)[:2]")
    x, y = (np.asarray(c, dtype=np.float64) for c in curve[:2])
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"curve {name!r}: x and y must be non-empty 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"curve {name!r} contains NaN or inf")
    return x, y


def _check_curves(curves) -> dict:
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty dict {name: (x, y)}")
    return {str(name): _as_curve(name, curve) for name, curve in curves.items()}


def _log_floor(values: list[np.ndarray]) -> float:
    """Smallest positive value over the curves: the left/bottom edge of a log axis (0 cannot be shown)."""
    positive = np.concatenate([v[v > 0] for v in values])
    return float(positive.min()) if positive.size else 1e-6


def plot_roc(curves, path, title: str = "ROC") -> Path:
    """TAR against FAR on a log FAR axis, one line per model.

    Args:
        curves: ``{name: (fpr (n,), tpr (n,))}``, e.g. ``roc_curve(scores, labels)[:2]``.
        path: output PNG.
    """
    curves = _check_curves(curves)
    fig, ax = _new_axes()
    for name, (fpr, tpr) in curves.items():
        keep = fpr > 0  # FAR = 0 has no place on a log axis
        ax.step(fpr[keep], tpr[keep], where="post", label=name)
    ax.set(xscale="log", xlim=(_log_floor([c[0] for c in curves.values()]), 1.0), ylim=(0.0, 1.01))
    ax.set(xlabel="False accept rate (FAR)", ylabel="True accept rate (TAR)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_det(curves, path, title: str = "DET") -> Path:
    """FNMR against FMR on log-log axes (NIST FRVT style), one line per model.

    Args:
        curves: ``{name: (fmr (n,), fnmr (n,))}``, e.g. ``det_curve(scores, labels)[:2]``.
        path: output PNG.
    """
    curves = _check_curves(curves)
    fig, ax = _new_axes()
    for name, (fmr, fnmr) in curves.items():
        keep = (fmr > 0) & (fnmr > 0)
        ax.step(fmr[keep], fnmr[keep], where="post", label=name)
    ax.set(xscale="log", yscale="log")
    ax.set(xlim=(_log_floor([c[0] for c in curves.values()]), 1.0), ylim=(_log_floor([c[1] for c in curves.values()]), 1.0))
    ax.set(xlabel="False match rate (FMR)", ylabel="False non-match rate (FNMR)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_score_histogram(scores, labels, path, threshold: float | None = None, bins: int = 50, title: str = "Scores") -> Path:
    """Density histograms of genuine and impostor scores, with an optional threshold line.

    Args:
        scores: (N,) similarities. labels: (N,) binary (1 = genuine). path: output PNG.
    """
    scores = _as_scores(scores)
    is_genuine = _as_labels(labels, scores.size)
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    edges = np.histogram_bin_edges(scores, bins=bins)  # shared edges: the two classes line up
    fig, ax = _new_axes()
    ax.hist(scores[~is_genuine], bins=edges, density=True, alpha=0.55, label=f"impostor (n={np.count_nonzero(~is_genuine)})")
    ax.hist(scores[is_genuine], bins=edges, density=True, alpha=0.55, label=f"genuine (n={np.count_nonzero(is_genuine)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="Similarity score", ylabel="Density", title=title)
    ax.legend()
    return _save(fig, path)


def plot_group_bars(values, errors, path, ylabel: str, title: str = "") -> Path:
    """One bar per group (e.g. accuracy or FNMR per ethnicity), optional error bars.

    Args:
        values: ``{group: value}``. errors: ``{group: half-width}`` (e.g. k-fold STD) or None.
        path: output PNG. ylabel: what the bars measure.
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values must be a non-empty dict {group: value}")
    names = [str(k) for k in values]
    heights = np.asarray(list(values.values()), dtype=np.float64)
    if not np.isfinite(heights).all():
        raise ValueError("values contains NaN or inf")
    yerr = None
    if errors is not None:
        missing = [k for k in values if k not in errors]
        if missing:
            raise ValueError(f"errors lacks groups {missing}")
        yerr = np.asarray([errors[k] for k in values], dtype=np.float64)
        if not np.isfinite(yerr).all() or (yerr < 0).any():
            raise ValueError("errors must be finite and non-negative")
    fig, ax = _new_axes(figsize=(max(4.0, 0.9 * len(names) + 2.0), 4.5))
    bars = ax.bar(names, heights, yerr=yerr, capsize=4, color="tab:blue", alpha=0.8)
    ax.bar_label(bars, fmt="%.4g", padding=2)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
