"""The README's main job, shrunk: trains a few steps on synthetic identities and writes every artefact."""

import json

import torch
from transformers import AutoModel

import hf_facerec  # noqa: F401  (registers the Auto classes)
from hf_facerec.cli import main
from hf_facerec.models import FaceRecModel


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
    for name in ("roc.png", "det.png", "scores.png", "bias_accuracy.png", "bias_fnmr.png"):
        assert (out / name).stat().st_size > 1000, name
    model = AutoModel.from_pretrained(out / "model")
    assert isinstance(model, FaceRecModel)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).embeddings.shape == (1, 128)
    card = (out / "model" / "README.md").read_text()
    assert "model-index" in card and "Demographic differentials" in card
