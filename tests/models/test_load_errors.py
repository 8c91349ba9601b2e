"""A saved model folder that does not load raises one error naming the folder (FaceRecModel and FaceEmbedder,
hence evaluate and the Space), and NaN weights are refused at load, not found later as NaN embeddings."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel
from hf_facerec.models.modeling_facerec import ModelLoadError

from .tiny_backbones import tiny_backbone_config


@pytest.fixture
def folder(tmp_path):
    model = FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=8))
    model.save_pretrained(tmp_path / "saved_model")
    return tmp_path / "saved_model"


def test_nan_weights_are_refused_at_load_naming_folder_and_tensor(folder):
    weights = load_file(folder / "model.safetensors")
    name = next(k for k, v in weights.items() if k.startswith("embedding_head") and v.is_floating_point())
    weights[name][0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    for load in (FaceRecModel.from_pretrained, FaceEmbedder.from_pretrained):
        with pytest.raises(ModelLoadError, match=rf"saved_model: weight '{name}' holds NaN"):
            load(folder)


def test_truncated_weights_name_the_folder(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="saved_model: SafetensorError"):
        FaceRecModel.from_pretrained(folder)


def test_bad_config_values_and_deep_json_name_the_folder(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "image_size": 10**6}))
    with pytest.raises(ModelLoadError, match="saved_model: ValueError: image_size must be"):
        FaceEmbedder.from_pretrained(folder)
    (folder / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(OSError, match="saved_model/config.json' is not a valid JSON file"):
        FaceRecModel.from_pretrained(folder)


def test_a_good_folder_still_loads_exactly(folder):
    model = FaceRecModel.from_pretrained(folder)
    again = FaceRecModel.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_autoconfig_and_pipeline_name_the_folder_of_a_bad_config(folder):
    """transformers' own loaders (AutoConfig, hence pipeline() and AutoModel) build the config before any
    package code runs: its validation error still names the folder."""
    from transformers import AutoConfig, AutoModel

    import hf_facerec  # noqa: F401  (registers the Auto classes)

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "verification_thresholds": {"1e-03": "NaN"}}))
    for load in (AutoConfig.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=r"saved_model: config.verification_thresholds\['1e-03'\] = 'NaN'"):
            load(folder)


def test_transformers_loaders_name_a_deep_config_and_a_bad_processor(folder):
    """A config.json nested past the recursion limit, and a saved processor with std 0 or a 1e5-pixel side, are
    refused by AutoConfig / AutoImageProcessor (so pipeline()) with the file named, not a bare RecursionError."""
    from transformers import AutoConfig, AutoImageProcessor

    from hf_facerec import FaceRecImageProcessor

    FaceRecImageProcessor().save_pretrained(folder)
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    for bad, message in (({"image_std": [0.0, 0.0, 0.0]}, "image_std must be finite numbers > 0"),
                         ({"size": {"height": 100_000, "width": 100_000}}, "at most 4096 pixels")):
        (folder / "preprocessor_config.json").write_text(json.dumps({**settings, **bad}))
        with pytest.raises(ValueError, match=rf"preprocessor_config.json\): .*{message}"):
            AutoImageProcessor.from_pretrained(folder)
        with pytest.raises(ValueError, match=rf"saved_model: .*{message}"):
            FaceRecImageProcessor.from_pretrained(folder)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(OSError, match=r"saved_model/config.json' is not a valid JSON file"):
        AutoConfig.from_pretrained(folder)
