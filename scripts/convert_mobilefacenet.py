"""Convert a MobileFaceNet checkpoint of Xiaoccer/MobileFaceNet_Pytorch (``068.ckpt``) to a transformers model.

Usage::

    python scripts/convert_mobilefacenet.py --checkpoint 068.ckpt --output converted/            # FaceRecModel
    python scripts/convert_mobilefacenet.py --checkpoint 068.ckpt --output converted/ --backbone-only

Every source key is mapped explicitly onto `MobileFaceNetModel` (see ``_mobilefacenet_target_key``); unmapped,
unexpected or missing keys and shape mismatches raise `CheckpointConversionError` listing all of them. The file is
loaded with ``torch.load(..., weights_only=True)``, so a malicious pickle cannot run code.

This module also holds the generic, checked key remapping (`remap_state_dict`) that ``convert_iresnet.py`` reuses.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from hf_facerec.models.configuration_mobilefacenet import MobileFaceNetConfig
from hf_facerec.models.modeling_mobilefacenet import MobileFaceNetModel

# The source repo's ConvBlock(conv, bn, prelu) modules and their homes here.
_CONV_BLOCKS = {
    "conv1": "stem",
    "dw_conv1": "stem_depthwise",
    "conv2": "conv_expand",
    "linear7": "pooler.gdc",
    "linear1": "pooler.projection",
}
_CONV_BLOCK_PARTS = {"conv": "convolution", "bn": "normalization", "prelu": "activation"}
# Bottleneck.conv is nn.Sequential(pw conv, bn, prelu, dw conv, bn, prelu, pw-linear conv, bn).
_BOTTLENECK_PARTS = {
    "0": "expand.convolution",
    "1": "expand.normalization",
    "2": "expand.activation",
    "3": "depthwise.convolution",
    "4": "depthwise.normalization",
    "5": "depthwise.activation",
    "6": "project.convolution",
    "7": "project.normalization",
}
_CONV_BLOCK_KEY = re.compile(r"^(?P<block>[a-z0-9_]+)\.(?P<part>conv|bn|prelu)\.(?P<tensor>\w+)$")
_BOTTLENECK_KEY = re.compile(r"^blocks\.(?P<index>\d+)\.conv\.(?P<part>\d+)\.(?P<tensor>\w+)$")
# BatchNorm's step counter: old checkpoints lack it and it does not change outputs, so it may be absent.
_OPTIONAL_SUFFIX = "num_batches_tracked"


class CheckpointConversionError(ValueError):
    """A checkpoint does not map exactly onto the target model (keys left over, missing, or of the wrong shape)."""


def load_torch_state_dict(path: str | Path, container_keys: tuple[str, ...] = ("state_dict", "model")) -> dict:
    """Load a ``{name: tensor}`` state dict from a torch checkpoint, safely (``weights_only=True``).

    Unwraps a training checkpoint dict (the first of ``container_keys`` present) and strips a ``module.`` prefix
    left by ``DataParallel``/DDP.

    Raises:
        CheckpointConversionError: if no tensor state dict is found.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in container_keys:
        if isinstance(checkpoint, Mapping) and key in checkpoint:
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointConversionError(
            f"{path} holds no tensor state dict under {container_keys} or at the top level; found {found}"
        )
    if checkpoint and all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: value for key, value in checkpoint.items()}
    return dict(checkpoint)


def remap_state_dict(
    source: Mapping[str, torch.Tensor],
    target_key: Callable[[str], str | None],
    expected: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename every source key with ``target_key`` and check the result against ``expected`` exactly.

    Args:
        source: the third-party state dict.
        target_key: source name -> target name, or None when the name has no mapping.
        expected: the target's state dict (or meta tensors with the right shapes): names and shapes to match.

    Returns:
        The renamed state dict, ready for ``load_state_dict``. Target ``num_batches_tracked`` buffers absent from
        the source are left out (the target keeps its own).

    Raises:
        CheckpointConversionError: listing every unmapped source key, key mapped to a name the target lacks, key
            mapped twice, target key left without a value, and shape mismatch, all at once.
    """
    renamed: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, tensor in source.items():
        new_key = target_key(key)
        if new_key is None:
            problems.append(f"unused source key (no mapping): {key} {tuple(tensor.shape)}")
        elif new_key not in expected:
            problems.append(f"source key {key} maps to {new_key}, which the target model does not have")
        elif new_key in renamed:
            problems.append(f"two source keys map to {new_key} (second: {key})")
        elif tuple(tensor.shape) != tuple(expected[new_key].shape):
            problems.append(
                f"shape mismatch: {key} {tuple(tensor.shape)} -> {new_key} {tuple(expected[new_key].shape)}"
            )
            renamed[new_key] = tensor
        else:
            renamed[new_key] = tensor
    missing = [k for k in expected if k not in renamed and not k.endswith(_OPTIONAL_SUFFIX)]
    problems += [f"target key without a source value: {key} {tuple(expected[key].shape)}" for key in missing]
    if problems:
        raise CheckpointConversionError(
            f"checkpoint does not map exactly onto the target ({len(problems)} problems):\n  " + "\n  ".join(problems)
        )
    return renamed


def _bottleneck_positions(config: MobileFaceNetConfig) -> list[tuple[int, int]]:
    """Flat block index -> (stage, index within stage), following ``config.bottleneck_settings``."""
    return [(stage, j) for stage, (_, _, repeats, _) in enumerate(config.bottleneck_settings) for j in range(repeats)]


def _mobilefacenet_target_key(key: str, positions: list[tuple[int, int]]) -> str | None:
    """Source key of the Xiaoccer layout -> `MobileFaceNetModel` key, or None when it has no mapping."""
    match = _BOTTLENECK_KEY.match(key)
    if match:
        index, part = int(match["index"]), match["part"]
        if index >= len(positions) or part not in _BOTTLENECK_PARTS:
            return None
        stage, j = positions[index]
        return f"stages.{stage}.{j}.{_BOTTLENECK_PARTS[part]}.{match['tensor']}"
    match = _CONV_BLOCK_KEY.match(key)
    if match and match["block"] in _CONV_BLOCKS:
        return f"{_CONV_BLOCKS[match['block']]}.{_CONV_BLOCK_PARTS[match['part']]}.{match['tensor']}"
    return None


def mobilefacenet_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> MobileFaceNetConfig:
    """Infer widths and input size from tensor shapes; the bottleneck table is the paper's (checked on load).

    The input size is 16x the GDC kernel (total stride 16), i.e. 112x96 for the 7x6 kernel of ``068.ckpt``.

    Raises:
        CheckpointConversionError: if the tensors the sizes are read from are absent.
    """
    needed = ("conv1.conv.weight", "conv2.conv.weight", "linear7.conv.weight", "linear1.conv.weight")
    absent = [key for key in needed if key not in state_dict]
    if absent:
        raise CheckpointConversionError(f"not a MobileFaceNet_Pytorch state dict: missing {absent}")
    stem = state_dict["conv1.conv.weight"]  # (stem_size, num_channels, 3, 3)
    kernel_height, kernel_width = state_dict["linear7.conv.weight"].shape[2:]
    return MobileFaceNetConfig(
        num_channels=int(stem.shape[1]),
        stem_size=int(stem.shape[0]),
        feature_size=int(state_dict["conv2.conv.weight"].shape[0]),
        embedding_size=int(state_dict["linear1.conv.weight"].shape[0]),
        image_size=[16 * int(kernel_height), 16 * int(kernel_width)],
    )


def convert_mobilefacenet_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: MobileFaceNetConfig
) -> dict[str, torch.Tensor]:
    """Map a MobileFaceNet_Pytorch state dict onto `MobileFaceNetModel(config)` names, checking every key/shape."""
    positions = _bottleneck_positions(config)
    with torch.device("meta"):  # shapes only: no memory, no init
        expected = MobileFaceNetModel(config).state_dict()
    return remap_state_dict(state_dict, lambda key: _mobilefacenet_target_key(key, positions), expected)


def load_mobilefacenet_checkpoint(path: str | Path) -> MobileFaceNetModel:
    """Load ``068.ckpt``-style checkpoints (``{"net_state_dict": ...}`` or a bare state dict) as an eval-mode model."""
    state_dict = load_torch_state_dict(path, container_keys=("net_state_dict", "state_dict", "model"))
    config = mobilefacenet_config_from_state_dict(state_dict)
    model = MobileFaceNetModel(config)
    load_converted(model, convert_mobilefacenet_state_dict(state_dict, config))
    return model.eval()


def load_converted(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """``load_state_dict`` of an already-checked mapping; only optional BatchNorm counters may stay missing."""
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    leftovers = [key for key in missing if not key.endswith(_OPTIONAL_SUFFIX)] + list(unexpected)
    if leftovers:
        raise CheckpointConversionError(f"unexpected load result: {leftovers}")


# --- FaceRecModel wrapping (needs the full hf_facerec package; imported lazily so the mapping works without it) ---
def wrap_as_facerec(
    backbone, embedding_head: str = "none", head_state_dict: Mapping[str, torch.Tensor] | None = None
):
    """Put a converted backbone inside a `FaceRecModel` (``pooling="pooler"``), in eval mode.

    Args:
        backbone: a converted `MobileFaceNetModel` or `IResNetModel`.
        embedding_head: ``"none"`` (MobileFaceNet: the pooled output is the embedding) or ``"linear_bn"``
            (insightface IResNet: fc + features).
        head_state_dict: for ``"linear_bn"``: ``embedding_head.linear.{weight,bias}`` and
            ``embedding_head.norm.{weight,bias,running_mean,running_var[,num_batches_tracked]}``.
    """
    from hf_facerec.models.configuration_facerec import FaceRecConfig
    from hf_facerec.models.modeling_facerec import FaceRecModel

    config = backbone.config
    head_state_dict = dict(head_state_dict or {})
    if embedding_head == "none":
        embedding_size = config.hidden_size
    else:
        embedding_size = int(head_state_dict["embedding_head.linear.weight"].shape[0])
    face_config = FaceRecConfig(
        backbone_config=config,
        embedding_size=embedding_size,
        pooling="pooler",
        embedding_head=embedding_head,
        image_size=config.image_size,
        num_channels=config.num_channels,
    )
    model = FaceRecModel(face_config, backbone=backbone)
    if head_state_dict:
        prefix = "embedding_head."
        head = remap_state_dict(
            head_state_dict,
            lambda key: key[len(prefix) :] if key.startswith(prefix) else None,
            model.embedding_head.state_dict(),
        )
        load_converted(model.embedding_head, head)
    return model.eval()


def save_face_model(model, output: str | Path, image_mean: list[float], image_std: list[float]) -> None:
    """save_pretrained the model plus a `FaceRecImageProcessor` with the checkpoint's input size and normalisation."""
    from hf_facerec.models.image_processing_facerec import FaceRecImageProcessor

    height, width = model.config.face_size
    processor = FaceRecImageProcessor(
        size={"height": height, "width": width}, image_mean=image_mean, image_std=image_std
    )
    model.save_pretrained(output)
    processor.save_pretrained(output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="path to the MobileFaceNet_Pytorch .ckpt")
    parser.add_argument("--output", required=True, help="folder to save_pretrained into")
    parser.add_argument(
        "--backbone-only", action="store_true", help="save the MobileFaceNetModel, not a FaceRecModel"
    )
    args = parser.parse_args(argv)

    backbone = load_mobilefacenet_checkpoint(args.checkpoint)
    print(f"converted {sum(p.numel() for p in backbone.parameters()):,} parameters, input {backbone.config.image_size}")
    if args.backbone_only:
        backbone.save_pretrained(args.output)
    else:
        # The source normalises pixels as (x - 127.5) / 128: mean 0.5, std 128/255 on the [0, 1] scale.
        save_face_model(wrap_as_facerec(backbone), args.output, [0.5] * 3, [128 / 255] * 3)
    print(f"saved to {args.output}")


if __name__ == "__main__":
    main()
