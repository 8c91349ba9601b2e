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
