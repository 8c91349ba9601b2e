"""The search space: decisions, mapping onto trainable arguments, FLOP counting, constraints, reward."""

from __future__ import annotations

import json

import pytest
import torch

from hf_facerec.search.space import ConstraintError, Decision, SearchSpace, count_flops, reward


def test_flop_count_known_answer():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_flops(conv, 8) == 2 * 8 * 8 * 4 * 3 * 3 * 3  # multiply-adds of every output pixel, x2


def test_reward_formula():
    assert reward(0.9, 350e6, 350e6) == 0.9
    assert reward(0.9, 700e6, 350e6) == pytest.approx(0.85)
    assert reward(0.8, 175e6, 350e6) == pytest.approx(0.775)
    with pytest.raises(ValueError, match="target_flops"):
        reward(0.9, 1.0, 0.0)


def test_model_arguments_build_what_they_say():
    space = SearchSpace.default(image_size=32)
    params = {**space.defaults(), "family": "vit", "vit_depth": 2, "vit_width": 32, "vit_heads": 2,
              "vit_patch": 8, "vit_mlp_ratio": 4, "margin_family": "rescaled", "s_pos": 32.0, "s_neg": 48.0,
              "m1": 1.1, "m2": 0.2, "m3": 0.0, "embedding_size": 64}
    args = space.model_arguments(params)
    assert json.loads(args["backbone_overrides"]) == {"num_hidden_layers": 2, "hidden_size": 32,
                                                      "num_attention_heads": 2, "patch_size": 8,
                                                      "intermediate_size": 128}
    model = space.build_model(params, num_identities=3)
    assert model.config.backbone_config.num_hidden_layers == 2 and model.config.embedding_size == 64
    assert model.margin_head.margin.get_config() == {"scale": 48.0, "s_pos": 32.0, "m1": 1.1, "m2": 0.2, "m3": 0.0}
    res = space.build_model({**params, "family": "iresnet", "iresnet_blocks": "1-2-2-1", "iresnet_width": 8}, 3)
    assert res.config.backbone_config.layers == [1, 2, 2, 1] and res.config.backbone_config.hidden_sizes == [8, 16, 32, 64]


def test_bigger_architectures_count_more():
    space = SearchSpace.default(image_size=32)
    small = space.measure({"vit_depth": 2, "vit_width": 32})
    big = space.measure({"vit_depth": 6, "vit_width": 96})
    assert big["params"] > 3 * small["params"] and big["flops"] > 3 * small["flops"]


def test_over_budget_and_invalid_architectures_are_rejected():
    space = SearchSpace.default(image_size=32, max_flops=10e6)
    assert space.check({"vit_depth": 2})["flops"] <= 10e6
    with pytest.raises(ConstraintError, match="max_flops"):
        space.check({"family": "iresnet", "iresnet_blocks": "2-2-2-2", "iresnet_width": 32})
    with pytest.raises(ConstraintError, match="max_params"):
        SearchSpace.default(image_size=32, max_params=100_000).check({"vit_width": 96})
    with pytest.raises(ConstraintError, match="divisible by vit_heads"):
        space.check({"vit_width": 32, "vit_heads": 3})
    with pytest.raises(ConstraintError, match="min_flops"):
        SearchSpace.default(image_size=32, min_flops=1e9).check({})


def test_users_extend_the_space_and_bad_decisions():
    space = SearchSpace.default().add(Decision("vit_depth", (1, 12), "architecture", default=12))
    assert space.defaults()["vit_depth"] == 12 and len(space.names("cleaning")) == 4
    assert Decision("x", (3, 4), "loss", default=9).default == 3
    with pytest.raises(ValueError, match="group"):
        Decision("x", (1,), "optimizer")
    with pytest.raises(ValueError, match="distinct"):
        Decision("x", (1, 1), "loss")
    with pytest.raises(ValueError, match="option"):
        Decision("x", ((1, 2),), "loss")
