"""Multi-process start-up: mislaunched runs are refused, DDP's find_unused_parameters comes from the model, and
`accelerate launch --config_file configs/accelerate/cpu_ddp.yaml --num_processes 2` really trains on two processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from hf_facerec.training.launch import (
    check_launch,
    ddp_find_unused_parameters,
    launched_world_size,
    parameters_without_gradient,
)
from hf_facerec.training.trainer import prepare_model_for_finetuning
from tests.conftest import REPO_ROOT
from tests.models.tiny_backbones import BACKBONES
from tests.training.test_trainer import one_thread, tiny_args, tiny_model  # noqa: F401 (one_thread: autouse)

# What `accelerate launch` exports: its one-process launcher with --num_processes 2, and torchrun's rank 0 of 2.
SIMPLE_LAUNCHER_N2 = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
                      "ACCELERATE_MIXED_PRECISION": "no"}
TORCHRUN_N2 = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "ACCELERATE_MIXED_PRECISION": "no"}
# Trainable parameters each tiny backbone family leaves out of the loss (found by a real backward pass).
UNUSED = {"dinov2": ["facerec.backbone.embeddings.mask_token"],
          "clip_vision_model": ["facerec.backbone.post_layernorm.weight", "facerec.backbone.post_layernorm.bias"]}


# ---- check_launch --------------------------------------------------------------------------------------------
def test_one_process_launcher_asked_for_two_is_refused():
    with pytest.raises(ValueError, match="cpu_ddp.yaml --num_processes N"):
        check_launch(1, SIMPLE_LAUNCHER_N2)


def test_launched_processes_that_each_train_alone_are_refused():
    with pytest.raises(ValueError, match=r"2 processes were launched .* world of 1.*use_cpu: true"):
        check_launch(1, TORCHRUN_N2)
    with pytest.raises(ValueError, match="world of 3"):
        check_launch(3, TORCHRUN_N2)


@pytest.mark.parametrize("environ, world_size", [
    ({}, 1),  # python scripts/train.py
    ({"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no"}, 1),  # accelerate launch, cpu.yaml
    (TORCHRUN_N2, 2),
    ({"OMPI_COMM_WORLD_SIZE": "2", "ACCELERATE_USE_CPU": "True", "MASTER_PORT": "29500"}, 2),  # mpirun
    ({**TORCHRUN_N2, "WORLD_SIZE": "1"}, 1),
])
def test_consistent_launches_pass(environ, world_size):
    check_launch(world_size, environ)


def test_launched_world_size_reads_torchrun_then_mpi_and_rejects_junk():
    assert launched_world_size({}) is None
    assert launched_world_size({"PMI_SIZE": "4"}) == 4
    assert launched_world_size({"WORLD_SIZE": "2", "PMI_SIZE": "4"}) == 2
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        launched_world_size({"WORLD_SIZE": "two"})


# ---- find_unused_parameters from the model -------------------------------------------------------------------
@pytest.mark.parametrize("backbone", BACKBONES)
def test_parameters_without_gradient_per_backbone_family(backbone):
    model = tiny_model(backbone, image_size=56 if backbone == "swin" else 32)
    assert parameters_without_gradient(model) == UNUSED.get(backbone, [])


def test_probe_changes_nothing():
    model = tiny_model("dinov2", margin_type="adaface", partial_fc_sample_rate=0.5)  # margin stats, sampling
    model.facerec.backbone.eval()  # a mixed state must come back as it was
    state = {key: value.clone() for key, value in model.state_dict().items()}
    modes = [module.training for module in model.modules()]
    rng = torch.get_rng_state()
    assert parameters_without_gradient(model) == UNUSED["dinov2"]
    assert torch.equal(torch.get_rng_state(), rng)
    assert [module.training for module in model.modules()] == modes
    assert all(param.grad is None for param in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("mode, expected", [("full", True), ("lora", False), ("linear_probe", False)])
def test_find_unused_follows_what_trains(tmp_path, mode, expected):
    # Frozen parameters are skipped by DDP: DINOv2's unused mask_token only counts while it trains.
    model = prepare_model_for_finetuning(tiny_model("dinov2"), tiny_args(tmp_path, finetune_mode=mode))
    assert ddp_find_unused_parameters(model) is expected


def test_find_unused_false_for_full_vit_even_with_partial_fc():
    assert ddp_find_unused_parameters(tiny_model("vit", partial_fc_sample_rate=0.25)) is False


def test_find_unused_requested_values():
    assert ddp_find_unused_parameters(tiny_model("vit"), True) is True
    assert ddp_find_unused_parameters(tiny_model("vit"), False) is False
    with pytest.raises(ValueError, match="mask_token"):
        ddp_find_unused_parameters(tiny_model("dinov2"), False)


# ---- what the user ran ---------------------------------------------------------------------------------------
def _launch(tmp_path, accelerate_config: str, *flags: str, train_flags=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # the test runner's own launch must not leak into the one under test
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               f"configs/accelerate/{accelerate_config}", *flags, "scripts/train.py",
               "--config", "configs/train/tiny_synthetic.yaml", "--train_dataset", "synthetic:16:8",
               "--output_dir", str(tmp_path / "run"), *train_flags]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("accelerate_config, flags, train_flags", [
    ("cpu.yaml", ["--num_processes", "2"], []),  # the command: trained on one process, silently
    ("cpu_ddp.yaml", [], ["--use_cpu", "false"]),  # two processes that each train alone (no GPU here)
])
def test_mislaunched_two_process_run_is_refused(tmp_path, accelerate_config, flags, train_flags):
    if accelerate_config == "cpu_ddp.yaml" and torch.cuda.is_available():
        pytest.skip("with a GPU, use_cpu false trains on it")
    result = _launch(tmp_path, accelerate_config, *flags, train_flags=["--max_steps", "2", *train_flags])
    assert result.returncode != 0
    assert "hf-facerec train: error:" in result.stderr
    assert ("cpu_ddp.yaml --num_processes N" if accelerate_config == "cpu.yaml" else "use_cpu: true") in result.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_two_process_cpu_training(tmp_path):
    from transformers import AutoModel

    steps, batch = 20, 16
    result = _launch(tmp_path, "cpu_ddp.yaml", "--num_processes", "2", train_flags=[
        "--max_steps", str(steps), "--per_device_train_batch_size", str(batch), "--logging_steps", "5",
        "--save_steps", str(steps), "--warmup_steps", "2", "--log_level", "info"])
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"Total train batch size (w. parallel, distributed & accumulation) = {2 * batch}" in output
    run = tmp_path / "run"
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    # 128 images / (16 per rank x 2 ranks) = 4 steps per epoch; one process would be at epoch 2.5.
    assert history[-1]["epoch"] == pytest.approx(steps / 4)
    args = torch.load(run / f"checkpoint-{steps}" / "training_args.bin", weights_only=False)
    assert args.ddp_find_unused_parameters is False  # derived (only with world size > 1): every ViT weight trains
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == steps // 5 and losses[-1] < losses[0] - 1.0
    model = AutoModel.from_pretrained(run).eval()
    with torch.no_grad():
        embeddings = model(pixel_values=torch.randn(2, 3, 64, 64)).embeddings
    assert embeddings.shape == (2, 128) and torch.isfinite(embeddings).all()
