"""Sharded Partial FC: one process with the full head is the reference for two gloo processes on CPU.

The two-process checks run once, in one ``torch.multiprocessing.spawn`` (module fixture), and write their
results to files; the tests compare them with the single-process computation done here.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from transformers import Trainer, TrainingArguments, ViTConfig

from hf_facerec.models import ClassCenterHead, FaceRecConfig, FaceRecForMarginClassification, build_margin_head
from hf_facerec.training.distributed import (
    ShardedClassCenterHead,
    ShardedHeadTrainerMixin,
    _DistributedCrossEntropy,
    class_shard_range,
    clip_grad_norm_,
    ddp_ignore_sharded_heads,
    gather_margin_head,
    gathered_margin_head,
    shard_margin_head,
)

WORLD = 2
LOCAL_SIZES = (5, 3)  # uneven local batches: the gather pads and trims
NUM_CLASSES, DIM = 11, 8  # 11 classes on 2 ranks: shards of 6 and 5
MARGINS = {
    "arcface": {"margin": 0.5},
    "cosface": {"margin": 0.35},
    "combined": {"m1": 1.1, "m2": 0.3, "m3": 0.1},
    "adaface": {"margin": 0.4, "t_alpha": 0.3},  # large momentum: the statistics move visibly in two calls
    "curricularface": {"margin": 0.5, "momentum": 0.3},
    "elasticarcface": {"margin": 0.5, "std": 0.0, "plus": True},
}
TRAIN_STEPS, TRAIN_CLASSES, TRAIN_BATCH, MAX_NORM = 4, 13, 8, 0.5


# ---- shared, seeded problem builders (used by the workers and by the reference) ------------------------------


def _head_case(margin_type: str, sample_rate: float = 1.0, num_classes: int = NUM_CLASSES):
    """A full head, and two calls' global features ``(8, D)`` / labels ``(8,)`` (with repeated classes)."""
    torch.manual_seed(7)
    head = build_margin_head(DIM, num_classes, margin_type, scale=16.0, sample_rate=sample_rate,
                             **MARGINS[margin_type])
    head.weight.data.normal_()  # unit-scale centers: cosines spread over [-1, 1], margins bite
    calls = []
    for _ in range(2):
        features = torch.randn(sum(LOCAL_SIZES), DIM) * (1 + torch.rand(sum(LOCAL_SIZES), 1) * 3)
        labels = torch.randint(0, num_classes, (sum(LOCAL_SIZES),))
        labels[-1] = labels[0]
        calls.append((features, labels))
    return head, calls


def _rows(rank: int) -> slice:
    start = sum(LOCAL_SIZES[:rank])
    return slice(start, start + LOCAL_SIZES[rank])


def _tiny_model() -> FaceRecForMarginClassification:
    torch.manual_seed(0)
    backbone = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)
    config = FaceRecConfig(backbone_config=backbone, image_size=32, embedding_size=16, embedding_head="linear",
                           num_identities=TRAIN_CLASSES, margin_scale=16.0)
    return FaceRecForMarginClassification(config)


def _train_batches():
    generator = torch.Generator().manual_seed(123)
    return [(torch.randn(TRAIN_BATCH, 3, 32, 32, generator=generator),
             torch.randint(0, TRAIN_CLASSES, (TRAIN_BATCH,), generator=generator)) for _ in range(TRAIN_STEPS)]


class _Trainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # forward(**kwargs) makes Trainer think the loss is a sum it must rescale by the process count (as
        # FaceRecTrainer does, say it is a mean).
        self.model_accepts_loss_kwargs = False

    def _save(self, output_dir=None, state_dict=None):
        # transformers 5.24 writes ViT checkpoints under the legacy key names (save_original_format=True) and
        # Trainer's resume loads them with a plain load_state_dict, which then misses the whole backbone.
        if self.args.should_save:
            self.model.save_pretrained(output_dir, save_original_format=False)


class _ShardedTrainer(ShardedHeadTrainerMixin, _Trainer):
    pass


def _trainer(model, output_dir, world: int) -> Trainer:
    """SGD with momentum, clipping active, a checkpoint every 2 steps; the global batch is TRAIN_BATCH."""
    args = TrainingArguments(output_dir=str(output_dir), max_steps=TRAIN_STEPS,
                             per_device_train_batch_size=TRAIN_BATCH // world, learning_rate=0.1, optim="sgd",
                             optim_args="momentum=0.9", lr_scheduler_type="constant", max_grad_norm=MAX_NORM,
                             save_strategy="steps", save_steps=2, use_cpu=True, report_to="none", disable_tqdm=True,
                             logging_steps=1, seed=3, weight_decay=0.0)
    data = [{"pixel_values": pixels[i], "labels": labels[i]} for pixels, labels in _train_batches()
            for i in range(TRAIN_BATCH)]
    return (_ShardedTrainer if world > 1 else _Trainer)(model=model, args=args, train_dataset=data)


# ---- the two-process side ------------------------------------------------------------------------------------


def _worker_heads(rank: int) -> dict:
    out = {}
    for margin_type in MARGINS:
        head, calls = _head_case(margin_type)
        model = nn.Module()
        model.margin_head = head
        shard_margin_head(model, rank, WORLD)
        records = []
        for features, labels in calls:
            local = features[_rows(rank)].clone().requires_grad_(True)
            loss = model.margin_head(local, labels[_rows(rank)]).loss
            loss.backward()
            records.append({"loss": loss.detach(), "feature_grad": local.grad,
                            "weight_grad": model.margin_head.weight.grad.clone(),
                            "buffers": {k: v.clone() for k, v in model.margin_head.margin.named_buffers()}})
            model.margin_head.weight.grad = None
        out[margin_type] = records
    return out


def _worker_partial_fc(rank: int) -> dict:
    head, calls = _head_case("arcface", sample_rate=0.25, num_classes=40)
    model = nn.Module()
    model.margin_head = head
    shard_margin_head(model, rank, WORLD)
    sharded = model.margin_head
    sampled = []
    original = sharded.sample_centers

    def recording(local_labels):
        index, remapped = original(local_labels)
        sampled.append(index + sharded.class_offset)
        return index, remapped

    sharded.sample_centers = recording
    features, labels = calls[0]
    local = features[_rows(rank)].clone().requires_grad_(True)
    output = sharded(local, labels[_rows(rank)])
    output.loss.backward()
    return {"loss": output.loss.detach(), "columns": sampled[0], "labels": output.labels,
            "logits_shape": tuple(output.logits.shape), "grad_finite": bool(local.grad.isfinite().all())}


def _worker_training(rank: int) -> dict:
    model = _tiny_model()
    shard_margin_head(model, rank, WORLD)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses, norms = [], []
    per_rank = TRAIN_BATCH // WORLD
    for pixels, labels in _train_batches():
        part = slice(rank * per_rank, (rank + 1) * per_rank)
        loss = ddp(pixel_values=pixels[part], labels=labels[part]).loss
        loss.backward()
        norms.append(clip_grad_norm_(model, MAX_NORM))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
    shard_param = model.margin_head.weight
    with gathered_margin_head(model) as full:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        full_type = type(full).__name__
    restored = model.margin_head.weight is shard_param
    # Resume: a fresh model, sharded, loads the full checkpoint and keeps its own rows.
    resumed = _tiny_model()
    shard_margin_head(resumed, rank, WORLD)
    resumed.load_state_dict(state)
    resume_ok = torch.equal(resumed.margin_head.weight, model.margin_head.weight)
    gather_margin_head(model)
    return {"losses": torch.stack(losses), "norms": torch.stack(norms), "state": state, "full_type": full_type,
            "restored": restored, "resume_ok": resume_ok, "gathered_type": type(model.margin_head).__name__,
            "gathered_weight": model.margin_head.weight.detach().clone(),
            "ignored": list(model._ddp_params_and_buffers_to_ignore)}


def _worker_trainer(rank: int, out_dir: str) -> dict:
    """The Trainer (Accelerate DDP on gloo) with the mixin: a run, then a run resumed from its step-2 checkpoint."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT="29555")
    results = {}
    for name, resume in (("straight", None), ("resumed", f"{out_dir}/straight/checkpoint-2")):
        model = _tiny_model()
        shard_margin_head(model, rank, WORLD)
        trainer = _trainer(model, f"{out_dir}/{name}", WORLD)
        trainer.train(resume_from_checkpoint=resume)
        results[name] = {"losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
                         "norms": [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]}
        with gathered_margin_head(model):
            results[name]["state"] = {k: v.clone() for k, v in model.state_dict().items()}
    return results


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {"heads": _worker_heads(rank), "partial_fc": _worker_partial_fc(rank),
                   "training": _worker_training(rank), "trainer": _worker_trainer(rank, out_dir)}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Results of :func:`_worker` on ranks 0 and 1."""
    folder = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(str(folder / "rendezvous"), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


# ---- two processes versus one --------------------------------------------------------------------------------


@pytest.mark.parametrize("margin_type", list(MARGINS))
def test_sharded_loss_and_gradients_equal_full_head(two_ranks, margin_type):
    head, calls = _head_case(margin_type)
    for call, (features, labels) in enumerate(calls):
        features = features.clone().requires_grad_(True)
        loss = head(features, labels).loss
        loss.backward()
        for rank in range(WORLD):
            got = two_ranks[rank]["heads"][margin_type][call]
            torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-6, atol=1e-6)
            # default feature_grad_scale = world size (cancels DDP's averaging of backbone gradients)
            torch.testing.assert_close(got["feature_grad"] / WORLD, features.grad[_rows(rank)], rtol=1e-5, atol=1e-7)
            for name, value in head.margin.named_buffers():
                torch.testing.assert_close(got["buffers"][name], value, rtol=1e-6, atol=1e-7)
        weight_grad = torch.cat([two_ranks[rank]["heads"][margin_type][call]["weight_grad"] for rank in range(WORLD)])
        torch.testing.assert_close(weight_grad, head.weight.grad, rtol=1e-5, atol=1e-7)
        head.weight.grad = None


def test_partial_fc_shards_keep_positives_and_match_the_union_of_sampled_centers(two_ranks):
    head, calls = _head_case("arcface", sample_rate=0.25, num_classes=40)
    features, labels = calls[0]
    parts = [two_ranks[rank]["partial_fc"] for rank in range(WORLD)]
    for rank, part in enumerate(parts):
        offset, num_local = class_shard_range(40, rank, WORLD)
        positives = labels[(labels >= offset) & (labels < offset + num_local)].unique()
        assert set(positives.tolist()) <= set(part["columns"].tolist())
        assert part["logits_shape"] == (len(labels), max(round(0.25 * num_local), len(positives)))
        assert part["grad_finite"] and math.isfinite(float(part["loss"]))
    owners = torch.stack([part["labels"] >= 0 for part in parts]).sum(0)
    assert owners.eq(1).all()  # every row's positive is sampled on exactly one rank
    # Reference: one process over the union of the sampled centers gives the same loss.
    columns = torch.cat([part["columns"] for part in parts])
    union = ClassCenterHead(DIM, len(columns), head.margin)
    union.weight.data = head.weight.data[columns]
    remapped = (labels.unsqueeze(1) == columns.unsqueeze(0)).long().argmax(1)
    expected = union(features, remapped).loss
    for part in parts:
        torch.testing.assert_close(part["loss"], expected, rtol=1e-6, atol=1e-6)


def test_ddp_training_with_sharded_head_equals_one_process(two_ranks):
    model = _tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses, norms = [], []
    for pixels, labels in _train_batches():
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
    assert min(norms) > MAX_NORM  # clipping was active: the global norm must have been right
    expected = model.state_dict()
    for rank in range(WORLD):
        got = two_ranks[rank]["training"]
        torch.testing.assert_close(got["losses"], torch.stack(losses), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["norms"], torch.stack(norms), rtol=1e-5, atol=1e-6)
        assert got["full_type"] == "ClassCenterHead" and got["restored"] and got["resume_ok"]
        assert got["state"].keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-4, atol=1e-5, msg=key)
        assert got["gathered_type"] == "ClassCenterHead" and got["ignored"] == []
        torch.testing.assert_close(got["gathered_weight"], expected["margin_head.weight"], rtol=1e-4, atol=1e-5)


def test_trainer_with_mixin_equals_one_process_and_resumes_exactly(two_ranks, tmp_path):
    model = _tiny_model()
    trainer = _trainer(model, tmp_path, 1)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    norms = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]
    assert len(losses) == TRAIN_STEPS and min(norms) > MAX_NORM  # clipping was active
    for rank in range(WORLD):
        for name in ("straight", "resumed"):
            got = two_ranks[rank]["trainer"][name]
            # (the resumed run's history starts with the checkpoint's entries for steps 1-2)
            np.testing.assert_allclose(got["losses"], losses, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["norms"], norms, rtol=1e-5, atol=1e-6)
            for key, value in model.state_dict().items():
                torch.testing.assert_close(got["state"][key], value, rtol=1e-4, atol=1e-5, msg=f"{name} {key}")


# ---- single-process unit tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes, world, expected", [
    (10, 3, [(0, 4), (4, 3), (7, 3)]),
    (12, 4, [(0, 3), (3, 3), (6, 3), (9, 3)]),
    (5, 5, [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]),
    (7, 1, [(0, 7)]),
])
def test_class_shard_range_known_splits(num_classes, world, expected):
    assert [class_shard_range(num_classes, rank, world) for rank in range(world)] == expected


@pytest.mark.parametrize("args", [(3, 0, 4), (10, 3, 3), (10, -1, 2), (10, 0, 0), (10, 0, 1.5), (10, True, 2)])
def test_class_shard_range_rejects_bad_input(args):
    with pytest.raises(ValueError):
        class_shard_range(*args)


@pytest.mark.parametrize("margin_type", ["arcface", "curricularface", "adaface"])
def test_world_size_one_shard_equals_full_head(margin_type):
    head, calls = _head_case(margin_type)
    model, reference = nn.Module(), copy.deepcopy(head)
    model.margin_head = head
    shard_margin_head(model, 0, 1)
    for features, labels in calls:
        a, b = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
        loss_a, loss_b = model.margin_head(a, labels).loss, reference(b, labels).loss
        (loss_a + loss_b).backward()
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(model.margin_head.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-7)
        model.margin_head.weight.grad = reference.weight.grad = None


def test_distributed_cross_entropy_matches_torch_and_gradcheck():
    torch.manual_seed(0)
    logits = (torch.randn(6, 5, dtype=torch.float64) * 20).requires_grad_(True)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = _DistributedCrossEntropy.apply(logits, labels, None, 1)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, labels))
    assert torch.autograd.gradcheck(lambda x: _DistributedCrossEntropy.apply(x, labels, None, 1), (logits,))


def test_shard_keeps_rows_rng_and_marks_ddp_ignore():
    model = _tiny_model()
    full = model.margin_head.weight.detach().clone()
    state = torch.get_rng_state()
    shard_margin_head(model, 1, 2)
    assert torch.equal(torch.get_rng_state(), state)  # no throw-away random init
    head = model.margin_head
    assert isinstance(head, ShardedClassCenterHead) and (head.class_offset, head.num_local_classes) == (7, 6)
    assert torch.equal(head.weight, full[7:])
    assert model._ddp_params_and_buffers_to_ignore == ["margin_head.weight"] and head.weight._ddp_ignored
    wrapper = nn.Module()
    wrapper.inner = model
    assert ddp_ignore_sharded_heads(wrapper) == ["inner.margin_head.weight"]
    # Resume: the full checkpoint row block of this rank is kept.
    replacement = torch.randn_like(full)
    model.load_state_dict({**model.state_dict(), "margin_head.weight": replacement})
    assert torch.equal(model.margin_head.weight, replacement[7:])


def test_shard_margin_head_rejects_bad_input():
    model = _tiny_model()
    with pytest.raises(ValueError, match="rank must be <"):
        shard_margin_head(model, 2, 2)
    with pytest.raises(ValueError, match="cannot shard"):
        shard_margin_head(model, 0, TRAIN_CLASSES + 1)
    with pytest.raises(ValueError, match="exactly one module"):
        shard_margin_head(nn.Linear(2, 2), 0, 2)
    shard_margin_head(model, 0, 2)
    with pytest.raises(ValueError, match="already sharded"):
        shard_margin_head(model, 0, 2)


def test_sharded_forward_validates_inputs_and_process_group():
    model = _tiny_model()
    shard_margin_head(model, 0, 1)
    head = model.margin_head
    with pytest.raises(ValueError, match="labels must lie"):
        head(torch.randn(2, 16), torch.tensor([0, TRAIN_CLASSES]))
    with pytest.raises(ValueError, match="integer"):
        head(torch.randn(2, 16), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="features"):
        head(torch.randn(2, 15), torch.tensor([0, 1]))
    two = _tiny_model()
    shard_margin_head(two, 0, 2)
    with pytest.raises(RuntimeError, match="not initialised"):
        two.margin_head(torch.randn(2, 16), torch.tensor([0, 1]))


def test_gather_helpers_single_process_and_clip_matches_torch():
    model = _tiny_model()
    full = model.margin_head.weight.detach().clone()
    gather_margin_head(model)  # not sharded: no-op
    shard_margin_head(model, 0, 1)
    shard = model.margin_head
    with gathered_margin_head(model) as head:
        assert type(head) is ClassCenterHead and torch.equal(head.weight, full)
    assert model.margin_head is shard
    loss = model(pixel_values=torch.randn(4, 3, 32, 32), labels=torch.tensor([0, 1, 2, 3])).loss
    loss.backward()
    reference = copy.deepcopy(model)
    for a, b in zip(model.parameters(), reference.parameters()):
        b.grad = a.grad.clone()  # deepcopy leaves .grad behind
    for norm_type in (2.0, float("inf")):
        got = clip_grad_norm_(model, 0.01, norm_type)
        expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.01, norm_type)
        torch.testing.assert_close(got, expected)
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(model, 1.0, 0.0)
    gather_margin_head(model)
    assert type(model.margin_head) is ClassCenterHead and torch.equal(model.margin_head.weight, full)
