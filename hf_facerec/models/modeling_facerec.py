"""FaceRec models: any vision backbone -> pooling -> embedding head -> L2-normalised face embedding.

`FaceRecModel` embeds faces; `FaceRecForMarginClassification` adds a margin head (ArcFace, CosFace, AdaFace, ...,
optionally Partial FC) for training. This file is also shipped as remote code next to saved checkpoints
(``trust_remote_code=True``), so it imports only torch, transformers and sibling files.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbones import CLS_TOKEN_BACKBONES, feature_width
from .configuration_facerec import FaceRecConfig
from .heads import build_margin_head
from .modeling_iresnet import IResNetModel
from .modeling_mobilefacenet import MobileFaceNetModel

_MARGIN_AUTO_CLASS = "AutoModelForImageClassification"
#: How `push_to_hub` shares a FaceRec model where the hf_facerec package is installed: `hf_facerec.hub.push` sets
#: it (weights, remote code, the package's card and preprocessor_config.json, as `hf-facerec push` uploads). None
#: (this file as remote code, without the package): transformers' own upload.
HUB_PUBLISHER = None

FACE_BACKBONE_MODELS: dict[str, type[PreTrainedModel]] = {
    "iresnet": IResNetModel,
    "mobilefacenet": MobileFaceNetModel,
}


@dataclass
class FaceRecOutput(ModelOutput):
    """
    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, embedding_size)`): L2-normalised face embeddings.
        features (`torch.FloatTensor` of shape `(batch_size, embedding_size)`): the same before normalisation (their
            norm carries image quality, which AdaFace uses).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): the backbone's, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*): the backbone's, when `output_attentions=True`.
    """

    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class FaceRecMarginOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): margin cross-entropy, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_sampled_classes)`, *optional*): scaled, margin-
            penalised cosine logits over the class centers used this step (all of them unless Partial FC samples).
        embeddings, features, hidden_states, attentions: as in [`FaceRecOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def pooled_feature_size(config: FaceRecConfig) -> int:
    """Width of the pooled backbone vector fed to the embedding head, from the backbone config alone."""
    backbone = config.backbone_config
    pooling = config.resolved_pooling
    if pooling == "pooler" and backbone.model_type in FACE_BACKBONE_MODELS:
        return int(backbone.hidden_size)
    width = feature_width(backbone)
    return 2 * width if pooling == "cls_mean" else width


class FaceRecEmbeddingHead(nn.Module):
    """Pooled vector (B, in_features) -> face feature (B, embedding_size).

    Modes: `bn_dropout_linear_bn` (ArcFace's output layer "E": BN -> dropout -> FC -> BN), `linear_bn`
    (insightface IResNet: dropout -> FC -> BN), `linear` (dropout -> FC), `none` (identity).
    """

    def __init__(self, in_features: int, embedding_size: int, mode: str, dropout: float = 0.0):
        super().__init__()
        self.mode = mode
        if mode == "none":
            if in_features != embedding_size:
                raise ValueError(
                    f"embedding_head='none' needs the pooled features ({in_features}) to equal embedding_size "
                    f"({embedding_size})"
                )
            return
        self.pre_norm = nn.BatchNorm1d(in_features) if mode == "bn_dropout_linear_bn" else None
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, embedding_size)
        self.norm = nn.BatchNorm1d(embedding_size) if mode in ("linear_bn", "bn_dropout_linear_bn") else None

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return pooled
        if self.pre_norm is not None:
            pooled = self.pre_norm(pooled)
        features = self.linear(self.dropout(pooled))
        return self.norm(features) if self.norm is not None else features


class ModelLoadError(ValueError):
    """A saved model folder that does not load (bad config values, truncated weights, absurd nesting); the
    message names the folder."""


def named_load_error(error: BaseException, name_or_path) -> BaseException:
    """``error`` itself when its message already names ``name_or_path``, else a :class:`ModelLoadError` that does."""
    where = str(name_or_path)
    if where and where in str(error):
        return error
    if isinstance(error, RecursionError):
        return ModelLoadError(f"{where}: a JSON file nests too deeply to parse ({error})")
    return ModelLoadError(f"{where}: {type(error).__name__}: {error}")


def _load_errors() -> tuple[type[BaseException], ...]:
    try:
        from safetensors import SafetensorError
    except ImportError:  # older safetensors
        return ValueError, RecursionError
    return ValueError, RecursionError, SafetensorError


class FaceRecPreTrainedModel(PreTrainedModel):
    config_class = FaceRecConfig
    base_model_prefix = "facerec"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' ``from_pretrained``; a folder that does not load raises one error naming it."""
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except _load_errors() as error:
            raise named_load_error(error, pretrained_model_name_or_path) from error
        broken = next((name for name, tensor in model.state_dict().items()
                       if tensor.is_floating_point() and tensor.device.type != "meta"
                       and not bool(torch.isfinite(tensor).all())), None)
        if broken is not None:  # every embedding would be NaN: refuse at load, not as a wrong score later
            raise ModelLoadError(f"{pretrained_model_name_or_path}: weight {broken!r} holds NaN or infinite values")
        return model

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the embedding model with the hf_facerec card and image processor (`hf_facerec.hub.push`; a
        margin-classification model pushes its `.facerec`). Keywords: transformers' `commit_message`, `private`,
        `token`, `revision`, `create_pr`, and the card's `results`, `summary`, `calibration`, `image_processor`,
        `onnx`. Without the package (remote code) it is transformers' `push_to_hub`."""
        if HUB_PUBLISHER is None:
            return super().push_to_hub(repo_id, **kwargs)
        return HUB_PUBLISHER(self, repo_id, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        # Backbones are PreTrainedModels and initialise themselves; this covers the heads only.
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)


def _build_backbone(config: FaceRecConfig) -> nn.Module:
    backbone_config = config.backbone_config
    model_class = FACE_BACKBONE_MODELS.get(backbone_config.model_type)
    backbone = model_class(backbone_config) if model_class is not None else AutoModel.from_config(backbone_config)
    return _drop_unused_pooler(backbone, config)


def load_pretrained_backbone(name_or_path: str, config: FaceRecConfig, **kwargs) -> nn.Module:
    """The pretrained backbone `config.backbone_config` describes, loaded once (`kwargs`: revision, dtype, ...)."""
    model_class = FACE_BACKBONE_MODELS.get(config.backbone_config.model_type, AutoModel)
    return model_class.from_pretrained(name_or_path, config=config.backbone_config, **kwargs)


def _drop_unused_pooler(backbone: nn.Module, config: FaceRecConfig) -> nn.Module:
    # ViT's pooler (dense + tanh) is not used unless pooling == "pooler"; parameters without gradients would break
    # DDP (find_unused_parameters) and waste optimiser state.
    pooler = getattr(backbone, "pooler", None)
    if config.resolved_pooling != "pooler" and isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        backbone.pooler = None
    return backbone


class FaceRecModel(FaceRecPreTrainedModel):
    """Face embedding model: `pixel_values (B, C, H, W)` -> [`FaceRecOutput`] with `embeddings (B, D)`."""

    def __init__(self, config: FaceRecConfig, backbone: nn.Module | None = None):
        r"""
        backbone (`nn.Module`, *optional*): an already built (e.g. pretrained) backbone of `config.backbone_config`'s
            family; kept as it is (post_init does not re-initialise it). None builds a random one from the config.
        """
        super().__init__(config)
        if backbone is None:
            self.backbone = _build_backbone(config)
        else:
            self.backbone = _drop_unused_pooler(backbone, config)
            for module in self.backbone.modules():
                module._is_hf_initialized = True  # post_init skips flagged modules: the weights stay as loaded
        self.embedding_head = FaceRecEmbeddingHead(
            pooled_feature_size(config), config.embedding_size, config.embedding_head, config.head_dropout
        )
        self._interpolate_pos_encoding = self._needs_interpolation()
        self.post_init()

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str, backbone_kwargs: dict | None = None, **config_kwargs):
        """Face model around pretrained backbone weights (Hub id or local folder); the heads start fresh.

        Example: ``FaceRecModel.from_backbone("facebook/dinov2-small", embedding_size=512)``.
        `backbone_kwargs` go to the backbone's `from_pretrained` (e.g. `revision`, `dtype`).
        """
        config = FaceRecConfig.from_backbone(backbone_name_or_path, **config_kwargs)
        return cls(config, backbone=load_pretrained_backbone(backbone_name_or_path, config, **(backbone_kwargs or {})))

    def get_backbone(self) -> nn.Module:
        return self.backbone

    def set_backbone(self, backbone: nn.Module) -> None:
        self.backbone = backbone

    def _needs_interpolation(self) -> bool:
        if self.config.interpolate_pos_encoding is not None:
            return self.config.interpolate_pos_encoding
        if "interpolate_pos_encoding" not in inspect.signature(self.backbone.forward).parameters:
            return False  # CNNs take any size; Dinov2/Swin interpolate or pad on their own
        native = getattr(self.config.backbone_config, "image_size", None)
        if native is None:
            return False
        native = (native, native) if isinstance(native, int) else tuple(native)
        return tuple(native) != self.config.face_size

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = getattr(pixel_values, "shape", type(pixel_values).__name__)
            raise ValueError(f"pixel_values must be a (batch, channels, height, width) tensor, got {shape}")
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the model expects {self.config.num_channels}"
            )

    def _pool(self, outputs) -> torch.Tensor:
        pooling = self.config.resolved_pooling
        if pooling == "pooler":
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                raise ValueError(f"The {self.config.backbone_type} backbone returns no pooler_output; use 'mean'.")
            return pooled.flatten(1)
        hidden = outputs.last_hidden_state
        if hidden.ndim == 4:  # CNN feature map (B, C, H, W)
            return hidden.mean(dim=(2, 3))
        cls_token = hidden[:, 0]
        if pooling == "cls":
            return cls_token
        prefix = 0
        if self.config.backbone_type in CLS_TOKEN_BACKBONES:
            prefix = 1 + int(getattr(self.config.backbone_config, "num_register_tokens", 0) or 0)
        patch_mean = hidden[:, prefix:].mean(dim=1)
        return patch_mean if pooling == "mean" else torch.cat([cls_token, patch_mean], dim=-1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FaceRecOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Aligned face crops, normalised by [`FaceRecImageProcessor`].
        """
        self._check_pixel_values(pixel_values)
        backbone_kwargs = {}
        if self._interpolate_pos_encoding:
            backbone_kwargs["interpolate_pos_encoding"] = True
        if output_hidden_states:
            backbone_kwargs["output_hidden_states"] = True
        if output_attentions:
            backbone_kwargs["output_attentions"] = True
        outputs = self.backbone(pixel_values=pixel_values, **backbone_kwargs)
        pooled = self._pool(outputs)
        if pooled.shape[-1] != self.embedding_head_in_features:
            raise ValueError(
                f"The {self.config.backbone_type} backbone pooled to {pooled.shape[-1]} features but the embedding "
                f"head expects {self.embedding_head_in_features}; check `pooling` and the backbone config."
            )
        features = self.embedding_head(pooled)
        output = FaceRecOutput(
            embeddings=F.normalize(features, dim=-1),
            features=features,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )
        return output if return_dict is not False else output.to_tuple()

    @property
    def embedding_head_in_features(self) -> int:
        return pooled_feature_size(self.config)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, without `AutoModelForImageClassification` in the saved `auto_map`: the
        config is shared with the margin model it was trained in, whose entry would load this checkpoint with a
        missing (random) margin head."""
        auto_map = getattr(self.config, "auto_map", None) or {}
        self.config.auto_map = {k: v for k, v in auto_map.items() if k != _MARGIN_AUTO_CLASS} or None
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:  # the shared config keeps what the margin model put there, plus what this save added
            self.config.auto_map = {**auto_map, **(self.config.auto_map or {})} or None


class FaceRecForMarginClassification(FaceRecPreTrainedModel):
    """[`FaceRecModel`] + a margin head over `config.num_identities` class centers, for training.

    `forward(pixel_values, labels)` returns a [`FaceRecMarginOutput`] with the margin loss, the logits and the
    embeddings. Export the embedding model alone with `model.facerec.save_pretrained(...)`.
    """

    def __init__(self, config: FaceRecConfig, backbone: nn.Module | None = None):
        super().__init__(config)
        if config.num_identities <= 0:
            raise ValueError("FaceRecForMarginClassification needs config.num_identities > 0 (the number of classes)")
        self.facerec = FaceRecModel(config, backbone=backbone)
        self.margin_head = build_margin_head(
            config.embedding_size,
            config.num_identities,
            margin_type=config.margin_type,
            scale=config.margin_scale,
            sample_rate=config.partial_fc_sample_rate,
            **(config.margin_kwargs or {}),
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is getattr(self, "margin_head", None):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FaceRecMarginOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): identity indices in
            `[0, config.num_identities)`; when given, the margin loss is computed.
        """
        outputs = self.facerec(
            pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        loss = logits = None
        if labels is not None:
            head_output = self.margin_head(outputs.features, labels)
            loss, logits = head_output.loss, head_output.logits
        output = FaceRecMarginOutput(
            loss=loss,
            logits=logits,
            embeddings=outputs.embeddings,
            features=outputs.features,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = [
    "FaceRecOutput",
    "FaceRecMarginOutput",
    "FaceRecEmbeddingHead",
    "FaceRecPreTrainedModel",
    "FaceRecModel",
    "FaceRecForMarginClassification",
    "pooled_feature_size",
    "load_pretrained_backbone",
]
