"""FaceRecModel / FaceRecForMarginClassification on every backbone family: build, embed, round-trip, bad input."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, Dinov2Model

import hf_facerec
from hf_facerec import FaceRecConfig, FaceRecForMarginClassification, FaceRecImageProcessor, FaceRecModel
from hf_facerec.models.modeling_facerec import pooled_feature_size

from .tiny_backbones import BACKBONES, fit_losses, tiny_backbone_config


def _model(name: str, **kwargs) -> FaceRecModel:
    torch.manual_seed(0)
    config = FaceRecConfig(backbone_config=tiny_backbone_config(name), embedding_size=16, **kwargs)
    return FaceRecModel(config).eval()


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_embeds_and_round_trips_bit_exactly(name, tmp_path):
    model = _model(name)
    pixel_values = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        out = model(pixel_values)
    assert out.embeddings.shape == (3, 16) and out.features.shape == (3, 16)
    torch.testing.assert_close(out.embeddings.norm(dim=-1), torch.ones(3))
    assert model.embedding_head_in_features == pooled_feature_size(model.config)

    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "facerec" and saved["backbone_config"]["model_type"] == name
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is FaceRecModel
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values).embeddings, out.embeddings)


@pytest.mark.parametrize("pooling", ["cls", "mean", "cls_mean", "pooler"])
def test_pooling_modes_on_a_cls_token_backbone(pooling):
    model = _model("dinov2", pooling=pooling)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.embeddings.shape == (2, 16)


def test_cls_pooling_on_a_cnn_is_rejected():
    with pytest.raises(ValueError, match="CLS token"):
        FaceRecConfig(backbone_config=tiny_backbone_config("resnet"), pooling="cls")


def test_mean_pooling_on_cnn_feature_maps():
    for name in ("resnet", "convnext", "iresnet", "mobilefacenet"):
        model = _model(name, pooling="mean")
        with torch.no_grad():
            assert model(torch.randn(2, 3, 112, 112)).embeddings.shape == (2, 16)


def test_vit_with_another_native_size_interpolates_position_embeddings():
    config = FaceRecConfig(backbone_config=tiny_backbone_config("vit", image_size=224), embedding_size=16)
    model = FaceRecModel(config).eval()
    assert model._interpolate_pos_encoding
    with torch.no_grad():
        assert model(torch.randn(2, 3, 112, 112)).embeddings.shape == (2, 16)


def test_hidden_states_and_attentions_pass_through():
    model = _model("vit")
    model.set_attn_implementation("eager")  # sdpa cannot return attention maps
    out = model(torch.randn(1, 3, 112, 112), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2


def test_wrong_channel_count_is_a_clear_error():
    model = _model("dinov2")
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 112, 112))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        model(torch.randn(3, 112, 112))


def test_wrong_image_size_for_a_fixed_size_backbone_is_a_clear_error():
    model = _model("iresnet")
    with pytest.raises(ValueError, match="112"):
        model(torch.randn(1, 3, 96, 96))


def test_unknown_backbone_type_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown backbone model_type 'not_a_model'"):
        FaceRecConfig(backbone_config={"model_type": "not_a_model"})


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="pooling"):
        FaceRecConfig(pooling="max")
    with pytest.raises(ValueError, match="embedding_head"):
        FaceRecConfig(embedding_head="mlp")
    with pytest.raises(ValueError, match="partial_fc_sample_rate"):
        FaceRecConfig(partial_fc_sample_rate=0.0)


def test_embedding_head_none_needs_matching_width():
    config = FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=32, embedding_head="none")
    assert FaceRecModel(config)(torch.randn(1, 3, 112, 112)).embeddings.shape == (1, 32)
    with pytest.raises(ValueError, match="embedding_head='none'"):
        FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_head="none"))


def _margin_model(**kwargs) -> FaceRecForMarginClassification:
    torch.manual_seed(0)
    config = FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=16, num_identities=5, **kwargs)
    return FaceRecForMarginClassification(config)


def test_margin_model_needs_identities():
    with pytest.raises(ValueError, match="num_identities"):
        FaceRecForMarginClassification(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2")))


def test_margin_model_loss_falls_and_round_trips(tmp_path):
    model = _margin_model(margin_scale=16.0, margin_kwargs={"margin": 0.2})
    torch.manual_seed(1)
    pixel_values = torch.randn(10, 3, 112, 112)
    labels = torch.arange(10) % 5
    losses = fit_losses(model, pixel_values, labels)
    out = model(pixel_values, labels=labels)
    assert out.logits.shape == (10, 5) and out.embeddings.shape == (10, 16)
    assert losses[-1] < 0.5 * losses[0], losses

    model.eval().save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is FaceRecForMarginClassification
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values).embeddings, model(pixel_values).embeddings)
    # The embedding model alone loads from a training checkpoint (the margin head is dropped).
    embedder = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(embedder(pixel_values).embeddings, model(pixel_values).embeddings)


def test_labels_out_of_range_are_a_clear_error():
    model = _margin_model()
    with pytest.raises(ValueError, match="label"):
        model(torch.randn(2, 3, 112, 112), labels=torch.tensor([0, 5]))


def test_from_backbone_loads_pretrained_weights_from_a_local_folder(tmp_path):
    torch.manual_seed(3)
    backbone = Dinov2Model(tiny_backbone_config("dinov2"))
    backbone.save_pretrained(tmp_path / "backbone")
    model = FaceRecModel.from_backbone(str(tmp_path / "backbone"), embedding_size=16)
    for key, value in backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    assert model.config.backbone_type == "dinov2"


@pytest.mark.parametrize("name", BACKBONES)
def test_a_given_backbone_is_kept_as_it_is(name):
    """FaceRecModel(config, backbone=...) wraps a loaded backbone: post_init re-initialises none of its weights."""
    torch.manual_seed(4)
    config = FaceRecConfig(backbone_config=tiny_backbone_config(name), embedding_size=16)
    built = FaceRecModel(config).backbone
    with torch.no_grad():
        for parameter in built.parameters():
            parameter.add_(0.5)  # no initialiser draws these values
    for module in built.modules():  # as a backbone assembled by hand (or edited after loading) would be
        module.__dict__.pop("_is_hf_initialized", None)
    expected = {key: value.clone() for key, value in built.state_dict().items()}
    for cls in (FaceRecModel, FaceRecForMarginClassification):
        model = cls(FaceRecConfig(backbone_config=config.backbone_config, embedding_size=16, num_identities=4),
                    backbone=built)
        backbone = model.facerec.backbone if cls is FaceRecForMarginClassification else model.backbone
        assert backbone is built
        for key, value in expected.items():
            assert torch.equal(backbone.state_dict()[key], value), (cls.__name__, key)


def test_auto_classes_resolve_after_import(tmp_path):
    config = FaceRecConfig(backbone_config=tiny_backbone_config("iresnet"), embedding_size=16)
    config.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is FaceRecConfig
    FaceRecImageProcessor().save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is FaceRecImageProcessor


_REMOTE_CODE_CHECK = textwrap.dedent(
    """
    import sys, importlib.abc
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_facerec" or name.startswith("hf_facerec."):
                raise ImportError("hf_facerec is blocked in this interpreter")
    sys.meta_path.insert(0, _Block())
    import numpy as np, torch
    from transformers import AutoImageProcessor, AutoModel
    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert not any(name.startswith("hf_facerec") for name in sys.modules), "hf_facerec was imported"
    pixel_values = torch.from_numpy(np.load(folder + "/input.npy"))
    with torch.no_grad():
        embeddings = model(pixel_values).embeddings.numpy()
    assert np.array_equal(embeddings, np.load(folder + "/expected.npy")), "embeddings differ"
    print(type(model).__name__, type(model).__module__, type(processor).__name__)
    """
)


@pytest.mark.parametrize("name", ["dinov2", "mobilefacenet"])
def test_trust_remote_code_loads_without_the_package(name, tmp_path):
    model = _model(name)
    pixel_values = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected = model(pixel_values).embeddings.numpy()
    model.save_pretrained(tmp_path)
    FaceRecImageProcessor().save_pretrained(tmp_path)
    np.save(tmp_path / "input.npy", pixel_values.numpy())
    np.save(tmp_path / "expected.npy", expected)
    assert all((tmp_path / name).exists() for name in ("modeling_facerec.py", "heads.py", "margins.py", "backbones.py"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", _REMOTE_CODE_CHECK, str(tmp_path)], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    class_name, module, processor_name = result.stdout.split()[-3:]
    assert class_name == "FaceRecModel" and not module.startswith("hf_facerec")
    assert processor_name == "FaceRecImageProcessor"


def test_package_exports():
    assert hf_facerec.FaceRecModel is FaceRecModel and callable(hf_facerec.FaceEmbedder)


@pytest.mark.parametrize(
    ("config", "width"),
    [
        (transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 40], depths=[1, 1, 1, 1]), 40),
        (transformers.SwinConfig(embed_dim=16, depths=[1, 1], num_heads=[1, 2]), 32),
        (transformers.ViTConfig(hidden_size=48), 48),
        (transformers.RegNetConfig(hidden_sizes=[8, 16, 24, 56]), 56),  # not in the table: stage widths
    ],
)
def test_feature_width_reads_the_family_table(config, width):
    from hf_facerec.models.backbones import feature_width

    assert feature_width(config) == width
