"""FaceRec model configuration: any vision backbone + pooling + embedding head (+ a margin head for training).

This file is also shipped as remote code next to saved checkpoints (``trust_remote_code=True``), so it imports
only ``transformers`` and sibling files through single-dot relative imports.
"""

from __future__ import annotations

import sys

from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .backbones import CLS_TOKEN_BACKBONES
from .configuration_iresnet import IResNetConfig, to_size_pair
from .configuration_mobilefacenet import MobileFaceNetConfig
from .thresholds import check_verification_thresholds

# Backbone families defined by this package. They are resolved here rather than through AutoConfig so that a
# checkpoint loaded with ``trust_remote_code=True`` (where nobody registered them) still finds its backbone.
FACE_BACKBONE_CONFIGS: dict[str, type[PreTrainedConfig]] = {
    IResNetConfig.model_type: IResNetConfig,
    MobileFaceNetConfig.model_type: MobileFaceNetConfig,
}

POOLING_MODES = ("auto", "cls", "mean", "cls_mean", "pooler")
EMBEDDING_HEADS = ("linear", "linear_bn", "bn_dropout_linear_bn", "none")


def backbone_config_from_dict(config: dict[str, Any]) -> PreTrainedConfig:
    """Rebuild a backbone config from its serialised dict (which carries its own ``model_type``)."""
    config = dict(config)
    model_type = config.pop("model_type", None)
    if model_type in FACE_BACKBONE_CONFIGS:
        return FACE_BACKBONE_CONFIGS[model_type](**config)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"Unknown backbone model_type {model_type!r}: it is neither a transformers model type nor one of "
            f"{sorted(FACE_BACKBONE_CONFIGS)}. Pass a config of a vision model that AutoModel can build."
        )
    return CONFIG_MAPPING[model_type](**config)


class FaceRecConfig(PreTrainedConfig):
    r"""
    Configuration of a face recognition model: ``backbone -> pooling -> embedding head -> L2 norm``, plus the
    margin-head settings used by [`FaceRecForMarginClassification`].

    Args:
        backbone_config (`PreTrainedConfig` or `dict`, *optional*):
            Config of any vision model `AutoModel` builds (Dinov2, ViT, CLIPVision, Swin, ConvNeXt, ResNet, ...) or
            of this package's IResNet / MobileFaceNet. Serialised with its own `model_type`. Defaults to a DINOv2
            ViT-S/14 shaped config at 112x112.
        embedding_size (`int`, defaults to 512): size D of the face embedding.
        pooling (`str`, defaults to `"auto"`): how backbone outputs become one vector: `"cls"` (the raw CLS token),
            `"mean"` (mean of patch tokens or of the spatial map), `"cls_mean"` (both, concatenated), `"pooler"`
            (the backbone's `pooler_output`, flattened; what CNNs use). `"auto"` picks `"cls"` for CLS-token
            transformers and `"pooler"` otherwise.
        embedding_head (`str`, defaults to `"bn_dropout_linear_bn"`): `"bn_dropout_linear_bn"` (ArcFace's output
            layer "E"), `"linear_bn"` (insightface IResNet's fc + features), `"linear"`, or `"none"` (the pooled
            vector is the embedding; it must then have `embedding_size` features).
        head_dropout (`float`, defaults to 0.0): dropout inside the embedding head.
        image_size (`int` or `(height, width)`, defaults to 112): size of the aligned face crop the model expects
            (each side at most `MAX_IMAGE_SIDE` = 4096 px; the backbone config's `image_size` too).
        num_channels (`int`, defaults to 3): input channels.
        num_identities (`int`, defaults to 0): number of training identities (rows of the margin head).
        margin_type (`str`, defaults to `"arcface"`): one of the margin penalties of `heads.MARGIN_PENALTIES`.
        margin_scale (`float`, defaults to 64.0): the logit scale s.
        margin_kwargs (`dict`, *optional*): extra arguments of the margin penalty, e.g. `{"margin": 0.5}`.
        partial_fc_sample_rate (`float`, defaults to 1.0): fraction of class centers used per step (Partial FC).
        interpolate_pos_encoding (`bool`, *optional*): ask ViT-like backbones to interpolate their position
            embeddings; `None` means "when the backbone's native size differs from `image_size`".
        verification_thresholds (`dict`, *optional*): cosine thresholds keyed by FAR (`{"1e-03": 0.31}`), measured
            on the pair set `threshold_pair_set` with flip TTA `threshold_flip` (see `hf_facerec.hub.calibration`).
    """

    model_type = "facerec"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="dinov2",
            init_kwargs={"image_size": 112, "patch_size": 14, "hidden_size": 384, "num_attention_heads": 6},
        )
    }

    backbone_config: dict | PreTrainedConfig | None = None
    embedding_size: int = 512
    pooling: str = "auto"
    embedding_head: str = "bn_dropout_linear_bn"
    head_dropout: float = 0.0
    image_size: int | list[int] | tuple[int, int] = 112
    num_channels: int = 3
    num_identities: int = 0
    margin_type: str = "arcface"
    margin_scale: float = 64.0
    margin_kwargs: dict | None = None
    partial_fc_sample_rate: float = 1.0
    interpolate_pos_encoding: bool | None = None
    initializer_range: float = 0.01
    # Verification thresholds calibrated on a named pair set (hf_facerec.hub.calibration), so users need not guess:
    # {"1e-03": cosine threshold, ...}; the pair set's name and the flip TTA the scores were computed with.
    verification_thresholds: dict | None = None
    threshold_pair_set: str | None = None
    threshold_flip: str | None = None

    def __post_init__(self, **kwargs):
        if isinstance(self.backbone_config, dict) and "model_type" in self.backbone_config:
            self.backbone_config = backbone_config_from_dict(self.backbone_config)
        super().__post_init__(**kwargs)
        try:
            self._validate()
        except ValueError as error:  # loaded through AutoConfig (pipeline(), AutoModel): name the folder
            where = getattr(self, "_name_or_path", "")
            if where and where not in str(error):
                raise ValueError(f"{where}: {error}") from error
            raise

    def _validate(self) -> None:
        # Thresholds decide is_same: a stored "NaN" must fail on load, naming its key, not reject every pair.
        self.verification_thresholds = check_verification_thresholds(self.verification_thresholds, "config.verification_thresholds")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.embedding_head not in EMBEDDING_HEADS:
            raise ValueError(f"embedding_head must be one of {EMBEDDING_HEADS}, got {self.embedding_head!r}")
        if self.embedding_size <= 0:
            raise ValueError(f"embedding_size must be positive, got {self.embedding_size}")
        if not 0.0 < self.partial_fc_sample_rate <= 1.0:
            raise ValueError(f"partial_fc_sample_rate must be in (0, 1], got {self.partial_fc_sample_rate}")
        if self.num_identities < 0:
            raise ValueError(f"num_identities must be >= 0, got {self.num_identities}")
        if self.resolved_pooling in ("cls", "cls_mean") and self.backbone_type not in CLS_TOKEN_BACKBONES:
            raise ValueError(
                f"pooling={self.pooling!r} needs a backbone with a CLS token, but {self.backbone_type!r} has none; "
                "use 'mean' or 'pooler'."
            )
        self.image_size = list(to_size_pair(self.image_size))
        native = getattr(self.backbone_config, "image_size", None)
        if native is not None:  # the backbone's own buffers (position embeddings) are sized from it
            to_size_pair(native, "backbone_config.image_size")

    @property
    def backbone_type(self) -> str:
        return self.backbone_config.model_type

    @property
    def face_size(self) -> tuple[int, int]:
        """The aligned face crop as (height, width)."""
        size = self.image_size
        if isinstance(size, int):
            return (size, size)
        if len(size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {size!r}")
        return (int(size[0]), int(size[1]))

    @property
    def resolved_pooling(self) -> str:
        if self.pooling != "auto":
            return self.pooling
        return "cls" if self.backbone_type in CLS_TOKEN_BACKBONES else "pooler"

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str | PreTrainedConfig, **kwargs) -> "FaceRecConfig":
        """Build a config around a pretrained backbone's config.

        Args:
            backbone_name_or_path: a Hub id (e.g. ``"facebook/dinov2-small"``), a local folder, or a config object.
                CLIP checkpoints hold a text tower too: their vision config is used.
            **kwargs: any `FaceRecConfig` field (``embedding_size``, ``pooling``, ``num_identities``, ...) and
                ``config_kwargs``: a dict of overrides for the backbone config (e.g. ``{"drop_path_rate": 0.1}``).
        """
        config_kwargs = kwargs.pop("config_kwargs", None) or {}
        if isinstance(backbone_name_or_path, PreTrainedConfig):
            backbone_config = backbone_name_or_path
        else:
            backbone_config = AutoConfig.from_pretrained(backbone_name_or_path, **config_kwargs)
            config_kwargs = {}
        backbone_config = getattr(backbone_config, "vision_config", None) or backbone_config
        for key, value in config_kwargs.items():
            setattr(backbone_config, key, value)
        kwargs.setdefault("num_channels", getattr(backbone_config, "num_channels", 3))
        return cls(backbone_config=backbone_config, **kwargs)

    @property
    def custom_pipelines(self) -> dict:
        """The saved folder's remote pipelines (``hf_facerec.hub.add_pipeline_code``), less the tasks whose class
        this process has registered already: after ``import hf_facerec`` they need no ``trust_remote_code``."""
        tasks = self.__dict__.get("custom_pipelines") or {}
        if not tasks or "transformers.pipelines" not in sys.modules:
            return tasks
        registered = sys.modules["transformers.pipelines"].PIPELINE_REGISTRY.supported_tasks
        return {task: spec for task, spec in tasks.items()
                if getattr(registered.get(task, {}).get("impl"), "__name__", None) != str(spec.get("impl")).split(".")[-1]}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict) -> None:
        self.__dict__["custom_pipelines"] = value  # serialised by to_dict as it was saved

__all__ = ["FaceRecConfig", "backbone_config_from_dict", "FACE_BACKBONE_CONFIGS", "CLS_TOKEN_BACKBONES"]
