"""The README's main job, shrunk: trains a few steps on synthetic identities and writes every artefact."""

import json

import numpy as np
import torch
from transformers import AutoModel

import hf_facerec  # noqa: F401  (registers the Auto classes)
from hf_facerec.cli import main
from hf_facerec.cli.quickstart import _ArrayFaces
from hf_facerec.data.augment import make_train_transform
from hf_facerec.models import FaceRecImageProcessor, FaceRecModel


def test_quickstart_writes_model_results_plots_and_card(tmp_path):
    out = tmp_path / "qs"
    code = main([
        "quickstart", "--output", str(out), "--identities", "12", "--images-per-identity", "4",
        "--eval-identities", "40", "--pairs-per-fold", "20", "--steps", "6", "--batch-size", "16", "--far", "0.1",
    ])
    assert code == 0
    summary = json.loads((out / "results.json").read_text())
    verification = summary["results"]["verification"]
    assert 0.0 <= verification["accuracy"] <= 1.0 and verification["n_genuine"] == 100
    assert set(summary["results"]["bias"]["groups"]) == {"A", "B", "C"}
    assert set(summary["timings_s"]) == {"data", "train", "save", "evaluate"}
    for name in ("roc.png", "det.png", "scores.png", "bias_accuracy.png", "bias_fnmr.png"):
        assert (out / name).stat().st_size > 1000, name
    model = AutoModel.from_pretrained(out / "model")
    assert isinstance(model, FaceRecModel)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).embeddings.shape == (1, 128)
    card = (out / "model" / "README.md").read_text()
    assert "model-index" in card and "Demographic differentials" in card


def test_array_faces_batches_are_the_processor_output_of_the_rows_asked_for():
    images = np.random.default_rng(0).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    processor = FaceRecImageProcessor()
    data = _ArrayFaces(images, np.array([3, 1, 4, 1, 5]), make_train_transform(processor))
    rows = data.__getitems__([4, 0])
    expected = processor(images=[images[4], images[0]], return_tensors="pt")["pixel_values"]
    assert len(data) == 5 and [int(row["labels"]) for row in rows] == [5, 3]
    torch.testing.assert_close(torch.stack([row["pixel_values"] for row in rows]), expected, rtol=0, atol=0)
    torch.testing.assert_close(data[2]["pixel_values"], processor(images=[images[2]], return_tensors="pt")
                               ["pixel_values"][0], rtol=0, atol=0)


def test_quickstart_rejects_zero_workers(tmp_path, capsys):
    assert main(["quickstart", "--workers", "0", "--output", str(tmp_path / "q")]) == 2
    assert "--workers" in capsys.readouterr().err
