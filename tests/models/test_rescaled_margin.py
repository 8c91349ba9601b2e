"""The rescaled ArcFace of the comprehensive search: exact reductions, hand-computed values, training, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForImageClassification

from hf_facerec import FaceRecConfig, FaceRecForMarginClassification
from hf_facerec.models.margins import ArcFace, CosFace, RescaledArcFace, build_margin_penalty

from .tiny_backbones import fit_losses, tiny_backbone_config


def _grid():
    cosine = torch.linspace(-1, 1, 401).reshape(-1, 1).repeat(1, 3)
    return cosine, torch.arange(401) % 3


@pytest.mark.parametrize("scale", [64.0, 30.0])
def test_reduces_exactly_to_arcface_and_cosface(scale):
    cosine, labels = _grid()
    for margin in (0.5, 0.2):
        assert torch.equal(RescaledArcFace(scale, scale, 1.0, margin, 0.0)(cosine, labels),
                           ArcFace(scale, margin)(cosine, labels))
        assert torch.equal(RescaledArcFace(scale, None, 1.0, 0.0, margin)(cosine, labels),
                           CosFace(scale, margin)(cosine, labels))


def test_known_values_with_distinct_scales():
    s_pos, s_neg, m1, m2, m3 = 40.0, 48.0, 1.15, 0.22, 0.1  # the searched optimum of the paper, plus an m3
    cosine = torch.tensor([[0.5, 0.2, -0.3], [0.1, -0.95, 0.4]])
    out = build_margin_penalty("rescaled", s_neg, s_pos=s_pos, m1=m1, m2=m2, m3=m3)(cosine, torch.tensor([0, 1]))
    theta0 = (math.pi - m2) / m1
    assert math.acos(-0.95) > theta0  # the second row takes the monotone fallback
    fallback = -0.95 - ((m1 - 1) * theta0 + m2) * math.sin(theta0)
    expected = [[s_pos * (math.cos(m1 * math.acos(0.5) + m2) - m3), s_neg * 0.2, s_neg * -0.3],
                [s_neg * 0.1, s_pos * (fallback - m3), s_neg * 0.4]]
    torch.testing.assert_close(out, torch.tensor(expected), atol=1e-4, rtol=1e-5)


def test_config_and_bad_values():
    margin = RescaledArcFace(48.0, 40.0, 1.15, 0.22, 0.0)
    assert margin.get_config() == {"scale": 48.0, "s_pos": 40.0, "m1": 1.15, "m2": 0.22, "m3": 0.0}
    assert RescaledArcFace(32.0).s_pos == 32.0
    for kwargs, name in (({"s_pos": 0.0}, "s_pos"), ({"m1": -1.0}, "m1"), ({"m2": 4.0}, "m2"),
                         ({"m3": float("nan")}, "m3")):
        with pytest.raises(ValueError, match=name):
            RescaledArcFace(**kwargs)


def test_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    config = FaceRecConfig(backbone_config=tiny_backbone_config("vit", 32), image_size=32, embedding_size=16,
                           num_identities=5, margin_type="rescaled", margin_scale=16.0,
                           margin_kwargs={"s_pos": 12.0, "m1": 1.1, "m2": 0.2, "m3": 0.05})
    model = FaceRecForMarginClassification(config)
    pixel_values, labels = torch.randn(10, 3, 32, 32), torch.arange(10) % 5
    losses = fit_losses(model, pixel_values, labels)
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded.margin_head.margin) is RescaledArcFace
    assert loaded.config.margin_type == "rescaled" and loaded.config.margin_kwargs["s_pos"] == 12.0
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values, labels=labels).logits, model(pixel_values, labels=labels).logits)
