"""MobileFaceNet configuration (Chen et al., "MobileFaceNets", 2018).

This file is shipped as remote code next to saved checkpoints (``trust_remote_code=True`` copies model files flat
into the checkpoint folder and follows only single-dot relative imports), so it imports only the standard library,
``transformers`` and a sibling configuration file.
"""

from __future__ import annotations

from typing import ClassVar

from transformers import PreTrainedConfig

from .configuration_iresnet import conv_output_size, to_size_pair

# The paper's bottleneck table (expansion t, output channels c, repeats n, first stride s).
MOBILEFACENET_BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class MobileFaceNetConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MobileFaceNetModel`]: conv3x3/2 -> depthwise conv3x3 -> inverted-residual bottlenecks ->
    conv1x1 -> linear global depthwise conv (GDC, kernel = the whole final map) -> linear conv1x1 + BatchNorm.
    PReLU follows every non-linear conv.

    Args:
        num_channels (`int`, defaults to 3): input channels.
        image_size (`int` or `(height, width)`, defaults to `(112, 112)`): the only input size the model accepts
            (the GDC kernel covers the final map). Stored as `[height, width]`. Chen et al.'s 112x96 crops give a
            7x6 map.
        stem_size (`int`, defaults to 64): channels of the stem conv and of the stem depthwise conv.
        bottleneck_settings (`list[list[int]]`): one `[t, c, n, s]` row per stage (expansion, output channels,
            repeats, stride of the first block); defaults to the paper's table.
        feature_size (`int`, defaults to 512): channels of the conv1x1 before the GDC (`last_hidden_state`).
        embedding_size (`int`, defaults to 128): output width of the linear conv1x1 (`pooler_output`).
        batch_norm_eps (`float`, defaults to 1e-5): epsilon of every BatchNorm.

    Derived (read-only) attribute:
        hidden_size (`int`): width of `pooler_output`, equal to `embedding_size`. Not saved.
    """

    model_type: ClassVar[str] = "mobilefacenet"

    num_channels: int = 3
    image_size: int | list[int] | tuple[int, int] = (112, 112)
    stem_size: int = 64
    bottleneck_settings: list[list[int]] | tuple[tuple[int, int, int, int], ...] = MOBILEFACENET_BOTTLENECKS
    feature_size: int = 512
    embedding_size: int = 128
    batch_norm_eps: float = 1e-5

    def __post_init__(self, **kwargs):
        stated_hidden_size = kwargs.pop("hidden_size", None)
        self.image_size = list(to_size_pair(self.image_size))
        self.bottleneck_settings = [list(row) for row in self.bottleneck_settings]
        if not self.bottleneck_settings or not all(
            len(row) == 4 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in row)
            for row in self.bottleneck_settings
        ):
            raise ValueError(
                "bottleneck_settings must be a non-empty list of [expansion, channels, repeats, stride] rows of "
                f"positive ints, got {self.bottleneck_settings!r}"
            )
        for name in ("num_channels", "stem_size", "feature_size", "embedding_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.batch_norm_eps <= 0:
            raise ValueError(f"batch_norm_eps must be positive, got {self.batch_norm_eps!r}")
        super().__post_init__(**kwargs)
        if stated_hidden_size is not None:
            self.hidden_size = stated_hidden_size

    @property
    def feature_map_size(self) -> tuple[int, int]:
        """(h, w) of `last_hidden_state` = the GDC kernel: the stem conv and each stage's first block stride."""
        height, width = self.image_size
        for stride in [2] + [row[3] for row in self.bottleneck_settings]:
            height, width = conv_output_size(height, stride=stride), conv_output_size(width, stride=stride)
        return height, width

    @property
    def hidden_size(self) -> int:
        """Width of `pooler_output` (the embedding): `embedding_size`."""
        return self.embedding_size

    @hidden_size.setter
    def hidden_size(self, value: int) -> None:
        if value != self.embedding_size:
            raise ValueError(
                f"hidden_size is derived (= embedding_size = {self.embedding_size}); got {value!r}. "
                "Set embedding_size instead."
            )


__all__ = ["MobileFaceNetConfig", "MOBILEFACENET_BOTTLENECKS"]
