"""A checkpoint saved before the package was reorganised still loads: its config.json (kept as a fixture, saved
from main on 2026-12-02: IResNet backbone, combined margin, Partial FC 0.5) builds a model whose state dict has
exactly the keys, dtypes and shapes that checkpoint's weights had, so its safetensors file loads without a
missing or unexpected key. No weights are committed; the key list stands in for them."""

import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageClassification

import hf_facerec  # noqa: F401  (registers the Auto classes)
from hf_facerec import FaceRecConfig, FaceRecForMarginClassification

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_checkpoint"


def test_old_config_builds_the_same_state_dict(tmp_path):
    config = AutoConfig.from_pretrained(FIXTURE)
    assert isinstance(config, FaceRecConfig) and config.margin_type == "combined"
    assert config.margin_kwargs == {"m1": 1.0, "m2": 0.3, "m3": 0.2} and config.partial_fc_sample_rate == 0.5
    model = FaceRecForMarginClassification(config)
    expected = json.loads((FIXTURE / "state_dict_keys.json").read_text())
    got = {key: [str(value.dtype).replace("torch.", ""), list(value.shape)] for key, value in model.state_dict().items()}
    assert got == expected


def test_old_checkpoint_folder_loads_exactly(tmp_path):
    """Weights written under the old config (as a checkpoint folder would hold them) load back bit for bit."""
    torch.manual_seed(0)
    model = FaceRecForMarginClassification(AutoConfig.from_pretrained(FIXTURE))
    folder = tmp_path / "old_checkpoint"
    model.save_pretrained(folder)
    (folder / "config.json").write_text((FIXTURE / "config.json").read_text())  # the old file, as saved then
    loaded = AutoModelForImageClassification.from_pretrained(folder)
    assert type(loaded) is FaceRecForMarginClassification
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    pixels = torch.linspace(-1, 1, 2 * 3 * 112 * 112).reshape(2, 3, 112, 112)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(pixels).embeddings, loaded(pixels).embeddings)
