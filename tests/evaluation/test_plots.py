"""Plots: each writes a non-empty PNG and rejects malformed input."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from hf_facerec.evaluation import det_curve, plots, roc_curve  # noqa: E402

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores(seed=0, n=400):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return rng.normal(labels * 0.5, 0.2), labels


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == _PNG_MAGIC and len(data) > 1000


def test_all_plots_write_pngs(tmp_path):
    scores, labels = _scores()
    other = _scores(1)
    roc = {"model A": roc_curve(scores, labels)[:2], "model B": roc_curve(*other)[:2]}
    det = {"model A": det_curve(scores, labels)[:2]}
    _assert_png(plots.plot_roc(roc, tmp_path / "roc.png"))
    _assert_png(plots.plot_det(det, tmp_path / "nested" / "det.png"))  # parent folders are created
    _assert_png(plots.plot_score_histogram(scores, labels, tmp_path / "hist.png", threshold=0.25))
    out = plots.plot_group_bars({"A": 0.97, "B": 0.95}, {"A": 0.01, "B": 0.02}, tmp_path / "bars.png", ylabel="accuracy")
    _assert_png(out)
    assert out == tmp_path / "bars.png"
    _assert_png(plots.plot_group_bars({"A": 0.97}, None, tmp_path / "bars1.png", ylabel="accuracy"))


def test_plots_do_not_touch_pyplot(tmp_path):
    # The OO API keeps no global figure state and never selects a GUI backend.
    before = "matplotlib.pyplot" in sys.modules
    plots.plot_roc({"m": roc_curve(*_scores())[:2]}, tmp_path / "roc.png")
    assert ("matplotlib.pyplot" in sys.modules) == before


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="non-empty dict"):
        plots.plot_roc({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="equal length"):
        plots.plot_det({"m": (np.zeros(3), np.zeros(2))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        plots.plot_roc({"m": (np.array([0, np.nan]), np.array([0, 1]))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="tuple"):
        plots.plot_roc({"m": np.zeros(3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="one class"):
        plots.plot_score_histogram([0.1, 0.2], [1, 1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="threshold"):
        plots.plot_score_histogram([0.1, 0.2], [0, 1], tmp_path / "x.png", threshold=np.inf)
    with pytest.raises(ValueError, match="lacks groups"):
        plots.plot_group_bars({"A": 1.0, "B": 0.5}, {"A": 0.1}, tmp_path / "x.png", ylabel="y")
    with pytest.raises(ValueError, match="NaN"):
        plots.plot_group_bars({"A": np.nan}, None, tmp_path / "x.png", ylabel="y")
    assert not (tmp_path / "x.png").exists()


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plots save, to read back what a reader of the PNG sees (legend, labels, bars)."""
    figures = []
    save = plots._save

    def keep(fig, path, caption=None):
        figures.append(fig)
        return save(fig, path, caption)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_roc_legend_carries_auc(tmp_path, drawn):
    from hf_facerec.evaluation import roc_auc

    scores, labels = _scores()
    plots.plot_roc({"model A": roc_curve(scores, labels)[:2]}, tmp_path / "roc.png")
    plots.plot_roc({"model A": roc_curve(scores, labels)[:2]}, tmp_path / "roc2.png", aucs={"model A": 0.5})
    first, second = ([t.get_text() for t in fig.axes[0].get_legend().get_texts()] for fig in drawn)
    assert first == [f"model A (AUC {roc_auc(scores, labels):.4f})"] and second == ["model A (AUC 0.5000)"]


def test_histogram_threshold_line_is_named(tmp_path, drawn):
    scores, labels = _scores()
    plots.plot_score_histogram(scores, labels, tmp_path / "h.png", threshold=0.25, threshold_label="best-accuracy threshold")
    assert "best-accuracy threshold = 0.250" in [t.get_text() for t in drawn[0].axes[0].get_legend().get_texts()]


def _bars(fig):
    from matplotlib.container import BarContainer

    return next(c for c in fig.axes[0].containers if isinstance(c, BarContainer))


def _error_bar_ends(fig) -> np.ndarray:
    """(K, 2) lower/upper y of the drawn error bars."""
    segments = _bars(fig).errorbar.lines[2][0].get_segments()
    return np.array([[seg[0][1], seg[1][1]] for seg in segments])


def test_error_bars_never_leave_0_1_and_bars_carry_n(tmp_path, drawn):
    # Accuracy 0.95 +- 0.1 would reach 1.05; FMR 0.02 +- 0.05 would reach -0.03: both are clipped.
    plots.plot_group_bars({"a": 0.95, "b": 0.02}, {"a": 0.1, "b": 0.05}, tmp_path / "bars.png", ylabel="rate",
                          counts={"a": 1000, "b": 177}, error_label="+- 1 STD")
    ends = _error_bar_ends(drawn[0])
    assert ends.ravel().tolist() == pytest.approx([0.85, 1.0, 0.0, 0.07])
    labels = [t.get_text() for t in drawn[0].axes[0].texts if "n=" in t.get_text()]
    assert labels == ["0.95\nn=1000", "0.02\nn=177"]
    caption = [t.get_text() for t in drawn[0].texts]
    assert caption == ["Error bars: +- 1 STD, clipped to [0, 1]; n: pairs behind each bar."]


def test_interval_error_bars_and_unmeasurable_bars(tmp_path, drawn):
    # A Wilson interval (low, high) is drawn as given; a 9-impostor group is hatched "n/a", never a bare 0.
    plots.plot_group_bars({"a": 0.001, "b": 0.0}, {"a": (0.0005, 0.002), "b": (0.0, 0.299)}, tmp_path / "fmr.png",
                          ylabel="FMR", counts={"a": 3000, "b": 9}, error_label="Wilson score 95% interval",
                          unmeasurable={"b": "n=9 < 1000"})
    assert _error_bar_ends(drawn[0]).ravel().tolist() == pytest.approx([0.0005, 0.002, 0.0, 0.299])
    texts = [t.get_text() for t in drawn[0].axes[0].texts]
    assert "n/a\n(n=9 < 1000)" in texts and "0.001\nn=3000" in texts
    bars = _bars(drawn[0]).patches
    assert bars[1].get_hatch() == "//" and bars[0].get_hatch() is None
    assert "Wilson score 95% interval" in drawn[0].texts[0].get_text() and "n/a" in drawn[0].texts[0].get_text()
    with pytest.raises(ValueError, match="contain the value"):
        plots.plot_group_bars({"a": 0.5}, {"a": (0.6, 0.7)}, tmp_path / "x.png", ylabel="y")
