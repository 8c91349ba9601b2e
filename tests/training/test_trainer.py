"""FaceRecTrainer: loss falls in every finetune mode, what trains in each mode, parameter groups, errors.

Helpers here (`TinyFaces`, `tiny_model`, `tiny_args`, `one_thread`) are shared with test_peft.py / test_resume.py.
"""

from __future__ import annotations

import pytest
import torch

from hf_facerec.models import FaceRecConfig, FaceRecForMarginClassification, FaceRecImageProcessor, FaceRecModel
from hf_facerec.models.margins import CosFace
from hf_facerec.training import callbacks
from hf_facerec.training.arguments import FaceRecTrainingArguments
from hf_facerec.training.peft import trainable_parameter_counts
from hf_facerec.training.trainer import FaceRecTrainer, parameter_groups, prepare_model_for_finetuning
from tests.models.tiny_backbones import tiny_backbone_config

IMAGE_SIZE = 32


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: a second torch thread mostly waits on the other processes here; one is faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class TinyFaces(torch.utils.data.Dataset):
    """`num_identities * per_identity` (3, size, size) images: a random prototype per identity + noise."""

    def __init__(self, num_identities: int = 8, per_identity: int = 8, size: int = IMAGE_SIZE, noise: float = 0.5):
        generator = torch.Generator().manual_seed(1234)
        self.labels = torch.arange(num_identities * per_identity) % num_identities
        prototypes = torch.randn(num_identities, 3, size, size, generator=generator)
        self.pixels = prototypes[self.labels] + noise * torch.randn(len(self.labels), 3, size, size, generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


def tiny_model(backbone: str = "vit", num_identities: int = 8, seed: int = 0, image_size: int = IMAGE_SIZE,
               **fields) -> FaceRecForMarginClassification:
    torch.manual_seed(seed)
    fields = {"embedding_size": 16, "margin_scale": 16.0, "margin_kwargs": {"margin": 0.2}, **fields}
    config = FaceRecConfig(backbone_config=tiny_backbone_config(backbone, image_size), image_size=image_size,
                           num_identities=num_identities, **fields)
    return FaceRecForMarginClassification(config)


def tiny_args(output_dir, **overrides) -> FaceRecTrainingArguments:
    values = dict(
        output_dir=str(output_dir), max_steps=30, per_device_train_batch_size=16, learning_rate=3e-3,
        logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )
    values.update(overrides)
    return FaceRecTrainingArguments(**values)


def step_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, extra",
    [("full", {}), ("lora", {}), ("linear_probe", {}), ("scratch", {}), ("lora", {"peft_method": "dora"}),
     ("lora", {"peft_method": "loha"})],
    ids=["full", "lora", "linear_probe", "scratch", "dora", "loha"],
)
def test_loss_falls_over_30_steps(tmp_path, mode, extra):
    trainer = FaceRecTrainer(model=tiny_model(), args=tiny_args(tmp_path, finetune_mode=mode, **extra),
                             train_dataset=TinyFaces())
    trainer.train()
    losses = step_losses(trainer)
    assert len(losses) == 30 and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"{mode}: loss {first:.3f} -> {last:.3f}"


def test_lora_changes_only_adapter_and_heads(tmp_path):
    model = tiny_model()
    trainer = FaceRecTrainer(model=model, args=tiny_args(tmp_path, finetune_mode="lora", max_steps=5),
                             train_dataset=TinyFaces())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    backbone = model.facerec.backbone
    peft_trainable, _ = backbone.get_nb_trainable_parameters()
    heads = sum(p.numel() for p in model.facerec.embedding_head.parameters()) + model.margin_head.weight.numel()
    assert trainable_parameter_counts(model)["total"] == peft_trainable + heads
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == peft_trainable + heads
    trainer.train()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert all("lora_" in name or "embedding_head" in name or "margin_head" in name for name in trainable)
    # Every adapter matrix moved (lora_B starts at zero, so the adapter really learned), and the heads did.
    assert {name for name in trainable if "lora_B" in name} <= changed
    assert "margin_head.weight" in changed and "facerec.embedding_head.linear.weight" in changed


def test_linear_probe_keeps_backbone_bit_identical(tmp_path):
    # ResNet has BatchNorm (running statistics) in the backbone: they must not move either.
    model = tiny_model("resnet", head_dropout=0.1)
    backbone_before = {k: v.clone() for k, v in model.facerec.backbone.state_dict().items()}
    head_before = model.margin_head.weight.detach().clone()
    trainer = FaceRecTrainer(model=model, args=tiny_args(tmp_path, finetune_mode="linear_probe", max_steps=5),
                             train_dataset=TinyFaces())
    trainer.train()
    model.train()  # whoever switches the model to training mode, the frozen backbone stays in eval mode
    assert not model.facerec.backbone.training and not any(m.training for m in model.facerec.backbone.modules())
    assert model.facerec.embedding_head.training
    after = model.facerec.backbone.state_dict()
    assert any("running_mean" in key for key in after)
    assert all(torch.equal(after[key], value) for key, value in backbone_before.items())
    assert not torch.equal(model.margin_head.weight, head_before)
    counts = trainable_parameter_counts(model)
    assert counts["backbone"] == 0 and counts["margin_head"] == 8 * 16


def test_scratch_reinitialises_the_backbone_deterministically(tmp_path):
    models = []
    for _ in range(2):
        model = tiny_model()
        with torch.no_grad():
            for p in model.facerec.backbone.parameters():
                p.fill_(0.123)  # stands for pretrained weights
        prepare_model_for_finetuning(model, tiny_args(tmp_path, finetune_mode="scratch", seed=7))
        models.append(model)
    params = dict(models[0].facerec.backbone.named_parameters())
    assert all(not torch.all(p == 0.123) for p in params.values()), [n for n, p in params.items() if torch.all(p == 0.123)]
    for (name, a), b in zip(params.items(), models[1].facerec.backbone.parameters()):
        assert torch.equal(a, b), name
    assert all(p.requires_grad for p in models[0].parameters())


def test_parameter_groups_learning_rates_and_weight_decay(tmp_path):
    model = tiny_model("vit")
    args = tiny_args(tmp_path, learning_rate=1e-3, head_learning_rate=1e-2, weight_decay=0.05)
    groups = {group["name"]: group for group in parameter_groups(model, args)}
    assert list(groups) == ["backbone", "backbone_no_decay", "embedding_head", "embedding_head_no_decay", "margin_head"]
    names = {id(p): n for n, p in model.named_parameters()}
    named = {key: {names[id(p)] for p in group["params"]} for key, group in groups.items()}
    assert named["margin_head"] == {"margin_head.weight"}
    assert named["embedding_head"] == {"facerec.embedding_head.linear.weight"}
    # biases, norms (1-D), the CLS token and position embeddings (3-D) are not decayed; weight matrices are
    assert {"facerec.backbone.embeddings.cls_token", "facerec.backbone.embeddings.position_embeddings",
            "facerec.backbone.layers.0.attention.q_proj.bias"} <= named["backbone_no_decay"]
    assert "facerec.backbone.layers.0.attention.q_proj.weight" in named["backbone"]
    assert all(names[id(p)].endswith(("bias", "weight")) and p.ndim == 1
               for p in groups["embedding_head_no_decay"]["params"])
    assert [groups[k]["lr"] for k in groups] == [1e-3, 1e-3, 1e-2, 1e-2, 1e-2]
    assert [groups[k]["weight_decay"] for k in groups] == [0.05, 0.0, 0.05, 0.0, 0.05]
    # every trainable parameter is in exactly one group
    grouped = [id(p) for group in groups.values() for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()) and len(set(grouped)) == len(grouped)
    # the Trainer's optimizer uses them, and the scheduler keeps the ratio between parts
    trainer = FaceRecTrainer(model=model, args=tiny_args(tmp_path, learning_rate=1e-3, head_learning_rate=1e-2,
                                                         backbone_learning_rate=1e-4, max_steps=2),
                             train_dataset=TinyFaces())
    trainer.create_optimizer_and_scheduler(num_training_steps=2)
    lrs = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert lrs["backbone"] == 1e-4 and lrs["margin_head"] == 1e-2


def test_margin_settings_given_to_from_pretrained_rebuild_the_head_and_keep_the_centers(tmp_path):
    model = tiny_model()
    centers = model.margin_head.weight.detach().clone()
    model.save_pretrained(tmp_path / "model")
    model = FaceRecForMarginClassification.from_pretrained(
        tmp_path / "model", margin_type="cosface", margin_scale=30.0, margin_kwargs={"margin": 0.35},
        partial_fc_sample_rate=0.5,
    )
    head = model.margin_head
    assert isinstance(head.margin, CosFace) and head.margin.scale == 30.0 and head.margin.margin == 0.35
    assert head.sample_rate == 0.5 and torch.equal(head.weight, centers)
    assert (model.config.margin_type, model.config.margin_scale, model.config.margin_kwargs,
            model.config.partial_fc_sample_rate) == ("cosface", 30.0, {"margin": 0.35}, 0.5)


def test_margin_model_arguments_build_the_head_once():
    from hf_facerec.training.build import ModelArguments, build_model

    model_args = ModelArguments(backbone="tiny-vit", image_size=32, embedding_size=16, margin_type="cosface",
                                margin_scale=30.0, margin_kwargs='{"margin": 0.35}', partial_fc_sample_rate=0.5)
    model = build_model(model_args, num_identities=8, finetune_mode="full")
    head = model.margin_head
    assert isinstance(head.margin, CosFace) and head.margin.scale == 30.0 and head.margin.margin == 0.35
    assert head.sample_rate == 0.5
    assert (model.config.margin_type, model.config.margin_scale, model.config.margin_kwargs,
            model.config.partial_fc_sample_rate) == ("cosface", 30.0, {"margin": 0.35}, 0.5)
    # unset margin fields keep FaceRecConfig's defaults
    default = build_model(ModelArguments(backbone="tiny-vit", image_size=32, embedding_size=16), 8, "full")
    assert (default.config.margin_type, default.config.margin_scale) == ("arcface", 64.0)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"margin_scale": -1.0}, "margin_scale"),
        ({"margin_kwargs": "{not json"}, "margin_kwargs"),
        ({"margin_kwargs": "[1, 2]"}, "margin_kwargs"),
        ({"partial_fc_sample_rate": 0.0}, "partial_fc_sample_rate"),
    ],
)
def test_bad_margin_arguments_raise(overrides, match):
    from hf_facerec.training.build import ModelArguments

    with pytest.raises(ValueError, match=match):
        ModelArguments(backbone="tiny-vit", **overrides)


def test_verification_pairs_are_evaluated_on_the_eval_schedule(tmp_path, monkeypatch):
    calls = []

    def fake_evaluate_pair_sets(model, pair_sets, image_processor=None, batch_size=64, flip="none",
                                metric_key_prefix="eval"):
        calls.append((pair_sets, batch_size, flip, metric_key_prefix))
        return {f"{metric_key_prefix}_lfw_accuracy": 0.5 + 0.1 * len(calls)}

    # evaluate_pair_sets is replaced: this tests the trainer's wiring and the eval schedule, not the metrics.
    monkeypatch.setattr(callbacks, "evaluate_pair_sets", fake_evaluate_pair_sets)
    args = tiny_args(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                     verification_pairs=["lfw=/data/lfw.bin"], per_device_eval_batch_size=7,
                     metric_for_best_model="eval_lfw_accuracy", greater_is_better=True, load_best_model_at_end=True)
    trainer = FaceRecTrainer(model=tiny_model(), args=args, train_dataset=TinyFaces())
    trainer.train()
    assert calls == [(["lfw=/data/lfw.bin"], 7, "sum", "eval")] * 2
    logged = [entry["eval_lfw_accuracy"] for entry in trainer.state.log_history if "eval_lfw_accuracy" in entry]
    assert logged == pytest.approx([0.6, 0.7])
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-4")


def test_verification_metrics_on_a_real_pair_set(tmp_path):
    from hf_facerec.data.synthetic import make_synthetic_pairs

    pairs = make_synthetic_pairs(num_identities=12, pairs_per_fold=4, n_folds=2, images_per_identity=2,
                                 image_size=IMAGE_SIZE)
    pairs.save_to_disk(str(tmp_path / "pairs"))
    args = tiny_args(tmp_path / "run", max_steps=1, verification_pairs=[f"syn={tmp_path / 'pairs'}"],
                     verification_flip="none")
    trainer = FaceRecTrainer(model=tiny_model(), args=args, train_dataset=TinyFaces(),
                             processing_class=FaceRecImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}))
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_syn_accuracy"] <= 1.0 and "eval_syn_auc" in metrics
    assert trainer.state.log_history[-1]["eval_syn_accuracy"] == metrics["eval_syn_accuracy"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"finetune_mode": "prefix"}, "finetune_mode"),
        ({"peft_method": "ia3"}, "peft_method"),
        ({"lora_rank": 0}, "lora_rank"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"lora_target_modules": []}, "lora_target_modules"),
        ({"head_learning_rate": -1.0}, "head_learning_rate"),
        ({"verification_flip": "both"}, "verification_flip"),
    ],
)
def test_bad_arguments_raise(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_args(tmp_path, **overrides)


def test_trainer_errors(tmp_path):
    args = tiny_args(tmp_path)
    with pytest.raises(ValueError, match="margin head"):
        FaceRecTrainer(model=FaceRecModel(tiny_model().config), args=args)
    with pytest.raises(ValueError, match="FaceRecTrainingArguments"):
        FaceRecTrainer(model=tiny_model(), args=None)
    with pytest.raises(ValueError, match="needs a model"):
        FaceRecTrainer(model=None, args=args)
    model = tiny_model()
    prepare_model_for_finetuning(model, tiny_args(tmp_path, finetune_mode="linear_probe"))
    with pytest.raises(ValueError, match="already prepared"):
        prepare_model_for_finetuning(model, args)
    trainer = FaceRecTrainer(model=tiny_model(), args=args, train_dataset=TinyFaces())
    with pytest.raises(ValueError, match="labels"):
        trainer.compute_loss(trainer.model, {"pixel_values": torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)})
    with pytest.raises(ValueError, match="No default adapter target modules"):
        prepare_model_for_finetuning(_model_of_unknown_family(), tiny_args(tmp_path, finetune_mode="lora"))


def _model_of_unknown_family() -> FaceRecForMarginClassification:
    from transformers import LevitConfig

    config = FaceRecConfig(backbone_config=LevitConfig(image_size=IMAGE_SIZE, hidden_sizes=[16, 32, 48],
                                                       num_attention_heads=[1, 1, 1], depths=[1, 1, 1],
                                                       key_dim=[8, 8, 8]),
                           pooling="mean", embedding_size=16, image_size=IMAGE_SIZE, num_identities=4)
    return FaceRecForMarginClassification(config)


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    """Two accumulated half batches = one full batch: the Trainer divides our per-batch mean loss by 2."""
    results = []
    for batch, accumulation in ((16, 1), (8, 2)):
        model = tiny_model(head_dropout=0.0, embedding_head="linear")
        args = tiny_args(tmp_path, max_steps=1, per_device_train_batch_size=batch,
                         gradient_accumulation_steps=accumulation, learning_rate=1e-2, optim="sgd",
                         weight_decay=0.0, lr_scheduler_type="constant")
        FaceRecTrainer(model=model, args=args, train_dataset=TinyFaces(num_identities=8, per_identity=2)).train()
        results.append(model.margin_head.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-6)
