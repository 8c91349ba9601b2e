"""f's measured size and budget, generated weight shapes, and save/from_pretrained of h."""

import math

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from hf_facerec.hypernet import (BudgetExceededError, FaceRecHyperNetwork, HyperNetConfig, TargetConfig,
                                 TinyVerifierNet, batched_logits, count_flops, count_parameters, split_weights,
                                 target_forward)
from hf_facerec.hypernet.target import parameter_shapes

from .helpers import tiny_hypernet


def test_target_size_is_measured_and_within_budget():
    config = TargetConfig()  # the defaults: near the paper's ~23k parameters / ~5 MFLOPs
    net = TinyVerifierNet(config)
    assert count_parameters(config) == sum(p.numel() for p in net.parameters())
    # hand count: 3x3 convs 1->16->32->56 with biases, linear 56->1
    assert count_parameters(config) == (9 * 16 + 16) + (9 * 16 * 32 + 32) + (9 * 32 * 56 + 56) + 57 <= config.max_params
    # 2 FLOPs per multiply-add of each conv at its resolution (32, 16, 8 px) and of the linear
    expected = 2 * (32 * 32 * 16 * 9 * 1 + 16 * 16 * 32 * 9 * 16 + 8 * 8 * 56 * 9 * 32 + 56)
    assert count_flops(config) == expected <= config.max_flops
    rgb64 = TargetConfig(image_size=64, num_channels=3, channels=[8, 16, 16], max_flops=None)
    assert count_flops(rgb64) == 2 * (64 * 64 * 8 * 27 + 32 * 32 * 16 * 72 + 16 * 16 * 16 * 144 + 16)


def test_budget_refuses_a_layout_over_it():
    with pytest.raises(BudgetExceededError, match="parameters, over the budget max_params=25000"):
        TargetConfig(channels=[64, 128, 128])
    with pytest.raises(BudgetExceededError, match="FLOPs per image, over the budget max_flops=1000000"):
        TargetConfig(max_flops=1_000_000)
    with pytest.raises(BudgetExceededError):
        HyperNetConfig(target_channels=[64, 128, 128])
    with pytest.raises(ValueError, match="num_channels"):
        TargetConfig(num_channels=2)


def test_generated_weights_have_the_shapes_f_expects():
    model = tiny_hypernet()
    shapes = parameter_shapes(model.config.target_config)
    out = model(enrol_embeddings=torch.randn(3, 2, 32), probe_pixel_values=torch.randn(3, 5, 3, 32, 32))
    assert out.weights.shape == out.raw_weights.shape == (3, sum(math.prod(s) for s in shapes.values()))
    assert out.logits.shape == (3, 5) and out.enrol_embeddings.shape == (3, 32)
    weights = split_weights(out.weights[0], shapes)
    net = TinyVerifierNet(model.config.target_config)
    assert {k: v.shape for k, v in weights.items()} == {k: p.shape for k, p in net.named_parameters()}
    # the batched path equals f run with those weights loaded as ordinary parameters
    net.load_state_dict({k: v.detach() for k, v in weights.items()})
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(net(x), target_forward(net, weights, x))
    torch.testing.assert_close(model(enrol_embeddings=torch.randn(1, 32)).weights.shape, torch.Size([1, out.weights.shape[1]]))
    # fan-in scaling: an untrained h gives f's whose logits are O(1), neither dead nor exploding
    assert 0.1 < float(out.logits.detach().std()) < 10
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        model(enrol_embeddings=torch.randn(2, 1, 7))


def test_backbone_is_frozen_and_enrolment_images_match_cached_embeddings():
    model = tiny_hypernet().train()
    assert not any(p.requires_grad for p in model.backbone.parameters()) and not model.backbone.training
    pixels = torch.randn(2, 1, 3, 32, 32)
    direct = model(enrol_pixel_values=pixels).weights
    cached = model(enrol_embeddings=model.embed(pixels.flatten(0, 1)).reshape(2, 1, -1)).weights
    torch.testing.assert_close(direct, cached)


def _config_without_load_keys(config) -> dict:
    data = config.to_dict()
    data.pop("_name_or_path", None)
    data["facerec_config"].pop("dtype", None)
    return data


def test_save_pretrained_from_pretrained_round_trips_exactly(tmp_path):
    model = tiny_hypernet(target_num_channels=1, target_image_size=32)
    model.save_pretrained(tmp_path)
    for loaded in (FaceRecHyperNetwork.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is FaceRecHyperNetwork
        assert _config_without_load_keys(loaded.config) == _config_without_load_keys(model.config)
        a, b = model.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        e = torch.randn(2, 32)
        assert torch.equal(model.eval()(enrol_embeddings=e).weights, loaded.eval()(enrol_embeddings=e).weights)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), HyperNetConfig)


def test_from_backbone_keeps_its_weights():
    backbone = tiny_hypernet().backbone
    model = FaceRecHyperNetwork.from_backbone(backbone, chunk_size=64, target_channels=[4, 8])
    assert model.backbone is backbone and isinstance(model.generator_output, nn.Linear)
    assert model.num_chunks == math.ceil(model.num_target_params / 64)
