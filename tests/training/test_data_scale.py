"""The data-scale grid on a tiny config: trains every cell, writes the table and the plot, resumes."""

import json
import pickle

import pytest

from hf_facerec.cli import main
from hf_facerec.data.synthetic import make_synthetic_pairs
from hf_facerec.training.data_scale import _counts, _modes

CONFIG = """
backbone: tiny-vit
image_size: 64
embedding_size: 32
train_dataset: "synthetic:12:4"
augmentation: none
margin_type: cosface
margin_scale: 16.0
per_device_train_batch_size: 16
max_steps: 3
learning_rate: 1.0e-3
save_strategy: "no"
use_cpu: true
report_to: none
disable_tqdm: true
"""


def test_grid_trains_each_cell_and_writes_the_table(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    pairs = make_synthetic_pairs(num_identities=20, pairs_per_fold=4, image_size=64)
    images = pairs.cast_column("image1", pairs.features["image1"].__class__(decode=False))
    images = images.cast_column("image2", images.features["image2"].__class__(decode=False))
    bins = [image["bytes"] for row in images for image in (row["image1"], row["image2"])]
    (tmp_path / "syn.bin").write_bytes(pickle.dumps((bins, list(pairs["is_same"]))))
    args = ["data-scale", "--config", str(config), "--identity-counts", "6,all", "--modes", "scratch,linear_probe",
            "--pairs", f"syn={tmp_path / 'syn.bin'}", "--output", str(tmp_path / "grid"), "--flip", "none"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert [(r["identities"], r["mode"]) for r in rows] == [(6, "scratch"), (6, "linear_probe"),
                                                           (12, "scratch"), (12, "linear_probe")]
    assert all(0.0 <= r["metrics"]["syn_accuracy"] <= 1.0 for r in rows)
    assert "| 12 | linear_probe |" in (tmp_path / "grid" / "results.md").read_text()
    assert (tmp_path / "grid" / "accuracy_vs_identities.png").stat().st_size > 1000
    # A second run finds every cell's result and trains nothing.
    (tmp_path / "grid" / "6_scratch" / "model.safetensors").unlink()
    assert main(args) == 0


def test_bad_grid_specs():
    assert _counts("10,all") == [10, None]
    with pytest.raises(ValueError, match="positive integers"):
        _counts("ten")
    with pytest.raises(ValueError, match="modes"):
        _modes("lora,magic")
