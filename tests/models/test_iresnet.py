"""IResNet config + backbone: presets, shapes, flatten pooling, parameter counts, save/load, input checks."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_facerec.models.configuration_iresnet import IRESNET_DEPTHS, IResNetConfig, conv_output_size, to_size_pair
from hf_facerec.models.modeling_iresnet import IResNetModel

TINY_WIDTHS = [8, 16, 32, 64]


@pytest.fixture(autouse=True, scope="module")
def _register():
    AutoConfig.register("iresnet", IResNetConfig, exist_ok=True)
    AutoModel.register(IResNetConfig, IResNetModel, exist_ok=True)


def _tiny(**kwargs) -> IResNetConfig:
    return IResNetConfig(**{"layers": [1, 1, 1, 1], "hidden_sizes": TINY_WIDTHS, **kwargs})


def _iresnet_parameter_count(layers: list[int], widths: list[int], channels: int = 3) -> int:
    """Hand count: stem conv + BN + PReLU; per block BN, conv3x3, BN, PReLU, conv3x3, BN (+ 1x1 conv + BN shortcut
    on each stage's first block); final BN2d. BN = 2 params per channel, PReLU = 1."""
    total = 9 * channels * widths[0] + 3 * widths[0]
    in_width = widths[0]
    for depth, width in zip(layers, widths):
        for block in range(depth):
            c_in = in_width if block == 0 else width
            total += 2 * c_in + 9 * c_in * width + 3 * width + 9 * width * width + 2 * width
            if block == 0:
                total += c_in * width + 2 * width
        in_width = width
    return total + 2 * widths[-1]


def test_size_helpers():
    assert to_size_pair(112) == (112, 112)
    assert to_size_pair([112, 96]) == (112, 96)
    assert [conv_output_size(n, stride=2) for n in (112, 56, 28, 14, 7, 96, 6)] == [56, 28, 14, 7, 4, 48, 3]
    for bad in (0, -1, (112,), (112, 96, 3), (112.0, 96), True):
        with pytest.raises(ValueError, match="image_size"):
            to_size_pair(bad)


@pytest.mark.parametrize("depth", sorted(IRESNET_DEPTHS))
def test_from_depth_presets(depth):
    config = IResNetConfig.from_depth(depth, dropout=0.1)
    assert config.layers == list(IRESNET_DEPTHS[depth])
    assert config.dropout == 0.1 and config.hidden_sizes == [64, 128, 256, 512]
    assert config.hidden_size == 512 * 7 * 7


def test_unknown_depth():
    with pytest.raises(ValueError, match="unknown IResNet depth 42"):
        IResNetConfig.from_depth(42)


def test_hidden_size_is_derived_and_not_saved(tmp_path):
    config = _tiny(image_size=[112, 96])
    assert config.feature_map_size == (7, 6) and config.hidden_size == 64 * 7 * 6
    config.image_size = 112  # follows later edits (FaceRecConfig.from_backbone sets attributes)
    assert config.hidden_size == 64 * 49
    assert IResNetConfig(hidden_size=25088).hidden_size == 25088  # a consistent stated value is accepted
    with pytest.raises(ValueError, match="hidden_size is derived"):
        IResNetConfig(hidden_size=512)
    config.save_pretrained(tmp_path)
    assert "hidden_size" not in json.loads((tmp_path / "config.json").read_text())
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, IResNetConfig)
    assert reloaded.to_diff_dict() == config.to_diff_dict() and reloaded.hidden_size == 64 * 49


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": [2, 2]}, "one entry per stage"),
        ({"layers": [2, 0, 2, 2]}, "layers must be"),
        ({"hidden_sizes": []}, "hidden_sizes must be"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": [112, 96, 3]}, "image_size"),
        ({"num_channels": 0}, "num_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"batch_norm_eps": 0.0}, "batch_norm_eps"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IResNetConfig(**kwargs)


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_tiny_forward_shapes(depth):
    model = IResNetModel(IResNetConfig.from_depth(depth, hidden_sizes=TINY_WIDTHS)).eval()
    pixel_values = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        out = model(pixel_values, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 64, 7, 7)
    assert out.pooler_output.shape == (2, 64 * 7 * 7) == (2, model.config.hidden_size)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state.flatten(1), rtol=0, atol=0)
    sizes = [(8, 112), (8, 56), (16, 28), (32, 14), (64, 7)]  # stem, then each stage halves
    assert [(h.shape[1], h.shape[2]) for h in out.hidden_states] == sizes
    # The final BatchNorm2d sits between the last stage and last_hidden_state.
    torch.testing.assert_close(out.last_hidden_state, model.final_norm(out.hidden_states[-1]))
    with torch.no_grad():
        as_tuple = model(pixel_values, return_dict=False)
    assert len(as_tuple) == 2 and torch.equal(as_tuple[1], out.pooler_output)


def test_non_square_input():
    model = IResNetModel(_tiny(image_size=[112, 96])).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 112, 96))
    assert out.pooler_output.shape == (1, 64 * 7 * 6)


def test_dropout_only_on_pooled_output_in_training():
    model = IResNetModel(_tiny(dropout=0.5))
    pixel_values = torch.randn(2, 3, 112, 112)
    model.train()
    out = model(pixel_values)
    dropped = out.pooler_output == 0
    assert 0.3 < dropped.float().mean() < 0.7
    kept = out.last_hidden_state.flatten(1)[~dropped] * 2  # inverted dropout scales the survivors by 1 / (1 - p)
    torch.testing.assert_close(out.pooler_output[~dropped], kept)
    model.eval()
    with torch.no_grad():
        out = model(pixel_values)
    assert torch.equal(out.pooler_output, out.last_hidden_state.flatten(1))


@pytest.mark.parametrize("depth", [18, 50, 100])
def test_full_size_parameter_counts(depth):
    config = IResNetConfig.from_depth(depth)
    with torch.device("meta"):  # shapes only: fast, no memory
        model = IResNetModel(config)
    count = sum(p.numel() for p in model.parameters())
    assert count == _iresnet_parameter_count(config.layers, config.hidden_sizes)
    # insightface's published sizes include fc (25088 -> 512, with bias) and features (BatchNorm1d(512)).
    with_head = count + 25088 * 512 + 512 + 2 * 512
    expected_millions = {18: 24.0, 50: 43.6, 100: 65.2}[depth]
    assert round(with_head / 1e6, 1) == expected_millions
    if depth == 50:
        assert count == 30_744_256 and with_head == 43_590_848


def test_save_load_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = IResNetModel(_tiny(layers=[1, 2, 1, 1])).eval()
    # Non-trivial BN statistics so that a buffer lost on save would show.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, IResNetModel)
    original, restored = model.state_dict(), reloaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    pixel_values = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model(pixel_values).pooler_output, reloaded(pixel_values).pooler_output)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = IResNetModel(_tiny())
    pixel_values = torch.randn(2, 3, 112, 112)

    def gradients():
        model.zero_grad()
        model(pixel_values).pooler_output.square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    model.train()
    plain = gradients()
    model.activation_checkpointing_enable()
    assert all(block.gradient_checkpointing for block in model.encoder.stages[0].layers)
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 1, 112, 112), "expects 3 input channels"),
        ((1, 3, 112, 96), "expects 112x112 .* got 112x96"),
        ((1, 3, 224, 224), "expects 112x112 .* got 224x224"),
        ((3, 112, 112), r"shape \(B, C, H, W\)"),
    ],
)
def test_bad_inputs_raise(shape, message):
    model = IResNetModel(_tiny())
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))
