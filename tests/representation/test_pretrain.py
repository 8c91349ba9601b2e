"""SSL pre-training end to end on a tiny ViT: the loss falls, a killed run resumes exactly, and the saved folder
is a plain backbone that FaceRecModel and FaceRecTrainer (LoRA, full) start from."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainingArguments, ViTConfig

from hf_facerec.data.synthetic import make_synthetic_faces
from hf_facerec.representation.augment import MultiCropTransform
from hf_facerec.representation.data import load_unlabelled_images
from hf_facerec.representation.modeling import SSLModel
from hf_facerec.representation.trainer import SSLPretrainTrainer
from tests.training.test_trainer import one_thread  # noqa: F401  (autouse: one torch thread)

SIZE = 32


def tiny_vit() -> ViTConfig:
    return ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64)


def faces(n_local: int = 2):
    dataset = load_unlabelled_images(make_synthetic_faces(num_identities=8, images_per_identity=2, image_size=SIZE))
    dataset.set_transform(MultiCropTransform(SIZE, 16, n_global=2, n_local=n_local, seed=0))
    return dataset


def run(tmp_path, method="swav", max_steps=30, callbacks=(), resume=None, **extra):
    torch.manual_seed(0)
    model = SSLModel(tiny_vit(), method, image_size=SIZE, hidden_dim=64, projection_dim=16, n_prototypes=16)
    args = TrainingArguments(str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=2e-3,
                             remove_unused_columns=False, report_to=[], logging_steps=1, use_cpu=True, seed=0,
                             disable_tqdm=True, dataloader_num_workers=0, **extra)
    trainer = SSLPretrainTrainer(model, args, train_dataset=faces(), callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def losses(trainer):
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize("method", ["swav", "dino", "simsiam"])
def test_loss_falls_over_30_steps(tmp_path, method):
    values = losses(run(tmp_path, method, save_strategy="no"))
    assert len(values) == 30
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5, values


class _Kill(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 6:
            raise KeyboardInterrupt  # the job is killed after checkpoint-5 was written


def test_a_killed_run_resumes_exactly(tmp_path):
    common = dict(method="dino", max_steps=10, save_strategy="steps", save_steps=5)
    whole = run(tmp_path / "whole", **common).model.state_dict()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", callbacks=[_Kill()], **common)
    assert (tmp_path / "killed" / "checkpoint-5").is_dir() and not (tmp_path / "killed" / "checkpoint-10").exists()
    resumed = run(tmp_path / "killed", resume=True, **common).model.state_dict()
    assert whole.keys() == resumed.keys()
    for key in whole:  # teacher, centre, prototypes and backbone alike
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=1e-6, msg=key)


def test_saved_backbone_is_plain_and_fine_tunes(tmp_path):
    from transformers import AutoModel

    from hf_facerec.models import FaceRecModel
    from hf_facerec.training import FaceRecTrainer
    from hf_facerec.training.arguments import FaceRecTrainingArguments
    from hf_facerec.training.build import ModelArguments, build_model

    trainer = run(tmp_path / "ssl", "swav", max_steps=3, save_strategy="no")
    trainer.save_model(tmp_path / "backbone")
    keys = load_file(str(tmp_path / "backbone" / "model.safetensors")).keys()
    assert keys and not [k for k in keys if any(p in k for p in ("projector", "prototypes", "teacher", "predictor"))]
    ssl_backbone = trainer.model.backbone.state_dict()
    plain = AutoModel.from_pretrained(tmp_path / "backbone")
    face = FaceRecModel.from_backbone(str(tmp_path / "backbone"), embedding_size=16, image_size=SIZE)
    for name, tensor in face.backbone.state_dict().items():
        torch.testing.assert_close(tensor, ssl_backbone[name], msg=name)
    assert type(plain).__name__ == "ViTModel"
    assert face(torch.randn(2, 3, SIZE, SIZE)).embeddings.shape == (2, 16)

    pixels, labels = torch.randn(16, 3, SIZE, SIZE), torch.arange(16) % 4
    data = [{"pixel_values": p, "labels": y} for p, y in zip(pixels, labels)]
    for mode in ("lora", "full"):
        model = build_model(ModelArguments(backbone=str(tmp_path / "backbone"), embedding_size=16, image_size=SIZE),
                            num_identities=4, finetune_mode=mode)
        torch.testing.assert_close(model.facerec.backbone.embeddings.patch_embeddings.projection.weight,
                                   ssl_backbone["embeddings.patch_embeddings.projection.weight"])
        args = FaceRecTrainingArguments(str(tmp_path / mode), finetune_mode=mode, max_steps=2, use_cpu=True,
                                        per_device_train_batch_size=8, report_to=[], save_strategy="no",
                                        disable_tqdm=True, lora_rank=4)
        out = FaceRecTrainer(model=model, args=args, train_dataset=data).train()
        assert out.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))


def test_bad_input():
    with pytest.raises(ValueError, match="unknown SSL method"):
        SSLModel(tiny_vit(), "mae")
    with pytest.raises(ValueError, match="pre-training images"):
        load_unlabelled_images("/nonexistent/folder")
