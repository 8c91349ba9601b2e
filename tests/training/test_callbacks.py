"""Verification during training: pair-set metrics (known answers, a cross-check), peft, and the Trainer routes."""

from __future__ import annotations

import copy
import io
import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import Trainer, TrainingArguments, ViTConfig

from hf_facerec import FaceEmbedder
from hf_facerec.data.pairs import make_pair_dataset
from hf_facerec.evaluation import cosine_similarity, verification_report
from hf_facerec.models import FaceRecConfig, FaceRecForMarginClassification
from hf_facerec.training.callbacks import (
    VerificationCallback,
    evaluate_pair_sets,
    load_pair_sets,
    pair_set_metric_names,
)

SIZE = 32


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_pairs(folds: int = 5, per_fold: int = 4, seed: int = 0, noise: float = 0.0):
    """Per fold half genuine pairs (an image and a copy with ``noise`` std added) and half impostor pairs."""
    rng = np.random.default_rng(seed)
    first, second, same, fold = [], [], [], []
    for k in range(folds):
        for j in range(per_fold):
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3))
            genuine = j < per_fold // 2
            first.append(_png(pixels))
            other = pixels + rng.normal(0, noise, pixels.shape) if genuine else rng.integers(0, 256, pixels.shape)
            second.append(_png(np.clip(other, 0, 255)))
            same.append(genuine)
            fold.append(k)
    return make_pair_dataset(first, second, same, fold)


def _tiny_model() -> FaceRecForMarginClassification:
    torch.manual_seed(0)
    backbone = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)
    config = FaceRecConfig(backbone_config=backbone, image_size=SIZE, embedding_size=16, embedding_head="linear",
                           num_identities=6, margin_scale=16.0)
    return FaceRecForMarginClassification(config)


class _MeanColor(nn.Module):
    """Stub embedding model: the feature is the image's mean normalised colour (3,); counts images seen."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(3))
        self.config = SimpleNamespace(face_size=(SIZE, SIZE))
        self.images_seen = 0

    def forward(self, pixel_values):
        self.images_seen += pixel_values.shape[0]
        return SimpleNamespace(features=pixel_values.mean(dim=(2, 3)) * self.gain)


def _solid(color) -> bytes:
    return _png(np.broadcast_to(np.array(color, np.uint8), (SIZE, SIZE, 3)))


def test_known_answer_on_solid_colours():
    # Colours normalise to +-1 per channel: red . red = 1, red . green = -1/3, ...: every genuine pair scores 1,
    # every impostor -1/3 or less, so accuracy 1, EER 0, AUC 1; 10 impostors resolve FAR 0.1 but not 0.01.
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    first, second, same, folds = [], [], [], []
    for k, colour in enumerate(colours):
        other = colours[(k + 1) % len(colours)]
        first += [_solid(colour), _solid(colour), _solid(colour), _solid(other)]
        second += [_solid(colour), _solid(colour), _solid(other), _solid(colour)]
        same += [True, True, False, False]
        folds += [k] * 4
    model = _MeanColor()
    metrics = evaluate_pair_sets(model, {"colours": make_pair_dataset(first, second, same, folds)},
                                 fars=(0.1, 0.01), metric_key_prefix="eval")
    assert list(metrics) == pair_set_metric_names("colours", (0.1, 0.01))
    assert metrics["eval_colours_accuracy"] == 1.0 and metrics["eval_colours_accuracy_std"] == 0.0
    assert metrics["eval_colours_tar_at_far_1e-01"] == 1.0 and math.isnan(metrics["eval_colours_tar_at_far_1e-02"])
    assert metrics["eval_colours_eer"] == 0.0 and metrics["eval_colours_auc"] == 1.0
    assert model.images_seen == len(colours)  # 40 image slots, 5 distinct images: each embedded once


def test_metrics_equal_an_independent_per_pair_computation():
    model = _tiny_model()
    pairs = _noise_pairs(noise=60.0)  # genuine pairs differ: no ties at score 1
    fars = (0.1,)
    got = evaluate_pair_sets(model, {"toy": pairs}, flip="sum", batch_size=7, fars=fars)
    embedder = FaceEmbedder(model.facerec, flip="sum")
    scores = cosine_similarity(embedder(list(pairs["image1"])), embedder(list(pairs["image2"])))
    report = verification_report(scores, np.asarray(pairs["is_same"]), folds=np.asarray(pairs["fold"]), fars=fars)
    expected = [report["accuracy"], report["accuracy_std"], report["tar_at_far"]["1e-01"], report["eer"],
                report["auc"]]
    np.testing.assert_allclose([got[key] for key in pair_set_metric_names("toy", fars)], expected, atol=1e-6)


def test_peft_model_is_evaluated_with_its_adapter_and_training_flags_survive():
    from peft import LoraConfig, get_peft_model

    base = _tiny_model()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(parameter, std=0.5)  # a non-zero adapter, so it changes the embeddings
    model.train()
    model.get_base_model().facerec.backbone.eval()  # a frozen, eval-mode backbone (linear probe style)
    pairs = {"toy": _noise_pairs(seed=1, noise=60.0)}
    got = evaluate_pair_sets(model, pairs, fars=(0.1,))
    assert not model.get_base_model().facerec.backbone.training and model.get_base_model().margin_head.training
    merged = copy.deepcopy(model).merge_and_unload()
    np.testing.assert_allclose(list(got.values()), list(evaluate_pair_sets(merged, pairs, fars=(0.1,)).values()),
                               atol=1e-6)
    # ... and the adapter does change the embeddings, so the equality above means it was used.
    images = list(pairs["toy"]["image1"])[:4]
    with_adapter = FaceEmbedder(model.get_base_model().facerec)(images)
    with model.disable_adapter():
        without_adapter = FaceEmbedder(model.get_base_model().facerec)(images)
    assert np.abs(with_adapter - without_adapter).max() > 1e-2


def test_load_pair_sets_from_files(tmp_path):
    rng = np.random.default_rng(0)
    images = [_png(rng.integers(0, 256, (SIZE, SIZE, 3))) for _ in range(4)]
    for index, image in enumerate(images):
        (tmp_path / f"{index}.png").write_bytes(image)
    (tmp_path / "set.csv").write_text("path1,path2,label,fold\n0.png,1.png,1,0\n2.png,3.png,0,1\n")
    with open(tmp_path / "tiny.bin", "wb") as handle:
        pickle.dump((images * 5, [True, False] * 5), handle)  # 10 pairs: insightface's 10 folds
    lfw = tmp_path / "lfw"
    for name in ("Ann", "Bob"):
        (lfw / "images" / name).mkdir(parents=True)
        (lfw / "images" / name / f"{name}_0001.jpg").write_bytes(images[0])
        (lfw / "images" / name / f"{name}_0002.jpg").write_bytes(images[1])
    (lfw / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t2\n")
    saved = tmp_path / "saved"
    _noise_pairs(folds=2, per_fold=2).save_to_disk(str(saved))
    sets = load_pair_sets([str(tmp_path / "set.csv"), f"b={tmp_path / 'tiny.bin'}", str(lfw), f"disk={saved}"])
    assert {name: len(ds) for name, ds in sets.items()} == {"set": 2, "b": 10, "lfw": 2, "disk": 4}
    assert sets["lfw"]["is_same"] == [True, False]
    assert load_pair_sets(str(lfw / "pairs.txt")).keys() == {"lfw"}


@pytest.mark.parametrize("spec, match", [
    ([], "empty"),
    (["a=x.bin", "a=y.bin"], "twice"),
    (["weird.json"], "cannot read"),
    ({"bad name": None}, "without spaces"),
    (42, "mapping or a sequence"),
])
def test_load_pair_sets_rejects_bad_specs(tmp_path, spec, match):
    if spec == ["a=x.bin", "a=y.bin"]:
        with open(tmp_path / "x.bin", "wb") as handle:
            pickle.dump(([_solid((0, 0, 0))] * 20, [True] * 10), handle)
        spec = [f"a={tmp_path / 'x.bin'}", f"a={tmp_path / 'x.bin'}"]
    with pytest.raises(ValueError, match=match):
        load_pair_sets(spec)


def test_bad_arguments_raise():
    pairs = {"toy": _noise_pairs(folds=2, per_fold=2)}
    with pytest.raises(ValueError, match="flip"):
        VerificationCallback(pairs, flip="mirror")
    with pytest.raises(ValueError, match="eval_steps"):
        VerificationCallback(pairs, eval_steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        VerificationCallback(pairs, batch_size=0)
    with pytest.raises(ValueError, match="distinct"):
        VerificationCallback(pairs, fars=(1e-3, 0.001))
    with pytest.raises(ValueError, match="distinct"):
        evaluate_pair_sets(_MeanColor(), pairs, fars=())
    with pytest.raises(ValueError, match="lacks column"):
        load_pair_sets({"x": pairs["toy"].remove_columns("is_same")})


# ---- inside a Trainer ---------------------------------------------------------------------------------------


def _train_data(count: int = 16):
    generator = torch.Generator().manual_seed(5)
    return [{"pixel_values": torch.randn(3, SIZE, SIZE, generator=generator), "labels": torch.tensor(i % 6)}
            for i in range(count)]


def _args(tmp_path, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                             use_cpu=True, report_to="none", logging_steps=100, remove_unused_columns=False,
                             metric_for_best_model="eval_toy_accuracy", load_best_model_at_end=True,
                             save_only_model=True, **kwargs)


def test_callback_own_schedule_logs_and_keeps_the_best_checkpoint(tmp_path):
    callback = VerificationCallback({"toy": _noise_pairs()}, eval_steps=2, fars=(0.1,))
    trainer = Trainer(model=_tiny_model(), args=_args(tmp_path, save_strategy="best"), train_dataset=_train_data(),
                      callbacks=[callback])
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_toy_accuracy" in entry]
    assert [entry["step"] for entry in logged] == [2, 4]
    best = max(logged, key=lambda entry: (entry["eval_toy_accuracy"], -entry["step"]))
    assert trainer.state.best_metric == best["eval_toy_accuracy"]
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    assert (tmp_path / f"checkpoint-{best['step']}" / "model.safetensors").is_file()


def test_callback_adds_its_metrics_to_trainer_evaluations(tmp_path):
    callback = VerificationCallback({"toy": _noise_pairs()}, fars=(0.1,))
    args = _args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2)
    trainer = Trainer(model=_tiny_model(), args=args, train_dataset=_train_data(), eval_dataset=_train_data(8),
                      callbacks=[callback])
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4]
    assert all("eval_toy_auc" in entry for entry in evaluations)  # merged into the Trainer's own log entry
    assert trainer.state.best_metric == max(entry["eval_toy_accuracy"] for entry in evaluations)
    assert trainer.state.best_model_checkpoint is not None


def test_callback_rejects_two_competing_schedules(tmp_path):
    callback = VerificationCallback({"toy": _noise_pairs(folds=2, per_fold=2)}, eval_steps=2)
    args = _args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2)
    trainer = Trainer(model=_tiny_model(), args=args, train_dataset=_train_data(), eval_dataset=_train_data(4),
                      callbacks=[callback])
    with pytest.raises(ValueError, match="eval_strategy='no'"):
        trainer.train()
