"""PNG plots of the evaluation numbers: ROC, DET, score histograms, per-group bars.

matplotlib is imported lazily (only the ``[eval]`` extra needs it) and used through its
object-oriented API with the Agg canvas: no pyplot global state, no GUI backend, safe in
threads and on headless machines. Every function saves one PNG and returns its path.

Small samples are shown, not hidden: the ROC legend carries each curve's AUC, the histogram's
threshold line its name and value, and each group bar its n, its error bar clipped to [0, 1]
with a caption saying what the bars are, and a hatched "n/a" look when the value is unmeasurable
(:mod:`~hf_facerec.evaluation.sample_size`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hf_facerec._files import atomic_write

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


def _save(fig, path, caption: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if caption:  # below the axes, in the space tight_layout leaves free
        fig.text(0.5, 0.012, caption, ha="center", va="bottom", fontsize=7.5, wrap=True)
        fig.tight_layout(rect=(0, 0.09, 1, 1))
    else:
        fig.tight_layout()
    with atomic_write(path, "wb") as handle:  # a full disk leaves no 0-byte PNG: one OutputPathError naming it
        fig.savefig(handle, format="png")
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


def plot_roc(curves, path, title: str = "ROC", aucs: Mapping | None = None) -> Path:
    """TAR against FAR on a log FAR axis, one line per model, its AUC in the legend.

    Args:
        curves: ``{name: (fpr (n,), tpr (n,))}``, e.g. ``roc_curve(scores, labels)[:2]``.
        path: output PNG.
        aucs: ``{name: auc}`` (e.g. ``verification_report(...)["auc"]``, exact where a plotted
            curve is thinned); a name missing here gets the trapezoid area of its curve.
    """
    curves = _check_curves(curves)
    aucs = dict(aucs or {})
    fig, ax = _new_axes()
    for name, (fpr, tpr) in curves.items():
        keep = fpr > 0  # FAR = 0 has no place on a log axis
        auc = aucs.get(name)
        auc = float(np.trapezoid(tpr, fpr)) if auc is None else float(auc)
        ax.step(fpr[keep], tpr[keep], where="post", label=f"{name} (AUC {auc:.4f})")
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


def plot_score_histogram(
    scores, labels, path, threshold: float | None = None, bins: int = 50, title: str = "Scores",
    threshold_label: str = "threshold",
) -> Path:
    """Density histograms of genuine and impostor scores, with an optional named threshold line.

    Args:
        scores: (N,) similarities. labels: (N,) binary (1 = genuine). path: output PNG.
        threshold_label: what the threshold is (e.g. "best-accuracy threshold"); the legend
            reads ``"<label> = 0.312"``.
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
        ax.axvline(threshold, color="black", linestyle="--", label=f"{threshold_label} = {threshold:.3f}")
    ax.set(xlabel="Similarity score", ylabel="Density", title=title)
    ax.legend()
    return _save(fig, path)


def _intervals(values, errors, heights: np.ndarray, limits) -> np.ndarray | None:
    """Error bars as matplotlib's (2, K) lower/upper lengths from half-widths or (low, high) intervals, clipped to ``limits``."""
    if errors is None:
        return None
    missing = [k for k in values if k not in errors]
    if missing:
        raise ValueError(f"errors lacks groups {missing}")
    rows = []
    for k, h in zip(values, heights):
        e = np.asarray(errors[k], dtype=np.float64)
        if e.shape not in ((), (2,)) or not np.isfinite(e).all():
            raise ValueError(f"errors[{k!r}] must be a finite half-width or a (low, high) pair, got {errors[k]!r}")
        low, high = (h - e, h + e) if e.ndim == 0 else (e[0], e[1])
        if e.ndim == 0 and e < 0 or low > h or high < h:
            raise ValueError(f"errors must be non-negative and intervals must contain the value; {k!r}: {errors[k]!r} around {h}")
        rows.append((low, high))
    bounds = np.asarray(rows)
    if limits is not None:  # a rate's interval never leaves [0, 1]
        bounds = np.clip(bounds, *limits)
    return np.stack([heights - bounds[:, 0], bounds[:, 1] - heights])


def plot_group_bars(
    values, errors, path, ylabel: str, title: str = "", *, counts: Mapping | None = None,
    error_label: str | None = None, unmeasurable: Mapping | None = None, limits=(0.0, 1.0),
) -> Path:
    """One bar per group (e.g. accuracy or FNMR per ethnicity), optional error bars, n on each bar.

    Args:
        values: ``{group: value}``. errors: ``{group: half-width}`` (e.g. k-fold STD) or
            ``{group: (low, high)}`` (e.g. a Wilson interval), or None; drawn clipped to ``limits``
            (``None``: unclipped, for values that are not rates).
        path: output PNG. ylabel: what the bars measure.
        counts: ``{group: n}`` written under each value (``"n=177"``).
        error_label: what the error bars are (e.g. "Wilson score 95% interval"), for the caption.
        unmeasurable: ``{group: note}`` (e.g. ``{"b": "n=9 < 1000"}``): hatched bars labelled
            ``"n/a (note)"`` in place of a number (the value is still drawn, but not read as a measurement).
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values must be a non-empty dict {group: value}")
    names = [str(k) for k in values]
    heights = np.asarray(list(values.values()), dtype=np.float64)
    if not np.isfinite(heights).all():
        raise ValueError("values contains NaN or inf")
    yerr = _intervals(values, errors, heights, limits)
    unmeasurable = {str(k): str(v) for k, v in (unmeasurable or {}).items()}
    counts = {str(k): v for k, v in (counts or {}).items()}
    flagged = [name in unmeasurable for name in names]
    fig, ax = _new_axes(figsize=(max(4.5, 1.1 * len(names) + 2.0), 4.8))
    bars = ax.bar(names, heights, yerr=yerr, capsize=4, color=["0.75" if f else "tab:blue" for f in flagged],
                  alpha=0.85, edgecolor="0.3", error_kw={"ecolor": "0.2"})
    for bar, bad in zip(bars, flagged):
        bar.set_hatch("//" if bad else None)
    labels = []
    for name, h in zip(names, heights):
        n = f"\nn={counts[name]}" if name in counts else ""
        if name in unmeasurable:
            note = unmeasurable[name]
            n = "" if not n or n.strip() in note else f"{n.strip()}; "
            labels.append(f"n/a\n({n}{note})")
        else:
            labels.append(f"{h:.4g}{n}")
    ax.bar_label(bars, labels=labels, padding=2, fontsize=8)
    top = float(np.max(heights + (yerr[1] if yerr is not None else 0.0)))
    ax.set_ylim(min(0.0, float(heights.min())), top * 1.25 if top > 0 else 1.0)  # room for the labels
    if limits is not None:  # the headroom above 1 holds labels, not values: no ticks there
        ax.set_yticks([t for t in ax.get_yticks() if limits[0] <= t <= limits[1]])
    ax.set(ylabel=ylabel, title=title)
    ax.grid(True, axis="y", alpha=0.3)
    caption = []
    if yerr is not None:
        clipped = f", clipped to [{limits[0]:g}, {limits[1]:g}]" if limits else ""
        caption.append(f"Error bars: {error_label or 'as given'}{clipped}")
    if counts:
        caption.append("n: pairs behind each bar")
    if unmeasurable:
        caption.append("hatched n/a: too few pairs to be a measurement")
    return _save(fig, path, caption="; ".join(caption) + "." if caption else None)
