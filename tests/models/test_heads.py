"""Tests for hf_facerec.models.margins and .heads: margins against hand-computed values, gradients, Partial FC, shards."""

from __future__ import annotations

import ast
import math
import statistics
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hf_facerec.models import heads, margins
from hf_facerec.models.heads import ClassCenterHead, MarginHeadOutput, build_margin_head
from hf_facerec.models.margins import (
    MARGIN_PENALTIES,
    AdaFace,
    ArcFace,
    CombinedMargin,
    CosFace,
    CurricularFace,
    ElasticArcFace,
    ElasticCosFace,
)

S = 64.0


def _cos(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _labels(values):
    return torch.tensor(values, dtype=torch.long)


def _assert_close(actual, expected, atol=1e-4):
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=1e-5)


# ---------------------------------------------------------------- margins: hand-computed values
def test_arcface_known_values_and_untouched_negatives():
    cosine = _cos([[0.5, 0.2, -0.3], [0.1, 0.9, 0.0], [0.4, -0.95, 0.3]])
    out = ArcFace(scale=S, margin=0.5)(cosine, _labels([0, 1, 1]))
    expected = [
        [S * math.cos(math.acos(0.5) + 0.5), S * 0.2, S * -0.3],
        [S * 0.1, S * math.cos(math.acos(0.9) + 0.5), 0.0],
        # theta = acos(-0.95) = 2.82 > pi - 0.5: insightface fallback cos(theta) - m sin(m)
        [S * 0.4, S * (-0.95 - 0.5 * math.sin(0.5)), S * 0.3],
    ]
    _assert_close(out, expected)
    assert out.dtype == torch.float32


def test_arcface_easy_margin():
    out = ArcFace(scale=S, margin=0.5, easy_margin=True)(_cos([[0.5, 0.1], [0.3, -0.2]]), _labels([0, 1]))
    _assert_close(out, [[S * math.cos(math.acos(0.5) + 0.5), S * 0.1], [S * 0.3, S * -0.2]])


def test_cosface_known_values():
    out = CosFace(scale=S, margin=0.35)(_cos([[0.5, 0.2], [0.7, -1.0]]), _labels([0, 1]))
    _assert_close(out, [[S * (0.5 - 0.35), S * 0.2], [S * 0.7, S * (-1.0 - 0.35)]])


def test_combined_margin_known_values_and_fallback():
    m1, m2, m3 = 1.2, 0.3, 0.1
    out = CombinedMargin(scale=S, m1=m1, m2=m2, m3=m3)(_cos([[0.5, 0.2], [0.3, -0.9]]), _labels([0, 1]))
    theta0 = (math.pi - m2) / m1
    assert math.acos(-0.9) > theta0  # second row lies past the threshold: linearised fallback
    fallback = -0.9 - ((m1 - 1) * theta0 + m2) * math.sin(theta0) - m3
    _assert_close(out, [[S * (math.cos(m1 * math.acos(0.5) + m2) - m3), S * 0.2], [S * 0.3, S * fallback]])


def test_combined_reduces_to_arcface_and_cosface():
    cosine = torch.linspace(-1, 1, 41).reshape(-1, 1).repeat(1, 3)
    labels = torch.arange(41) % 3
    torch.testing.assert_close(CombinedMargin(S, 1.0, 0.5, 0.0)(cosine, labels), ArcFace(S, 0.5)(cosine, labels))
    torch.testing.assert_close(CombinedMargin(S, 1.0, 0.0, 0.35)(cosine, labels), CosFace(S, 0.35)(cosine, labels))


def test_label_minus_one_gets_no_margin():
    cosine = _cos([[0.5, 0.2], [0.6, 0.1]])
    for margin in (ArcFace(), CosFace(), CombinedMargin(m1=1.3), CurricularFace(), ElasticArcFace()):
        out = margin(cosine, _labels([-1, -1]))
        _assert_close(out, S * cosine)


def test_adaface_known_values_eval_mode():
    margin = AdaFace(scale=S, margin=0.4, h=0.333).eval()
    margin.batch_mean.fill_(10.0)
    margin.batch_std.fill_(2.0)
    norms = torch.tensor([14.0, 6.0, 10.0, 100.0])
    cosine = _cos([[0.5, 0.1], [0.2, 0.6], [0.3, 0.3], [0.8, 0.0]])
    out = margin(cosine, _labels([0, 1, 0, 0]), norms)
    expected = []
    for row, label, norm in zip(cosine.tolist(), [0, 1, 0, 0], norms.tolist()):
        z = max(-1.0, min(1.0, 0.333 * (norm - 10.0) / (2.0 + 1e-3)))
        theta = math.acos(row[label]) - 0.4 * z
        row[label] = math.cos(theta) - (0.4 + 0.4 * z)
        expected.append([S * v for v in row])
    _assert_close(out, expected)
    assert 0.333 * (100 - 10) / 2 > 1  # the last row exercises the clip at z = 1


def test_adaface_updates_buffers_in_training_before_use():
    margin = AdaFace(scale=S, margin=0.4, h=0.333, t_alpha=0.01)
    norms = [12.0, 18.0, 30.0]
    out = margin(_cos([[0.5, 0.1]] * 3), _labels([0, 0, 0]), torch.tensor(norms))
    mean = 0.01 * statistics.mean(norms) + 0.99 * 20.0
    std = 0.01 * statistics.stdev(norms) + 0.99 * 100.0
    assert margin.batch_mean.item() == pytest.approx(mean, rel=1e-6)
    assert margin.batch_std.item() == pytest.approx(std, rel=1e-6)
    z = 0.333 * (12.0 - mean) / (std + 1e-3)
    assert out[0, 0].item() == pytest.approx(S * (math.cos(math.acos(0.5) - 0.4 * z) - 0.4 - 0.4 * z), abs=1e-4)
    margin.eval()
    margin(_cos([[0.5, 0.1]] * 3), _labels([0, 0, 0]), torch.tensor(norms))
    assert margin.batch_mean.item() == pytest.approx(mean, rel=1e-6)  # eval leaves buffers alone
    with pytest.raises(ValueError, match="feature_norms"):
        margin(_cos([[0.5, 0.1]]), _labels([0]))


def test_curricularface_hard_negatives_eval_mode():
    margin = CurricularFace(scale=S, margin=0.5).eval()
    margin.t.fill_(0.3)
    out = margin(_cos([[0.5, 0.9, 0.01, -0.2]]), _labels([0]))
    positive = math.cos(math.acos(0.5) + 0.5)  # = 0.0236: 0.9 is hard, 0.01 and -0.2 are not
    _assert_close(out, [[S * positive, S * 0.9 * (0.3 + 0.9), S * 0.01, S * -0.2]])


def test_curricularface_t_update_training():
    margin = CurricularFace(scale=S, margin=0.5, momentum=0.01)
    margin.t.fill_(0.2)
    margin(_cos([[0.5, 0.1], [0.1, 0.7], [0.9, 0.0]]), _labels([0, 1, -1]))
    # only rows with a positive count: mean(0.5, 0.7) = 0.6
    assert margin.t.item() == pytest.approx(0.01 * 0.6 + 0.99 * 0.2, rel=1e-6)
    margin(_cos([[0.5, 0.1]]), _labels([-1]))  # no positives: no update
    assert margin.t.item() == pytest.approx(0.01 * 0.6 + 0.99 * 0.2, rel=1e-6)


@pytest.mark.parametrize("elastic, fixed", [(ElasticArcFace, ArcFace), (ElasticCosFace, CosFace)])
def test_elastic_std_zero_equals_fixed_margin(elastic, fixed):
    cosine = torch.linspace(-1, 1, 30).reshape(10, 3)
    labels = torch.arange(10) % 3
    for plus in (False, True):
        torch.testing.assert_close(elastic(std=0.0, plus=plus)(cosine, labels), fixed()(cosine, labels))
    # eval mode uses the mean margin whatever std is
    torch.testing.assert_close(elastic(std=0.2).eval()(cosine, labels), fixed()(cosine, labels))


def test_elastic_cosface_draws_normal_margins():
    cosine = _cos([[0.5, 0.1], [0.2, 0.6], [0.9, 0.0]])
    torch.manual_seed(3)
    out = ElasticCosFace(scale=S, margin=0.35, std=0.05)(cosine, _labels([0, 1, 0]))
    torch.manual_seed(3)
    drawn = torch.normal(torch.full((3,), 0.35), 0.05)  # replay the same draw
    _assert_close(out[:, :1].squeeze(1)[[0, 2]], S * (_cos([0.5, 0.9]) - drawn[[0, 2]]))
    _assert_close(out[1, 1], S * (0.6 - drawn[1]))


def test_elastic_plus_gives_smallest_margin_to_easiest_sample():
    positives = [0.2, 0.9, -0.1, 0.5, 0.7]
    cosine = torch.tensor(positives).unsqueeze(1).repeat(1, 2)
    torch.manual_seed(0)
    out = ElasticCosFace(scale=S, margin=0.35, std=0.1, plus=True)(cosine, torch.zeros(5, dtype=torch.long))
    torch.manual_seed(0)
    drawn = torch.normal(torch.full((5,), 0.35), 0.1)
    used = torch.tensor(positives) - out[:, 0] / S
    by_cos_desc = sorted(range(5), key=lambda i: -positives[i])
    _assert_close(used[by_cos_desc], drawn.sort().values, atol=1e-5)
    # rows without a positive (other shard) take no part: the valid rows rank their own draws
    torch.manual_seed(0)
    labels = _labels([0, -1, 0, 0, -1])
    out = ElasticCosFace(scale=S, margin=0.35, std=0.1, plus=True)(cosine, labels)
    valid = [0, 2, 3]
    used = torch.tensor(positives)[valid] - out[valid, 0] / S
    by_cos_desc = sorted(range(3), key=lambda i: -positives[valid[i]])
    _assert_close(used[by_cos_desc], drawn[valid].sort().values, atol=1e-5)
    _assert_close(out[[1, 4], 0], S * cosine[[1, 4], 0])


def test_arcface_gradient_flows_through_the_margin():
    # d/dc cos(acos(c) + m) = sin(theta + m) / sin(theta); an arccos under no_grad would give 1.
    cosine = _cos([[0.5, 0.2]]).requires_grad_()
    ArcFace(scale=S, margin=0.5)(cosine, _labels([0]))[0, 0].backward()
    theta = math.acos(0.5)
    assert cosine.grad[0, 0].item() == pytest.approx(S * math.sin(theta + 0.5) / math.sin(theta), rel=1e-4)
    assert cosine.grad[0, 1].item() == 0.0


@pytest.mark.parametrize("name", list(MARGIN_PENALTIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_margin_gradient_finite_at_cosine_plus_minus_one(name, dtype):
    cosine = _cos([[1.0, -1.0, 0.3], [-1.0, 1.0, 0.2], [0.4, 1.0, -1.0]]).to(dtype).requires_grad_()
    margin = MARGIN_PENALTIES[name]()
    out = margin(cosine, _labels([0, 0, 2]), torch.tensor([10.0, 20.0, 30.0], dtype=dtype))
    assert out.dtype == torch.float32  # margin math is upcast
    (out.logsumexp(1) - out.gather(1, _labels([[0], [0], [2]])).squeeze(1)).sum().backward()
    assert cosine.grad.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(cosine.grad.float()).all()
    assert cosine.grad.float().abs().sum() > 0


# ---------------------------------------------------------------- head: gradients and dtypes
def _aligned_batch(head, dtype):
    """Features hitting cos = 1 with their own center and cos = -1 with another, plus random rows."""
    torch.manual_seed(1)
    w = head.weight.detach().float()
    features = torch.cat([w[[2]] * 30, -w[[3]] * 25, torch.randn(4, w.shape[1]) * 10])
    labels = _labels([2, 4, 0, 1, 5, 7])
    return features.to(dtype).requires_grad_(), labels


@pytest.mark.parametrize("name", list(MARGIN_PENALTIES))
@pytest.mark.parametrize("dtype, head_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                               (torch.bfloat16, torch.bfloat16)])
def test_head_gradients_finite_and_nonzero(name, dtype, head_dtype):
    torch.manual_seed(0)
    head = build_margin_head(16, 9, name).to(head_dtype)
    features, labels = _aligned_batch(head, dtype)
    out = head(features, labels)
    assert out.logits.dtype == torch.float32 and out.logits.shape == (6, 9)
    out.loss.backward()
    for grad in (features.grad, head.weight.grad):
        assert grad.dtype == (dtype if grad is features.grad else head_dtype)
        assert torch.isfinite(grad.float()).all() and grad.float().abs().sum() > 0


def test_head_under_cpu_autocast_returns_float32_logits():
    head = build_margin_head(16, 30, "arcface", sample_rate=0.5)
    features = torch.randn(4, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(features, _labels([1, 2, 3, 29]))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(features.grad).all() and head.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- Partial FC
def _reference_arcface_loss(features, weight, labels, s=S, m=0.5):
    """Independent full-softmax ArcFace: normalise, margin on the label column, mean cross-entropy."""
    cos = F.normalize(features, dim=1) @ F.normalize(weight, dim=1).T
    theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    onehot = F.one_hot(labels, weight.shape[0]).bool()
    logits = torch.where(onehot, torch.cos(theta + m), cos) * s
    return F.cross_entropy(logits, labels), logits


def test_sample_rate_one_equals_full_reference():
    torch.manual_seed(0)
    head = build_margin_head(32, 40, "arcface", sample_rate=1.0)
    features, labels = torch.randn(12, 32), torch.randint(0, 40, (12,))
    out = head(features, labels)
    ref_loss, ref_logits = _reference_arcface_loss(features, head.weight.detach(), labels)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref_loss)
    assert isinstance(out, MarginHeadOutput) and torch.equal(out.labels, labels)


def test_partial_fc_samples_positives_plus_negatives():
    torch.manual_seed(0)
    num_classes, rate = 200, 0.1
    head = build_margin_head(32, num_classes, "arcface", sample_rate=rate)
    features, labels = torch.randn(16, 32), torch.randint(0, num_classes, (16,))
    full = build_margin_head(32, num_classes, "arcface")
    full.weight.data.copy_(head.weight.data)

    torch.manual_seed(5)
    out = head(features, labels)
    torch.manual_seed(5)
    index, remapped = head.sample_centers(labels)
    assert index.shape[0] == round(rate * num_classes) <= math.ceil(rate * num_classes) + labels.unique().numel()
    assert out.logits.shape == (16, index.shape[0]) and torch.equal(out.labels, remapped)
    assert set(labels.tolist()) <= set(index.tolist()) and torch.equal(index[remapped], labels)
    assert torch.equal(index, index.sort().values) and index.unique().numel() == index.numel()
    # the sampled logits are the full head's logits at those columns, and the loss their softmax
    torch.testing.assert_close(out.logits, full(features, labels).logits[:, index])
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, remapped))
    # reproducible under the torch RNG
    torch.manual_seed(5)
    assert torch.equal(head.sample_centers(labels)[0], index)


def test_partial_fc_gradients_reach_only_sampled_rows():
    torch.manual_seed(0)
    head = build_margin_head(8, 100, "cosface", sample_rate=0.2)
    features, labels = torch.randn(6, 8), torch.randint(0, 100, (6,))
    torch.manual_seed(7)
    head(features, labels).loss.backward()
    torch.manual_seed(7)
    index, _ = head.sample_centers(labels)
    touched = head.weight.grad.abs().sum(1) > 0
    assert torch.equal(touched.nonzero().squeeze(1), index)


def test_partial_fc_more_positives_than_samples_and_eval_mode():
    head = build_margin_head(8, 50, "arcface", sample_rate=0.1)  # 5 columns
    labels = torch.arange(0, 40, 4)  # 10 distinct positives
    out = head(torch.randn(10, 8), labels)
    assert out.logits.shape == (10, 10) and torch.equal(out.labels, torch.arange(10))
    assert head.eval()(torch.randn(10, 8), labels).logits.shape == (10, 50)


def test_partial_fc_learns_a_separable_problem():
    torch.manual_seed(0)
    num_classes = 20
    centers = F.normalize(torch.randn(num_classes, 16), dim=1)
    labels = torch.arange(num_classes).repeat(4)
    features = centers[labels] * 5 + 0.2 * torch.randn(len(labels), 16)
    head = build_margin_head(16, num_classes, "arcface", scale=16.0, margin=0.2, sample_rate=0.5)
    # the centers start at norm ~0.04, so the gradient of the normalised cosine is large: small lr
    optimizer = torch.optim.SGD(head.parameters(), lr=0.02)
    for _ in range(60):
        loss = head(features, labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()  # full softmax over all 20 centers
    full = head(features, labels)
    assert full.loss.item() < 0.1
    assert (full.logits.argmax(1) == labels).all()


# ---------------------------------------------------------------- sharding
def _two_shards(name):
    """A full 10-class head and two shards holding classes [0, 5) and [5, 10) with the same centers."""
    torch.manual_seed(0)
    full = build_margin_head(16, 10, name).eval()
    shards = [build_margin_head(16, 10, name, class_offset=o, num_local_classes=5).eval() for o in (0, 5)]
    for shard, rows in zip(shards, (slice(0, 5), slice(5, 10))):
        shard.weight.data.copy_(full.weight.data[rows])
    return full, shards


@pytest.mark.parametrize("name", ["arcface", "adaface", "elasticcosface"])
def test_two_shards_reproduce_the_full_head(name):
    full, shards = _two_shards(name)
    features, labels = torch.randn(8, 16), _labels([0, 4, 5, 9, 2, 7, 3, 6])
    pieces = [shard.local_logits(features, labels) for shard in shards]
    assert torch.equal(pieces[0][1], torch.where(labels < 5, labels, -1))
    assert torch.equal(pieces[1][1], torch.where(labels >= 5, labels - 5, -1))
    expected = full(features, labels)
    logits = torch.cat([pieces[0][0], pieces[1][0]], dim=1)
    torch.testing.assert_close(logits, expected.logits)
    torch.testing.assert_close(F.cross_entropy(logits, labels), expected.loss)
    # a shard's own forward averages only over the rows whose positive it holds
    local = shards[0](features, labels)
    torch.testing.assert_close(local.loss, F.cross_entropy(pieces[0][0], pieces[0][1], ignore_index=-1))


def test_curricularface_shards_reweight_only_where_the_positive_lives():
    # Known limitation: the hard-negative test needs the row's positive, which only one shard holds.
    full, shards = _two_shards("curricularface")
    full.margin.t.fill_(0.5)
    for shard in shards:
        shard.margin.t.fill_(0.5)
    features, labels = torch.randn(8, 16), _labels([0, 4, 5, 9, 2, 7, 3, 6])
    expected = full(features, labels).logits
    for shard, cols in zip(shards, (slice(0, 5), slice(5, 10))):
        logits, local = shard.local_logits(features, labels)
        here = local >= 0
        torch.testing.assert_close(logits[here], expected[here, cols])
        cosine = F.normalize(features[~here], dim=1) @ F.normalize(shard.weight.detach(), dim=1).T
        torch.testing.assert_close(logits[~here], S * cosine, atol=1e-4, rtol=1e-5)


def test_shard_without_local_positives_gives_zero_loss():
    head = build_margin_head(4, 10, "arcface", class_offset=5, num_local_classes=5)
    out = head(torch.randn(3, 4, requires_grad=True), _labels([0, 1, 2]))
    assert out.loss.item() == 0.0 and (out.labels == -1).all()


# ---------------------------------------------------------------- validation, state, repr, imports
def test_bad_inputs_raise_value_errors():
    head = build_margin_head(4, 10)
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        head(x, _labels([0, 10, 1]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        head(x, _labels([0, -1, 1]))
    with pytest.raises(ValueError, match="integer dtype"):
        head(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        head(x, _labels([0, 1]))
    with pytest.raises(ValueError, match="features"):
        head(torch.randn(3, 5), _labels([0, 1, 2]))
    with pytest.raises(ValueError, match="cosine"):
        ArcFace()(torch.randn(3), _labels([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[-1, 2\)"):
        ArcFace()(torch.randn(1, 2), _labels([2]))


def test_bad_construction_raises_value_errors():
    with pytest.raises(ValueError, match="arcface.*cosface.*combined.*adaface"):
        build_margin_head(4, 10, "sphereface")
    with pytest.raises(ValueError, match="unknown margin_type"):
        build_margin_head(4, 10, ["arcface"])
    with pytest.raises(ValueError, match="does not take"):
        build_margin_head(4, 10, "cosface", m1=2.0)
    for rate in (0.0, 1.5):
        with pytest.raises(ValueError, match="sample_rate"):
            build_margin_head(4, 10, sample_rate=rate)
    with pytest.raises(ValueError, match="not a slice"):
        build_margin_head(4, 10, class_offset=6, num_local_classes=5)
    with pytest.raises(ValueError, match="class_offset"):
        build_margin_head(4, 10, class_offset=10)
    with pytest.raises(ValueError, match="num_classes"):
        build_margin_head(4, 0)
    with pytest.raises(ValueError, match="scale"):
        ArcFace(scale=0.0)
    with pytest.raises(ValueError, match="margin"):
        ArcFace(margin=float("nan"))
    with pytest.raises(ValueError, match="MarginPenalty"):
        ClassCenterHead(4, 10, margin="arcface")


def test_buffers_in_state_dict_and_round_trip():
    head = build_margin_head(4, 10, "adaface")
    head(torch.randn(5, 4), torch.randint(0, 10, (5,)))
    state = head.state_dict()
    assert {"weight", "margin.batch_mean", "margin.batch_std"} <= set(state)
    assert "margin.t" in build_margin_head(4, 10, "curricularface").state_dict()
    fresh = build_margin_head(4, 10, "adaface")
    fresh.load_state_dict(state)
    assert fresh.margin.batch_mean.item() == head.margin.batch_mean.item() != 20.0


def test_extra_repr_and_get_config():
    head = build_margin_head(8, 100, "combined", scale=32.0, sample_rate=0.5, m1=1.0, m2=0.3, m3=0.2)
    text = repr(head)
    assert "num_classes=100" in text and "sample_rate=0.5" in text and "m2=0.3" in text
    config = head.margin.get_config()
    assert config == {"scale": 32.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}
    assert type(head.margin)(**config).get_config() == config


@pytest.mark.parametrize("module", [heads, margins])
def test_heads_module_imports_only_torch_math_and_stdlib(module):
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            assert (Path(module.__file__).parent / f"{node.module}.py").is_file(), node.module
            continue  # a sibling file: remote code copies it next to the checkpoint
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "only single-dot relative imports in remote code"
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            assert root in ("torch", "__future__") or root in sys.stdlib_module_names, name
