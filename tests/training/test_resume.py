"""Resume: an interrupted run resumed from its checkpoint ends exactly where an uninterrupted run does; a training
script killed with SIGKILL resumes from its last complete checkpoint; the command line's config + flag handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_facerec.training.build import (
    build_model,
    last_complete_checkpoint,
    load_train_dataset,
    parse_train_arguments,
    resolve_resume_checkpoint,
)
from hf_facerec.training.trainer import FaceRecTrainer
from tests.training.test_trainer import TinyFaces, one_thread, step_losses, tiny_args, tiny_model  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "train" / "tiny_synthetic.yaml"


class _StopAt(TrainerCallback):
    """Stops training after `step` (as a crash would, but after the checkpoint of that step was written)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _run(output_dir, mode: str, stop_at: int | None = None, resume: str | None = None) -> FaceRecTrainer:
    # 48 images / batch 16 = 3 steps per epoch: step 5 is in the middle of the second epoch, so resuming must
    # skip the batches the sampler already gave. LoRA dropout (0.25) draws from the RNG restored from rng_state.pth.
    args = tiny_args(output_dir, finetune_mode=mode, max_steps=10, save_strategy="steps", save_steps=5,
                     warmup_steps=2, lr_scheduler_type="cosine", weight_decay=0.01)
    callbacks = [_StopAt(stop_at)] if stop_at else None
    trainer = FaceRecTrainer(model=tiny_model(seed=0, head_dropout=0.1), args=args,
                             train_dataset=TinyFaces(per_identity=6), callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, mode):
    reference = _run(tmp_path / "straight", mode)
    interrupted = _run(tmp_path / "cut", mode, stop_at=5)
    assert interrupted.state.global_step == 5 and (tmp_path / "cut" / "checkpoint-5" / "optimizer.pt").is_file()
    resumed = _run(tmp_path / "cut", mode, resume=str(tmp_path / "cut" / "checkpoint-5"))
    assert resumed.state.global_step == 10

    expected, got = reference.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # the optimizer moments and the schedule continued, not restarted
    expected_opt, got_opt = reference.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert expected_opt.keys() == got_opt.keys()
    for index in expected_opt:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(expected_opt[index][name], got_opt[index][name]), (index, name)
    assert reference.lr_scheduler.get_last_lr() == resumed.lr_scheduler.get_last_lr()
    # same batches in the same order after the resume point: the per-step losses of steps 6..10 agree
    assert step_losses(resumed)[-5:] == step_losses(reference)[-5:]


def _augmented_faces():
    """48 PNG faces (8 identities x 6) as a datasets.Dataset with the default ("light") augmentation."""
    import datasets
    from PIL import Image

    from hf_facerec.data.augment import default_train_augmentation, make_train_transform
    from hf_facerec.models import FaceRecImageProcessor

    faces = TinyFaces(per_identity=6)
    pixels = ((faces.pixels.clamp(-2, 2) + 2) * 63.75).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    dataset = datasets.Dataset.from_dict({"image": [Image.fromarray(p) for p in pixels],
                                          "label": faces.labels.tolist()}, features=features)
    processor = FaceRecImageProcessor(size={"height": 32, "width": 32})
    dataset.set_transform(make_train_transform(processor, default_train_augmentation("light", seed=0), seed=0))
    return dataset


def _run_augmented(output_dir, workers: int, stop_at: int | None = None, resume=None) -> FaceRecTrainer:
    args = tiny_args(output_dir, max_steps=10, save_strategy="steps", save_steps=5, warmup_steps=2,
                     dataloader_num_workers=workers)
    trainer = FaceRecTrainer(model=tiny_model(seed=0), args=args, train_dataset=_augmented_faces(),
                             callbacks=[_StopAt(stop_at)] if stop_at else None)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_with_the_default_augmentation_is_exact(tmp_path, workers):
    # Issue 13: the augmentation stream restarted with the process, so the resumed run diverged from step 6.
    reference = _run_augmented(tmp_path / "straight", workers)
    _run_augmented(tmp_path / "cut", workers, stop_at=5)
    resumed = _run_augmented(tmp_path / "cut", workers, resume=True)  # True: the newest complete checkpoint
    assert resumed.state.global_step == 10 and len(step_losses(reference)) == 10
    assert step_losses(resumed) == step_losses(reference)  # steps 1-5 from the checkpoint, 6-10 recomputed
    expected, got = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    # the whole run's mean loss, not the mean of steps 6-10 that transformers reports after a resume
    whole, after = sum(step_losses(reference)) / 10, sum(step_losses(reference)[5:]) / 5
    train_loss = resumed.state.log_history[-1]["train_loss"]
    assert train_loss == pytest.approx(whole, rel=1e-6) and train_loss != pytest.approx(after, rel=1e-3)
    assert reference.state.log_history[-1]["train_loss"] == pytest.approx(train_loss, rel=1e-12)


def test_augmentation_differs_across_epochs_and_samples_and_follows_the_seed(tmp_path):
    from transformers import set_seed

    from hf_facerec.training.sample_keys import KeyedTrainDataset

    def loader_epochs(seed: int) -> list[torch.Tensor]:
        set_seed(seed)
        args = tiny_args(tmp_path / str(seed), seed=seed, per_device_train_batch_size=48)
        loader = FaceRecTrainer(model=tiny_model(seed=0), args=args, train_dataset=_augmented_faces()
                                ).get_train_dataloader()
        assert isinstance(loader.dataset, KeyedTrainDataset)
        return [list(loader)[0]["pixel_values"] for _ in range(2)]  # each full pass is the next epoch

    first, second = loader_epochs(0)
    assert not torch.equal(first, second)  # another epoch: another shuffle and other augmentations
    assert all(torch.equal(x, y) for x, y in zip(loader_epochs(0), (first, second)))  # reproducible under set_seed
    assert not torch.equal(loader_epochs(1)[0], first)
    # per sample: index 3 is augmented differently in each epoch and differently from index 4, the same key twice
    keyed = KeyedTrainDataset(_augmented_faces(), _augmented_faces().format["format_kwargs"]["transform"])
    rows = keyed.__getitems__([(0, 0, 3), (0, 1, 3), (0, 2, 3), (0, 0, 4), (0, 0, 3)])
    pixels = [row["pixel_values"] for row in rows]
    assert not torch.equal(pixels[0], pixels[1]) and not torch.equal(pixels[1], pixels[2])
    assert torch.equal(pixels[0], pixels[4]) and rows[0]["labels"] == 3 and rows[3]["labels"] == 4


def test_last_complete_checkpoint_skips_a_half_written_one(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    complete = ("trainer_state.json", "model.safetensors")
    for step, files in ((10, complete), (20, complete), (25, ("trainer_state.json",)), (30, ("model.safetensors",))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "tmp-checkpoint-40" / "checkpoint-40").mkdir(parents=True)  # a save that was killed
    with caplog.at_level("WARNING", logger="hf_facerec.training.checkpoints"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")
    assert [r.getMessage() for r in caplog.records] == [
        f"Skipping incomplete checkpoint {tmp_path / 'checkpoint-30'} (no trainer_state.json)",
        f"Skipping incomplete checkpoint {tmp_path / 'checkpoint-25'} (no model weights)"]
    assert resolve_resume_checkpoint(tmp_path, "last") == str(tmp_path / "checkpoint-20")
    assert resolve_resume_checkpoint(tmp_path / "empty", "auto") is None
    assert resolve_resume_checkpoint(tmp_path, None) is None
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_resume_checkpoint(tmp_path / "empty", "last")
    with pytest.raises(ValueError, match=r"not a complete checkpoint folder \(no model weights\)"):
        resolve_resume_checkpoint(tmp_path, str(tmp_path / "checkpoint-25"))


class _SaveKilled(RuntimeError):
    pass


def test_a_save_killed_midway_leaves_no_checkpoint_and_resume_takes_the_previous_one(tmp_path, monkeypatch):
    """Checkpoints are written under tmp-checkpoint-N and renamed: a save that dies after the model weights
    leaves no checkpoint-10, `last` takes checkpoint-5, and the next save clears the leftover."""
    original = FaceRecTrainer._save_optimizer_and_scheduler

    def dies_at_step_10(self, output_dir):
        if self.state.global_step == 10:
            raise _SaveKilled(output_dir)
        return original(self, output_dir)

    monkeypatch.setattr(FaceRecTrainer, "_save_optimizer_and_scheduler", dies_at_step_10)
    with pytest.raises(_SaveKilled, match="tmp-checkpoint-10"):
        _run(tmp_path, "full")  # saves at 5 and 10
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-5", "tmp-checkpoint-10"]
    assert (tmp_path / "tmp-checkpoint-10" / "checkpoint-10" / "model.safetensors").is_file()  # the partial save
    assert resolve_resume_checkpoint(tmp_path, "last") == str(tmp_path / "checkpoint-5")

    monkeypatch.setattr(FaceRecTrainer, "_save_optimizer_and_scheduler", original)
    resumed = _run(tmp_path, "full", resume=True)  # True: the newest complete checkpoint, checkpoint-5
    assert resumed.state.global_step == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-5"]
    assert resolve_resume_checkpoint(tmp_path, "last") == str(tmp_path / "checkpoint-10")
    state = json.loads((tmp_path / "checkpoint-10" / "trainer_state.json").read_text())
    assert state["global_step"] == 10 and (tmp_path / "checkpoint-10" / "optimizer.pt").is_file()
    total = json.loads((tmp_path / "checkpoint-10" / "facerec_train_loss.json").read_text())
    assert total["global_step"] == 10 and total["loss_sum"] == pytest.approx(sum(step_losses(resumed)), rel=1e-6)


def test_saving_a_step_again_replaces_it_and_rotation_still_applies(tmp_path):
    from hf_facerec.training.checkpoints import publish_checkpoint

    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "old.txt").write_text("old")
    (tmp_path / "tmp-checkpoint-3" / "checkpoint-3").mkdir(parents=True)
    (tmp_path / "tmp-checkpoint-3" / "checkpoint-3" / "new.txt").write_text("new")
    publish_checkpoint(tmp_path / "tmp-checkpoint-3" / "checkpoint-3", tmp_path / "checkpoint-3")
    assert [p.name for p in (tmp_path / "checkpoint-3").iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "tmp-checkpoint-3"]  # caller removes it

    args = tiny_args(tmp_path / "run", max_steps=6, save_strategy="steps", save_steps=2, save_total_limit=2)
    FaceRecTrainer(model=tiny_model(seed=0), args=args, train_dataset=TinyFaces(per_identity=4)).train()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint-4", "checkpoint-6"]


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------
def test_config_file_with_flag_overrides(tmp_path):
    model_args, data_args, training_args = parse_train_arguments(
        ["--config", str(TINY_CONFIG), "--max_steps", "7", "--finetune_mode", "lora", "--output_dir", str(tmp_path),
         "--lora_target_modules", "q_proj", "k_proj", "--no_use_rslora"])
    assert (model_args.backbone, model_args.image_size, data_args.train_dataset) == ("tiny-vit", 64, "synthetic:64:8")
    assert training_args.max_steps == 7 and training_args.finetune_mode == "lora"  # flags win
    assert training_args.lora_target_modules == ["q_proj", "k_proj"] and training_args.use_rslora is False
    assert model_args.margin_kwargs == {"margin": 0.3} and model_args.margin_scale == 32.0  # from the file
    assert training_args.learning_rate == 2e-3 and training_args.output_dir == str(tmp_path)
    # without a config file: dataclass defaults
    model_args, data_args, training_args = parse_train_arguments(["--backbone", "iresnet18", "--train_dir", "x"])
    assert (model_args.embedding_size, data_args.augmentation, training_args.finetune_mode) == (512, "light", "full")
    assert training_args.remove_unused_columns is False and training_args.lora_rank == 16


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: tiny-vit\nnot_an_argument: 1\n")
    with pytest.raises(ValueError, match="not_an_argument"):
        parse_train_arguments(["--config", str(bad)])
    with pytest.raises(FileNotFoundError):
        parse_train_arguments(["--config", str(tmp_path / "missing.yaml")])
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        parse_train_arguments(["--config", str(listed)])
    model_args, data_args, _ = parse_train_arguments(["--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--backbone is required"):
        build_model(model_args, 10, "full")
    with pytest.raises(ValueError, match="exactly one of"):
        load_train_dataset(data_args, 32, 0)
    model_args, data_args, _ = parse_train_arguments(["--backbone", "tiny-vit", "--backbone_overrides", "{bad",
                                                      "--train_dataset", "synthetic:3"])
    with pytest.raises(ValueError, match="backbone_overrides"):
        build_model(model_args, 10, "full")
    with pytest.raises(ValueError, match="synthetic:N_IDENTITIES:N_IMAGES"):
        load_train_dataset(data_args, 32, 0)


def test_presets_build_from_config():
    model_args, _, _ = parse_train_arguments(["--backbone", "iresnet18", "--image_size", "112", "--embedding_size",
                                              "64", "--backbone_overrides", '{"hidden_dropout_prob": 0.0}'])
    model = build_model(model_args, 5, "full")
    assert model.config.backbone_type == "iresnet" and model.config.backbone_config.layers == [2, 2, 2, 2]
    assert model.margin_head.weight.shape == (5, 64)


def test_train_command_in_process(tmp_path):
    """`run` end to end (2 steps, lora, an identity folder of tiny PNGs): adapter, merged model and processor."""
    from PIL import Image

    from hf_facerec.cli import main

    rng = torch.Generator().manual_seed(0)
    for identity in ("alice", "bob", "carol"):
        (tmp_path / "faces" / identity).mkdir(parents=True)
        for index in range(2):
            pixels = (torch.rand(40, 40, 3, generator=rng) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "faces" / identity / f"{index}.png")
    dataset = load_train_dataset(parse_train_arguments(["--train_dir", str(tmp_path / "faces")])[1], 32, 0)
    assert len(dataset) == 6 and dataset.features["label"].names == ["alice", "bob", "carol"]

    out = tmp_path / "run"
    assert main(["train", "--config", str(TINY_CONFIG), "--train_dir", str(tmp_path / "faces"),
                              "--train_dataset", "", "--image_size", "32", "--max_steps", "2", "--save_steps", "1",
                              "--finetune_mode", "lora", "--output_dir", str(out)]) == 0
    assert {"model.safetensors", "preprocessor_config.json", "config.json", "train_results.json", "checkpoint-2",
            "adapter"} <= {p.name for p in out.iterdir()}
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "config.json").read_text())["num_identities"] == 3


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_sigkilled_training_script_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--config", str(TINY_CONFIG),
               "--output_dir", str(out), "--train_dataset", "synthetic:8:4", "--image_size", "32",
               "--embedding_size", "32", "--per_device_train_batch_size", "8", "--max_steps", "150",
               "--save_steps", "10", "--save_total_limit", "3", "--logging_steps", "10", "--augmentation", "light"]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while last_complete_checkpoint(out) is None:
            assert process.poll() is None, "the run ended before writing a checkpoint:\n" + process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    killed_at = json.loads(Path(last_complete_checkpoint(out), "trainer_state.json").read_text())["global_step"]
    assert 10 <= killed_at < 150 and not (out / "model.safetensors").exists()

    resumed = subprocess.run([*command, "--resume_from_checkpoint", "last"], env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr and f"checkpoint-{killed_at}" in resumed.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 150
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == list(range(10, 151, 10))  # the history before the kill came back with the checkpoint
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    # exactly the weights of a run never killed (augmentation and sampling are keyed by step, not by process)
    whole = tmp_path / "whole"
    command[command.index("--output_dir") + 1] = str(whole)
    uninterrupted = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    resumed_weights, whole_weights = load_file(out / "model.safetensors"), load_file(whole / "model.safetensors")
    assert resumed_weights.keys() == whole_weights.keys()
    for name, tensor in whole_weights.items():
        assert torch.equal(resumed_weights[name], tensor), name


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO_ROOT / "configs" / "train").glob("*.yaml")))
def test_shipped_train_configs_parse(name):
    # GPU configs ask for bf16, which TrainingArguments refuses on a machine without a GPU: overridden here.
    model_args, data_args, training_args = parse_train_arguments(
        ["--config", str(REPO_ROOT / "configs" / "train" / name), "--bf16", "false"])
    assert model_args.backbone and (data_args.train_dir or data_args.train_dataset)
    assert training_args.output_dir.startswith("outputs/")
    if training_args.finetune_mode == "lora":
        assert (training_args.lora_rank, training_args.lora_alpha, training_args.lora_dropout) == (16, 16.0, 0.25)


@pytest.mark.parametrize("name", ["cpu", "gpu", "ddp", "fsdp", "deepspeed_zero2"])
def test_shipped_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    expected = {"cpu": "NO", "gpu": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED"}[name]
    assert config.distributed_type.value == expected
    assert config.mixed_precision == ("no" if name == "cpu" else "bf16")
    if name == "fsdp":
        assert config.fsdp_config["fsdp_use_orig_params"] is True
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name == "deepspeed_zero2":
        assert config.deepspeed_config["zero_stage"] == 2


def test_hf_facerec_train_help(capsys):
    from hf_facerec.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--config", "--backbone", "--train_dataset", "--finetune_mode", "--lora_rank"))
