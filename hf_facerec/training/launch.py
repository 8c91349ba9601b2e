"""Multi-process start-up: refuse a launch that would silently train on fewer processes, and DDP's settings.

``accelerate launch`` starts several local processes only through torchrun, which it uses for
``distributed_type: MULTI_GPU`` (also with ``use_cpu: true``: configs/accelerate/cpu_ddp.yaml).  With
``distributed_type: "NO"`` (configs/accelerate/cpu.yaml) or ``MULTI_CPU`` without an mpirun hostfile it runs
*one* process whatever ``--num_processes`` says, and a torchrun process that did not ask for the CPU on a machine
without GPUs trains alone.  :func:`check_launch` turns both into an error at start-up.

:func:`ddp_find_unused_parameters` derives DDP's ``find_unused_parameters`` from the model: True only when
some trainable parameter gets no gradient from the training loss (DINOv2's ``mask_token`` under full
fine-tuning), since otherwise it costs a graph traversal per step.  Frozen parameters (LoRA, linear probe) are
skipped by DDP and do not count; Partial FC indexes the whole center matrix, which so gets a gradient.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["check_launch", "ddp_find_unused_parameters", "launched_world_size", "parameters_without_gradient"]

logger = logging.getLogger(__name__)

# torchrun / accelerate (WORLD_SIZE), then the MPI launchers accelerate's MULTI_CPU reads.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
MULTI_PROCESS_CPU_CONFIG = "configs/accelerate/cpu_ddp.yaml"


def launched_world_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The process count the launcher announced (torchrun's ``WORLD_SIZE``, MPI's sizes), or None if none did."""
    environ = os.environ if environ is None else environ
    for name in WORLD_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} in the environment is not a process count") from None
    return None


def check_launch(world_size: int, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``ValueError`` when the processes asked for and the ``world_size`` the Trainer sees differ.

    Two silent failures are caught: ``accelerate launch --num_processes N>1`` with a config whose launcher runs
    one process (it exports MASTER_ADDR / MASTER_PORT for N>1 but no WORLD_SIZE), and N launched processes that
    each see a world of 1 (torchrun without ``use_cpu`` on a machine without GPUs: N separate runs, one folder).
    """
    environ = os.environ if environ is None else environ
    announced = launched_world_size(environ)
    if announced is None:
        # accelerate's one-process launcher sets ACCELERATE_USE_CPU always and MASTER_PORT only for N > 1.
        if world_size == 1 and "ACCELERATE_USE_CPU" in environ and "MASTER_PORT" in environ:
            raise ValueError(
                "accelerate launch was asked for more than one process, but this config's distributed_type (\"NO\", "
                "or MULTI_CPU without an mpirun hostfile) starts just one, which would train alone: on CPUs use "
                f"`accelerate launch --config_file {MULTI_PROCESS_CPU_CONFIG} --num_processes N`, or drop "
                "--num_processes for one process (if your shell exports MASTER_ADDR/MASTER_PORT, unset them)")
        return
    if announced != world_size:
        hint = (" set use_cpu: true in the training config (--use_cpu true) on a machine without GPUs"
                if world_size == 1 else " check the launcher's and the process group's settings")
        raise ValueError(f"{announced} processes were launched (WORLD_SIZE={announced}) but the Trainer sees a world "
                         f"of {world_size}, so each would train on its own:{hint}")


def _trainable(model: nn.Module) -> dict[int, str]:
    return {id(param): name for name, param in model.named_parameters() if param.requires_grad}


@torch.no_grad()
def _probe_inputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    config = model.config
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    height, width = config.face_size
    generator = torch.Generator().manual_seed(0)  # a private generator: the global RNG stream stays as it was
    pixels = torch.randn(2, getattr(config, "num_channels", 3), height, width, generator=generator)
    labels = torch.arange(2) % max(int(config.num_identities), 1)
    return pixels.to(device, dtype), labels.to(device)


def parameters_without_gradient(model: nn.Module) -> list[str]:
    """Names of ``model``'s trainable parameters that the training loss does not reach (DDP's "unused" ones).

    One forward pass of two random ``(2, C, H, W)`` faces (``config.face_size``) with labels, in eval mode so that
    no BatchNorm statistics, margin statistics, dropout or Partial FC draw moves; the autograd graph of the loss
    is walked, nothing is backpropagated and no ``.grad`` is touched.  Module modes are restored.
    """
    trainable = _trainable(model)
    if not trainable:
        return []
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        pixels, labels = _probe_inputs(model)
        with torch.enable_grad():
            loss = model(pixel_values=pixels, labels=labels)["loss"]
    finally:
        for module, mode in modes.items():
            module.training = mode  # direct: a frozen backbone's overridden train() must not run
    reached, stack, seen = set(), [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold the leaf they write to
        if variable is not None:
            reached.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return [name for key, name in trainable.items() if key not in reached]


def ddp_find_unused_parameters(model: nn.Module, requested: bool | None = None) -> bool:
    """DDP's ``find_unused_parameters`` for ``model``: ``requested`` if given, else whether a trainable
    parameter gets no gradient (:func:`parameters_without_gradient`).

    ``requested=False`` with such parameters raises ``ValueError`` naming them: DDP would stop at the second
    step ("Expected to have finished reduction in the prior iteration").
    """
    if requested is True:
        return True
    unused = parameters_without_gradient(model)
    if unused and requested is False:
        raise ValueError(f"ddp_find_unused_parameters=False, but these trainable parameters get no gradient and DDP "
                         f"would stop at the second step: {', '.join(unused)} (leave it unset, or freeze them)")
    if unused:
        logger.info("DDP find_unused_parameters=True: no gradient reaches %s", ", ".join(unused))
    return bool(unused)
