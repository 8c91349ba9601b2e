"""Convert an insightface IResNet ``backbone.pth`` (arcface_torch: r18/r34/r50/r100/r200) to a transformers model.

Usage::

    python scripts/convert_iresnet.py --checkpoint backbone.pth --output converted/                # FaceRecModel
    python scripts/convert_iresnet.py --checkpoint backbone.pth --output converted/ --backbone-only

insightface keys ``conv1, bn1, prelu, layer{1-4}.{j}.{bn1, conv1, bn2, prelu, conv2, bn3, downsample.{0,1}}, bn2``
map onto `IResNetModel`; ``fc`` (the flatten FC, 512*7*7 -> 512) and ``features`` (BatchNorm1d) are the face
model's embedding head: ``embedding_head.linear`` and ``embedding_head.norm`` of a ``FaceRecModel`` with
``embedding_head="linear_bn"``, ``pooling="pooler"``. Layer counts, widths and the input size are read from the
tensor shapes. Unmapped, unexpected or missing keys and shape mismatches raise `CheckpointConversionError`.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

# The generic checked remapping lives next door; running this file as a script puts scripts/ on sys.path, importing
# it as a module (tests) may not.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_mobilefacenet import (  # noqa: E402
    CheckpointConversionError,
    load_converted,
    load_torch_state_dict,
    remap_state_dict,
    save_face_model,
    wrap_as_facerec,
)

from hf_facerec.models.configuration_iresnet import IResNetConfig  # noqa: E402
from hf_facerec.models.modeling_iresnet import IResNetModel  # noqa: E402

_TOP_LEVEL = {
    "conv1": "embedder.convolution",
    "bn1": "embedder.normalization",
    "prelu": "embedder.activation",
    "bn2": "final_norm",
    "fc": "embedding_head.linear",
    "features": "embedding_head.norm",
}
_BLOCK_PARTS = {
    "bn1": "pre_norm",
    "conv1": "conv1",
    "bn2": "mid_norm",
    "prelu": "activation",
    "conv2": "conv2",
    "bn3": "post_norm",
    "downsample.0": "shortcut.convolution",
    "downsample.1": "shortcut.normalization",
}
_TOP_LEVEL_KEY = re.compile(r"^(?P<module>[a-z0-9]+)\.(?P<tensor>\w+)$")
_BLOCK_KEY = re.compile(r"^layer(?P<stage>\d+)\.(?P<block>\d+)\.(?P<part>[a-z0-9]+(?:\.\d)?)\.(?P<tensor>\w+)$")
HEAD_PREFIX = "embedding_head."


def _iresnet_target_key(key: str) -> str | None:
    """insightface key -> `IResNetModel` key (or ``embedding_head.*`` for fc/features), None when unmapped."""
    match = _BLOCK_KEY.match(key)
    if match:
        part = _BLOCK_PARTS.get(match["part"])
        stage = int(match["stage"]) - 1
        if part is None or stage < 0:
            return None
        return f"encoder.stages.{stage}.layers.{match['block']}.{part}.{match['tensor']}"
    match = _TOP_LEVEL_KEY.match(key)
    if match and match["module"] in _TOP_LEVEL:
        return f"{_TOP_LEVEL[match['module']]}.{match['tensor']}"
    return None


def iresnet_config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], image_size: int | None = None
) -> IResNetConfig:
    """Read layers, widths, channels and (unless given) the square input size off the tensor shapes.

    The input side is ``2**stages * sqrt(fc_in / hidden_sizes[-1])``: 112 for insightface's 512*7*7 FC.

    Raises:
        CheckpointConversionError: when the state dict is not an insightface IResNet, or the FC width does not fit
            a square map (pass ``image_size`` then).
    """
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            blocks.setdefault(int(match["stage"]), set()).add(int(match["block"]))
    if "conv1.weight" not in state_dict or not blocks or sorted(blocks) != list(range(1, len(blocks) + 1)):
        raise CheckpointConversionError(
            f"not an insightface IResNet state dict: conv1.weight or layer1..layerN blocks missing "
            f"(found stages {sorted(blocks)})"
        )
    layers = [len(blocks[stage]) for stage in sorted(blocks)]
    hidden_sizes = [int(state_dict[f"layer{stage}.0.conv1.weight"].shape[0]) for stage in sorted(blocks)]
    if image_size is None:
        if "fc.weight" not in state_dict:
            raise CheckpointConversionError("no fc.weight to read the input size from: pass image_size")
        side = math.isqrt(int(state_dict["fc.weight"].shape[1]) // hidden_sizes[-1])
        if side * side * hidden_sizes[-1] != state_dict["fc.weight"].shape[1]:
            raise CheckpointConversionError(
                f"fc.weight {tuple(state_dict['fc.weight'].shape)} does not flatten a square "
                f"{hidden_sizes[-1]}-channel map: pass image_size"
            )
        image_size = side * 2 ** len(layers)
    return IResNetConfig(
        layers=layers,
        hidden_sizes=hidden_sizes,
        num_channels=int(state_dict["conv1.weight"].shape[1]),
        image_size=image_size,
    )


def _expected_head(in_features: int, embedding_size: int) -> dict[str, torch.Tensor]:
    """Names and shapes of the "linear_bn" embedding head (Linear + BatchNorm1d), as meta tensors."""
    with torch.device("meta"):
        head = nn.ModuleDict(
            {"linear": nn.Linear(in_features, embedding_size), "norm": nn.BatchNorm1d(embedding_size)}
        )
    return {HEAD_PREFIX + key: value for key, value in head.state_dict().items()}


def convert_iresnet_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: IResNetConfig
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Map an insightface state dict onto `IResNetModel(config)` plus the embedding head, checking every key/shape.

    Returns:
        ``(backbone_state_dict, head_state_dict)``; the head's keys are ``embedding_head.linear.{weight,bias}`` and
        ``embedding_head.norm.{weight,bias,running_mean,running_var,num_batches_tracked}``; it is empty when the
        checkpoint has neither ``fc`` nor ``features``.
    """
    with torch.device("meta"):  # shapes only: no memory, no init
        expected = IResNetModel(config).state_dict()
    has_head = any(key.split(".")[0] in ("fc", "features") for key in state_dict)
    if has_head:
        sized = [key for key in ("fc.weight", "features.weight") if key in state_dict]
        embedding_size = int(state_dict[sized[0]].shape[0]) if sized else 0
        expected.update(_expected_head(config.hidden_size, embedding_size))
    renamed = remap_state_dict(state_dict, _iresnet_target_key, expected)
    head = {key: value for key, value in renamed.items() if key.startswith(HEAD_PREFIX)}
    backbone = {key: value for key, value in renamed.items() if not key.startswith(HEAD_PREFIX)}
    return backbone, head


def load_iresnet_checkpoint(
    path: str | Path, image_size: int | None = None
) -> tuple[IResNetModel, dict[str, torch.Tensor]]:
    """Load an insightface ``backbone.pth`` as an eval-mode `IResNetModel` and its embedding-head state dict."""
    state_dict = load_torch_state_dict(path)
    config = iresnet_config_from_state_dict(state_dict, image_size)
    backbone_state, head_state = convert_iresnet_state_dict(state_dict, config)
    model = IResNetModel(config)
    load_converted(model, backbone_state)
    return model.eval(), head_state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="path to insightface backbone.pth")
    parser.add_argument("--output", required=True, help="folder to save_pretrained into")
    parser.add_argument("--image-size", type=int, default=None, help="square input side (default: from fc.weight)")
    parser.add_argument("--backbone-only", action="store_true", help="save the IResNetModel without fc/features")
    args = parser.parse_args(argv)

    backbone, head_state = load_iresnet_checkpoint(args.checkpoint, args.image_size)
    head_parameters = sum(v.numel() for k, v in head_state.items() if k.endswith(("weight", "bias")))
    print(
        f"converted iresnet layers={backbone.config.layers}: {sum(p.numel() for p in backbone.parameters()):,} "
        f"backbone parameters + {head_parameters:,} embedding-head parameters"
    )
    if args.backbone_only or not head_state:
        backbone.save_pretrained(args.output)
    else:
        # arcface_torch normalises pixels as (x / 255 - 0.5) / 0.5.
        model = wrap_as_facerec(backbone, embedding_head="linear_bn", head_state_dict=head_state)
        save_face_model(model, args.output, [0.5] * 3, [0.5] * 3)
    print(f"saved to {args.output}")


if __name__ == "__main__":
    main()
