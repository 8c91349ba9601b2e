"""Configuration of the verifier-generating hypernetwork h = (h_bb, h_gen) and of the target network f it feeds."""

from __future__ import annotations

from typing import ClassVar

from transformers import PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..models.configuration_facerec import FaceRecConfig
from .target import TargetConfig

ENROL_POOLING = ("mean",)


class HyperNetConfig(PreTrainedConfig):
    r"""
    Configuration of [`FaceRecHyperNetwork`]: a frozen FaceRec backbone h_bb embeds the enrolment image(s), their
    unit embeddings are averaged and renormalised (`enrol_pooling="mean"`), and the weight generator h_gen maps that
    vector to all weights of one tiny verifier f ([`TargetConfig`]).

    h_gen is chunked (Ha et al.'s HyperNetworks; the paper's generator is not public): f's P weights, flattened in
    `parameter_shapes` order, are cut into `ceil(P / chunk_size)` chunks; chunk k is
    `MLP([W_e e ; z_k])`, one MLP shared by every chunk, `z_k` a learned chunk embedding. Each generated value is
    multiplied by a fixed fan-in scale (He: `sqrt(2 / fan_in)` for conv weights, `sqrt(1 / fan_in)` for the final
    linear, `bias_scale` for biases) so that an untrained h already yields f's with unit-variance activations:
    generated nets are trainable from the first step, and the norm penalty acts on the scale-free raw outputs.

    Args:
        facerec_config (`FaceRecConfig` or `dict`): the backbone h_bb (saved as a sub-config, with its weights).
        target_image_size, target_num_channels, target_channels, max_target_params, max_target_flops: f's layout and
            budget ([`TargetConfig`]; a layout over budget raises `BudgetExceededError`).
        chunk_size (`int`, defaults to 512): weights generated per chunk.
        chunk_embedding_size (`int`, defaults to 32): width of each learned chunk embedding z_k.
        embedding_projection_size (`int`, defaults to 128): width of W_e e.
        generator_hidden_size (`int`, defaults to 256), generator_layers (`int`, defaults to 2): the shared MLP.
        bias_scale (`float`, defaults to 0.1): scale of generated biases.
        enrol_pooling (`str`): how several enrolment embeddings become one (`"mean"` of unit vectors, renormalised).
    """

    model_type: ClassVar[str] = "facerec_hypernet"
    sub_configs_defaults = {
        "facerec_config": SubConfigSpec(
            config_class=FaceRecConfig,
            init_kwargs={"backbone_config": {"model_type": "mobilefacenet", "image_size": [112, 96]},
                         "image_size": [112, 96], "embedding_size": 128, "embedding_head": "none",
                         "pooling": "pooler"},
        )
    }

    facerec_config: dict | FaceRecConfig | None = None
    target_image_size: int = 32
    target_num_channels: int = 1
    target_channels: list[int] | tuple[int, ...] = (16, 32, 56)
    max_target_params: int | None = 25_000
    max_target_flops: int | None = 6_000_000
    chunk_size: int = 512
    chunk_embedding_size: int = 32
    embedding_projection_size: int = 128
    generator_hidden_size: int = 256
    generator_layers: int = 2
    bias_scale: float = 0.1
    enrol_pooling: str = "mean"

    def __post_init__(self, **kwargs):
        self.target_channels = [int(c) for c in self.target_channels]
        super().__post_init__(**kwargs)
        for name in ("chunk_size", "chunk_embedding_size", "embedding_projection_size", "generator_hidden_size",
                     "generator_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.enrol_pooling not in ENROL_POOLING:
            raise ValueError(f"enrol_pooling must be one of {ENROL_POOLING}, got {self.enrol_pooling!r}")
        if not self.bias_scale >= 0:
            raise ValueError(f"bias_scale must be >= 0, got {self.bias_scale!r}")
        self.target_config  # validates f's layout against its budget (BudgetExceededError)

    @property
    def target_config(self) -> TargetConfig:
        """f's layout and budget (measured and checked on each call)."""
        return TargetConfig(self.target_image_size, self.target_num_channels, list(self.target_channels),
                            self.max_target_params, self.max_target_flops)

    @property
    def embedding_size(self) -> int:
        return int(self.facerec_config.embedding_size)


__all__ = ["HyperNetConfig"]
