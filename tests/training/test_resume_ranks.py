"""Two ranks (DDP on gloo) with the default augmentation: a run cut at step 4 (mid second epoch) and resumed ends
bit-identically where the uninterrupted two-rank run does, and the ranks augment different images."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _run(out_dir: str, rank: int, stop_at: int | None = None, resume=None) -> dict:
    from hf_facerec.training.trainer import FaceRecTrainer
    from tests.training.test_resume import _augmented_faces, _StopAt
    from tests.training.test_trainer import step_losses, tiny_args, tiny_model

    # 48 images, 2 ranks x 8 per step: 3 steps an epoch, so step 4 is inside the second epoch.
    args = tiny_args(out_dir, max_steps=8, per_device_train_batch_size=8, save_strategy="steps", save_steps=4)
    trainer = FaceRecTrainer(model=tiny_model(seed=0), args=args, train_dataset=_augmented_faces(),
                             callbacks=[_StopAt(stop_at)] if stop_at else None)
    first = next(iter(trainer.get_train_dataloader()))["pixel_values"]
    trainer.train(resume_from_checkpoint=resume)
    return {"losses": step_losses(trainer), "state": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "first_batch": first, "train_loss": trainer.state.log_history[-1]["train_loss"]}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT="29561")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {"straight": _run(f"{out_dir}/straight", rank)}
        _run(f"{out_dir}/cut", rank, stop_at=4)
        results["resumed"] = _run(f"{out_dir}/cut", rank, resume=True)
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(str(folder / "rendezvous"), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


@pytest.mark.slow
def test_two_ranks_resume_exactly_with_the_default_augmentation(two_ranks):
    for rank in range(WORLD):
        straight, resumed = two_ranks[rank]["straight"], two_ranks[rank]["resumed"]
        assert len(straight["losses"]) == 8 and resumed["losses"] == straight["losses"]
        assert all(torch.equal(straight["state"][k], resumed["state"][k]) for k in straight["state"])
        assert resumed["train_loss"] == pytest.approx(sum(straight["losses"]) / 8, rel=1e-6)
    assert not torch.equal(two_ranks[0]["straight"]["first_batch"], two_ranks[1]["straight"]["first_batch"])
