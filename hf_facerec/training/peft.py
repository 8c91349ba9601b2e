"""PEFT helpers: adapter target modules per backbone family, wrap / merge / save / load an adapter on the backbone.

Only the backbone is wrapped (``model.facerec.backbone`` becomes a ``peft.PeftModel``); the embedding head and
the margin head stay plain modules that train with ``requires_grad``. So the number of trainable parameters is
what peft reports for the backbone plus the heads, the margin head can be swapped (Partial FC sharding) without
peft knowing, and module names inside the adapter are the backbone's own (``encoder.layer.0.attention.q_proj``).

Target modules (checked on tiny models of each family, transformers 5 names):

- ViT, DeiT, DINOv2 (+registers), DINOv3, BEiT, CLIP/SigLIP vision, Swin: the attention query and value
  projections ``q_proj``/``v_proj`` (transformers 5 renamed ``query``/``value``).
- ConvNeXt: the pointwise MLP ``pwconv1``/``pwconv2`` (Linear layers); the depthwise 7x7 is left alone.
- ResNet (transformers): the convolutions inside residual blocks (``...layer.<i>.convolution``); not the stem
  nor the 1x1 shortcuts.
- IResNet: the two 3x3 convolutions of each block, ``conv1``/``conv2``.
- MobileFaceNet: the 1x1 expand / project convolutions of the bottlenecks (depthwise convolutions are skipped:
  a low-rank update of a per-channel kernel saves nothing).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..models.backbones import BACKBONE_FAMILIES

__all__ = [
    "LORA_TARGET_MODULES",
    "unwrap_facerec",
    "resolve_target_modules",
    "build_peft_config",
    "apply_peft",
    "has_adapter",
    "merge_adapter",
    "save_adapter",
    "load_adapter",
    "trainable_parameter_counts",
    "MARGIN_HEAD_FILE",
]

# A str is a regex peft full-matches against module names relative to the backbone; a tuple lists name endings.
LORA_TARGET_MODULES: dict[str, tuple[str, ...] | str] = {
    name: family.lora_targets for name, family in BACKBONE_FAMILIES.items() if family.lora_targets is not None
}
MARGIN_HEAD_FILE = "margin_head.safetensors"  # the margin head, next to the adapter (for load_adapter)
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's file name
_PEFT_PREFIX = "base_model.model."  # peft's key prefix in adapter files
# save_adapter's targets: the backbone's own, anchored under `backbone.` of the FaceRecModel (load_adapter strips it)
_BACKBONE_TARGETS = (r"backbone\.(?:", ")")


def unwrap_facerec(model: nn.Module) -> nn.Module:
    """The `FaceRecModel` inside `model` (itself, or `model.facerec` for the margin-classification model)."""
    inner = getattr(model, "facerec", model)
    if not hasattr(inner, "backbone") or not hasattr(inner, "embedding_head"):
        raise ValueError(
            f"Expected a FaceRecModel or FaceRecForMarginClassification, got {type(model).__name__} "
            "(no .backbone / .embedding_head)"
        )
    return inner


def _peft_model_class():
    try:
        from peft import PeftModel
    except ImportError as error:  # peft is an optional extra: fail where it is needed, with the fix
        raise ImportError("finetune_mode='lora' needs the `peft` package: pip install 'hf_facerec[train]'") from error
    return PeftModel


def resolve_target_modules(model_type: str, target_modules: list[str] | None = None) -> list[str] | str:
    """Adapter target modules for a backbone family: `target_modules` if given, else the family's default.

    Returns a list of module-name endings or one regex string (full-matched by peft). Raises `ValueError` for a
    family without a default: pass `lora_target_modules` explicitly then.
    """
    if target_modules is not None:
        if isinstance(target_modules, str) or not target_modules:
            raise ValueError(f"target_modules must be a non-empty list of names, got {target_modules!r}")
        return list(target_modules)
    if model_type not in LORA_TARGET_MODULES:
        raise ValueError(
            f"No default adapter target modules for backbone family {model_type!r} (known: "
            f"{sorted(LORA_TARGET_MODULES)}); pass lora_target_modules, e.g. ['q_proj', 'v_proj']."
        )
    targets = LORA_TARGET_MODULES[model_type]
    return targets if isinstance(targets, str) else list(targets)


def build_peft_config(
    model_type: str,
    method: str = "lora",
    rank: int = 16,
    alpha: float = 16.0,
    dropout: float = 0.25,
    use_rslora: bool = True,
    target_modules: list[str] | None = None,
):
    """A peft config for the backbone family `model_type`.

    `method`: "lora" (`LoraConfig`), "dora" (`LoraConfig(use_dora=True)`) or "loha" (`LoHaConfig`; `dropout` is its
    rank dropout and `use_rslora` does not apply). Defaults are the foundation-model study's recipe.
    """
    targets = resolve_target_modules(model_type, target_modules)
    if method in ("lora", "dora"):
        from peft import LoraConfig

        return LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=dropout, use_rslora=use_rslora, use_dora=method == "dora",
            target_modules=targets, bias="none",
        )
    if method == "loha":
        from peft import LoHaConfig

        return LoHaConfig(r=rank, alpha=alpha, rank_dropout=dropout, target_modules=targets)
    raise ValueError(f"PEFT method must be lora, dora or loha, got {method!r}")


def has_adapter(model: nn.Module) -> bool:
    """Whether the backbone of `model` is wrapped by peft."""
    backbone = unwrap_facerec(model).backbone
    return hasattr(backbone, "peft_config") and hasattr(backbone, "merge_and_unload")


def apply_peft(model: nn.Module, peft_config) -> nn.Module:
    """Wrap `model`'s backbone with `peft_config` (in place; returns `model`). The heads stay trainable.

    Raises `ValueError` if the backbone is already wrapped, or if none of the target modules exists.
    """
    facerec = unwrap_facerec(model)
    if has_adapter(model):
        raise ValueError("The backbone already carries a peft adapter; merge it (merge_adapter) before adding another")
    _peft_model_class()
    from peft import get_peft_model

    try:
        wrapped = get_peft_model(facerec.backbone, peft_config)
    except ValueError as error:
        raise ValueError(
            f"Could not place the adapter on the {type(facerec.backbone).__name__} backbone with target modules "
            f"{peft_config.target_modules!r}: {error}"
        ) from error
    facerec.set_backbone(wrapped)
    # get_peft_model only touches the backbone; make the heads' trainability explicit anyway.
    _heads(model).requires_grad_(True)
    return model


def _heads(model: nn.Module) -> nn.ModuleDict:
    """The trainable heads of `model` under stable names: "embedding_head" and (if present) "margin_head"."""
    heads = nn.ModuleDict({"embedding_head": unwrap_facerec(model).embedding_head})
    if isinstance(getattr(model, "margin_head", None), nn.Module):
        heads["margin_head"] = model.margin_head
    return heads


def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold the adapter into the backbone weights (`merge_and_unload`), in place; a no-op without adapter.

    Afterwards the backbone is the plain transformers model again, so `save_pretrained` writes a checkpoint that
    loads without peft.
    """
    if has_adapter(model):
        facerec = unwrap_facerec(model)
        facerec.set_backbone(facerec.backbone.merge_and_unload())
    return model


def _base_backbone_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The wrapped backbone's own weights, without the adapter: `...q_proj.base_layer.weight` -> `...q_proj.weight`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    base = backbone.get_base_model()
    tuners = [name + "." for name, module in base.named_modules() if isinstance(module, BaseTunerLayer)]
    state = {}
    for key, tensor in base.state_dict().items():
        prefix = next((p for p in tuners if key.startswith(p)), None)
        if prefix is None:
            state[key] = tensor
        elif key.startswith(prefix + "base_layer."):
            state[prefix + key[len(prefix) + len("base_layer."):]] = tensor
        # anything else under a tuner layer is adapter state: not part of the base
    return state


def _model_level_targets(targets) -> str:
    """Backbone-relative targets (name endings or a full-match regex) as one regex over FaceRecModel names."""
    if isinstance(targets, str):
        inner = targets
    else:  # peft matches a name ending at a dot boundary; the same as a full-match regex
        inner = r"(?:.*\.)?(?:" + "|".join(re.escape(t) for t in sorted(targets)) + ")"
    return rf"{_BACKBONE_TARGETS[0]}{inner}{_BACKBONE_TARGETS[1]}"


def _backbone_level_targets(targets, directory: Path) -> str:
    if not (isinstance(targets, str) and targets.startswith(_BACKBONE_TARGETS[0]) and targets.endswith(
            _BACKBONE_TARGETS[1])):
        raise ValueError(f"{directory}: target_modules {targets!r} were not written by save_adapter (expected "
                         f"{_BACKBONE_TARGETS[0]}...{_BACKBONE_TARGETS[1]})")
    return targets[len(_BACKBONE_TARGETS[0]):-len(_BACKBONE_TARGETS[1])]


def _loadable_key(key: str) -> str:
    # peft writes DoRA's magnitude as `...lora_magnitude_vector`; transformers' AutoModel adapter loading (5.24)
    # only maps `...lora_magnitude_vector.weight` (and silently keeps the random one otherwise); peft reads both.
    return key + ".weight" if key.endswith("lora_magnitude_vector") else key


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Save the adapter in PEFT's own format, over the embedding model (`FaceRecModel`), in one relocatable folder.

    `directory` gets ``adapter_config.json`` + ``adapter_model.safetensors`` (the backbone adapter with targets
    named ``backbone.…`` and ``modules_to_save=["embedding_head"]``, so the trained embedding head comes with it),
    the base ``FaceRecModel`` beside them (``config.json`` + ``model.safetensors``: the frozen backbone weights
    and the heads, with its remote code) and ``margin_head.safetensors`` (when `model` has a margin head) for
    `load_adapter`. Each of these gives the trained embedding model:

    - ``transformers.AutoModel.from_pretrained(directory)`` (after ``import hf_facerec``, or
      ``trust_remote_code=True``): the base from the folder itself plus its adapter, so the folder can be moved
      or copied anywhere (transformers loads a co-located base when the adapter folder holds a ``config.json``)
    - ``peft.AutoPeftModel.from_pretrained(directory)``: via ``base_model_name_or_path``, the folder's absolute
      path when saved (peft resolves it as written, so this one needs the folder where it was saved)
    - ``peft.PeftModel.from_pretrained(base, directory)`` onto any FaceRecModel on the same backbone weights
      (its heads are replaced)
    - `load_adapter` (back onto a training model, margin head included).
    """
    from peft import get_peft_model_state_dict

    from ..models import FaceRecModel

    if not has_adapter(model):
        raise ValueError("The model carries no peft adapter to save (finetune_mode is not 'lora', or it was merged)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    facerec = unwrap_facerec(model)
    backbone = facerec.backbone
    state = {"backbone." + k: v for k, v in _base_backbone_state(backbone).items()}
    state.update({"embedding_head." + k: v for k, v in facerec.embedding_head.state_dict().items()})
    with torch.device("meta"):  # the base shares the trained model's tensors: no copy, no init
        base = FaceRecModel(copy.deepcopy(facerec.config))  # save_pretrained edits its config
    base.load_state_dict(state, strict=True, assign=True)
    base.save_pretrained(directory)

    adapter = {_PEFT_PREFIX + "backbone." + _loadable_key(k[len(_PEFT_PREFIX):]): v.detach().cpu().contiguous()
               for k, v in get_peft_model_state_dict(backbone).items()}
    adapter.update({_PEFT_PREFIX + "embedding_head." + k: v.detach().cpu().contiguous()
                    for k, v in facerec.embedding_head.state_dict().items()})
    save_file(adapter, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config = copy.deepcopy(backbone.peft_config["default"])
    config.target_modules = _model_level_targets(config.target_modules)
    config.modules_to_save = ["embedding_head"]
    config.base_model_name_or_path = str(directory.resolve())
    config.inference_mode = True
    # AutoPeftModel builds the base with transformers' AutoModel, which resolves the facerec model type.
    config.save_pretrained(str(directory), auto_mapping_dict={"base_model_class": "AutoModel",
                                                              "parent_library": "transformers"})
    if isinstance(getattr(model, "margin_head", None), nn.Module):
        margin = {k: v.detach().cpu().contiguous() for k, v in model.margin_head.state_dict().items()}
        save_file(margin, str(directory / MARGIN_HEAD_FILE), metadata={"format": "pt"})
    return directory


def load_adapter(model: nn.Module, directory: str | os.PathLike, is_trainable: bool = False) -> nn.Module:
    """Put an adapter saved by `save_adapter` onto `model` (built on the same base backbone), in place.

    The backbone gets the adapter (as `apply_peft` puts it), the embedding head its trained weights, and the margin
    head too when `model` has one and the folder holds it. Returns `model`.
    """
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict

    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file() or not (directory / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{directory} has no adapter_config.json / {ADAPTER_WEIGHTS}: not a directory "
                                "written by save_adapter")
    facerec = unwrap_facerec(model)
    if has_adapter(model):
        raise ValueError("The backbone already carries a peft adapter")
    config = PeftConfig.from_pretrained(str(directory))
    config.target_modules = _backbone_level_targets(config.target_modules, directory)
    config.modules_to_save, config.inference_mode, config.base_model_name_or_path = None, not is_trainable, None
    weights = load_file(str(directory / ADAPTER_WEIGHTS))
    parts = {"backbone": {}, "embedding_head": {}}
    for key, tensor in weights.items():
        part, _, rest = key[len(_PEFT_PREFIX):].partition(".")
        if not key.startswith(_PEFT_PREFIX) or part not in parts:
            raise ValueError(f"{directory / ADAPTER_WEIGHTS}: unexpected key {key!r}")
        parts[part][rest] = tensor
    wrapped = get_peft_model(facerec.backbone, config)
    result = set_peft_model_state_dict(wrapped, {_PEFT_PREFIX + k: v for k, v in parts["backbone"].items()})
    if result.unexpected_keys:
        raise ValueError(f"{directory}: adapter weights that do not fit the backbone: {result.unexpected_keys[:5]}")
    if not is_trainable:
        wrapped.requires_grad_(False)
    facerec.set_backbone(wrapped)
    facerec.embedding_head.load_state_dict(parts["embedding_head"], strict=True)
    margin_file = directory / MARGIN_HEAD_FILE
    if isinstance(getattr(model, "margin_head", None), nn.Module) and margin_file.is_file():
        model.margin_head.load_state_dict(load_file(str(margin_file)), strict=True)
    return model


def trainable_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters by part: "backbone" (the adapter under peft), "embedding_head", "margin_head", "total"."""
    facerec = unwrap_facerec(model)
    counts = {
        "backbone": _count_trainable(facerec.backbone),
        "embedding_head": _count_trainable(facerec.embedding_head),
        "margin_head": _count_trainable(getattr(model, "margin_head", None)),
    }
    counts["total"] = _count_trainable(model)
    return counts


def _count_trainable(module: nn.Module | None) -> int:
    if module is None:
        return 0
    # Deduplicate shared tensors, as peft's own count does.
    unique = {id(p): p for p in module.parameters() if p.requires_grad}
    return int(sum(p.numel() for p in unique.values()))
