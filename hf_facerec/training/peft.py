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

import os
from pathlib import Path

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
    "HEADS_FILE",
]

# A str is a regex peft full-matches against module names relative to the backbone; a tuple lists name endings.
LORA_TARGET_MODULES: dict[str, tuple[str, ...] | str] = {
    name: family.lora_targets for name, family in BACKBONE_FAMILIES.items() if family.lora_targets is not None
}
HEADS_FILE = "facerec_heads.safetensors"  # embedding + margin head weights saved next to the adapter


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


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Save the backbone adapter (peft's `save_pretrained`: adapter_config.json + adapter_model.safetensors), the
    heads (`facerec_heads.safetensors`) and the FaceRec config to `directory`. Reload with `load_adapter`."""
    if not has_adapter(model):
        raise ValueError("The model carries no peft adapter to save (finetune_mode is not 'lora', or it was merged)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    unwrap_facerec(model).backbone.save_pretrained(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in _heads(model).state_dict().items()}
    save_file(state, str(directory / HEADS_FILE), metadata={"format": "pt"})
    if hasattr(model, "config"):
        model.config.save_pretrained(directory)
    return directory


def load_adapter(model: nn.Module, directory: str | os.PathLike, is_trainable: bool = False) -> nn.Module:
    """Put an adapter saved by `save_adapter` onto `model` (built on the same base backbone), in place.

    The heads are loaded too (the margin head only when `model` has one). Returns `model`.
    """
    directory = Path(directory)
    heads_file = directory / HEADS_FILE
    if not heads_file.is_file():
        raise FileNotFoundError(f"{heads_file} not found: not a directory written by save_adapter")
    facerec = unwrap_facerec(model)
    if has_adapter(model):
        raise ValueError("The backbone already carries a peft adapter")
    facerec.set_backbone(_peft_model_class().from_pretrained(facerec.backbone, directory, is_trainable=is_trainable))
    heads = _heads(model)
    state = {name: tensor for name, tensor in load_file(str(heads_file)).items() if name.split(".")[0] in heads}
    heads.load_state_dict(state, strict=True)
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
