"""IResNet configuration (the ArcFace / insightface "improved ResNet" face backbone).

This file is shipped as remote code next to saved checkpoints (``trust_remote_code=True`` copies model files flat
into the checkpoint folder), so it imports only the standard library and ``transformers``.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

from transformers import PreTrainedConfig

# insightface's presets: number of IBasicBlocks per stage.
IRESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


#: Largest image side (pixels) a config or image processor may ask for: far above any face crop (112 px) or vision
#: backbone (518 px), far below sizes whose buffers alone exhaust memory (a side of 10**6 asks for terabytes).
MAX_IMAGE_SIDE = 4096


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_image_side(value, name: str) -> int:
    """``value`` as an int if it is a positive integer of at most :data:`MAX_IMAGE_SIDE`, else a ValueError naming it."""
    if not _is_int(value) or not 0 < value <= MAX_IMAGE_SIDE:
        raise ValueError(f"{name} must be a positive int of at most {MAX_IMAGE_SIDE} pixels, got {value!r}")
    return int(value)


def to_size_pair(image_size: int | list[int] | tuple[int, ...], name: str = "image_size") -> tuple[int, int]:
    """Normalise an image size given as ``int`` or ``(height, width)`` to a ``(height, width)`` tuple of ints.

    Raises:
        ValueError: if the value is not one or two positive integers of at most :data:`MAX_IMAGE_SIDE`.
    """
    if _is_int(image_size):
        pair = (image_size, image_size)
    elif isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        pair = tuple(image_size)
    else:
        raise ValueError(f"{name} must be a positive int or (height, width) of positive ints, got {image_size!r}")
    if not all(_is_int(v) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or (height, width) of positive ints, got {image_size!r}")
    return check_image_side(pair[0], name), check_image_side(pair[1], name)


def conv_output_size(size: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> int:
    """Spatial output length of a convolution (no dilation): ``(size + 2 * padding - kernel_size) // stride + 1``."""
    return (size + 2 * padding - kernel_size) // stride + 1


def _check_positive_ints(name: str, values: list[int]) -> None:
    if len(values) == 0 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {values!r}")


class IResNetConfig(PreTrainedConfig):
    r"""
    Configuration of an [`IResNetModel`]: insightface's IResNet (Deng et al., ArcFace, 2019), the standard face
    recognition CNN: a stride-1 3x3 stem, then stages of pre-activation "IBasicBlock"s
    (BN-conv3x3-BN-PReLU-conv3x3(stride 2)-BN, plus a 1x1 conv + BN shortcut when the shape changes), then a final
    BatchNorm2d. Every stage halves the resolution, so a 112x112 face gives a 7x7 map.

    Args:
        layers (`list[int]`, defaults to `[3, 4, 14, 3]` (iresnet50)): number of blocks per stage. Presets:
            [`IResNetConfig.from_depth`] with 18, 34, 50, 100 or 200.
        hidden_sizes (`list[int]`, defaults to `[64, 128, 256, 512]`): channels of each stage; the stem has
            `hidden_sizes[0]` channels (64 in insightface).
        num_channels (`int`, defaults to 3): input channels.
        image_size (`int` or `(height, width)`, defaults to 112): the only input size the model accepts, because the
            face model flattens the final map ("spatial flatten pooling") into a fixed-width vector.
        dropout (`float`, defaults to 0.0): dropout on the flattened `pooler_output` during training (insightface
            applies it between the flatten and the embedding FC).
        batch_norm_eps (`float`, defaults to 1e-5): epsilon of every BatchNorm.

    Derived (read-only) attribute:
        hidden_size (`int`): width of `pooler_output`, `hidden_sizes[-1] * h * w` with (h, w) the final map size
            (512 * 7 * 7 = 25088 for iresnet at 112x112). Not saved: always recomputed from the fields above.
    """

    model_type: ClassVar[str] = "iresnet"

    layers: list[int] | tuple[int, ...] = IRESNET_DEPTHS[50]
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 256, 512)
    num_channels: int = 3
    image_size: int | list[int] | tuple[int, int] = 112
    dropout: float = 0.0
    batch_norm_eps: float = 1e-5

    def __post_init__(self, **kwargs):
        # A saved config or a caller may pass the derived width: accept it only when it agrees.
        stated_hidden_size = kwargs.pop("hidden_size", None)
        self.layers = list(self.layers)
        self.hidden_sizes = list(self.hidden_sizes)
        _check_positive_ints("layers", self.layers)
        _check_positive_ints("hidden_sizes", self.hidden_sizes)
        if len(self.layers) != len(self.hidden_sizes):
            raise ValueError(
                f"layers and hidden_sizes must have one entry per stage, got {len(self.layers)} and "
                f"{len(self.hidden_sizes)}"
            )
        if isinstance(self.image_size, (list, tuple)):
            self.image_size = list(to_size_pair(self.image_size))
        else:
            to_size_pair(self.image_size)
        if not isinstance(self.num_channels, int) or self.num_channels <= 0:
            raise ValueError(f"num_channels must be a positive int, got {self.num_channels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.batch_norm_eps <= 0:
            raise ValueError(f"batch_norm_eps must be positive, got {self.batch_norm_eps!r}")
        super().__post_init__(**kwargs)
        if stated_hidden_size is not None:
            self.hidden_size = stated_hidden_size

    @classmethod
    def from_depth(cls, depth: int, **kwargs) -> IResNetConfig:
        """insightface preset ``iresnet{depth}`` (18, 34, 50, 100 or 200); ``kwargs`` override other fields."""
        if depth not in IRESNET_DEPTHS:
            raise ValueError(f"unknown IResNet depth {depth!r}; choose one of {sorted(IRESNET_DEPTHS)}")
        return cls(layers=list(IRESNET_DEPTHS[depth]), **kwargs)

    @property
    def feature_map_size(self) -> tuple[int, int]:
        """(h, w) of `last_hidden_state`: each stage's stride-2 3x3 conv (padding 1) maps n to (n - 1) // 2 + 1."""
        height, width = to_size_pair(self.image_size)
        for _ in self.layers:
            height, width = conv_output_size(height, stride=2), conv_output_size(width, stride=2)
        return height, width

    @property
    def hidden_size(self) -> int:
        """Width of the flattened `pooler_output`: ``hidden_sizes[-1] * h * w``."""
        height, width = self.feature_map_size
        return self.hidden_sizes[-1] * height * width

    @hidden_size.setter
    def hidden_size(self, value: int) -> None:
        if value != self.hidden_size:
            raise ValueError(
                f"hidden_size is derived (hidden_sizes[-1] * final map h * w = {self.hidden_size}); got {value!r}. "
                "Change hidden_sizes or image_size instead."
            )


__all__ = ["IResNetConfig", "IRESNET_DEPTHS", "MAX_IMAGE_SIDE", "check_image_side", "to_size_pair", "conv_output_size"]
