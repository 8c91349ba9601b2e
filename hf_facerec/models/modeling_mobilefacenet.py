"""MobileFaceNet backbone (Chen et al. 2018) as a transformers model.

This file is shipped as remote code next to saved checkpoints (``trust_remote_code=True`` copies model files flat
into the checkpoint folder and follows only single-dot relative imports), so it imports only torch, transformers and
sibling files.

Layout (module names; ``scripts/convert_mobilefacenet.py`` maps the Xiaoccer/MobileFaceNet_Pytorch keys onto them)::

    stem.{convolution, normalization, activation}             conv1.{conv, bn, prelu}
    stem_depthwise.{convolution, normalization, activation}   dw_conv1.{conv, bn, prelu}
    stages.{s}.{j}.expand / .depthwise / .project             blocks.{i}.conv.{0,1,2} / {3,4,5} / {6,7}
    conv_expand.{convolution, normalization, activation}      conv2.{conv, bn, prelu}
    pooler.gdc.{convolution, normalization}                   linear7.{conv, bn}
    pooler.projection.{convolution, normalization}            linear1.{conv, bn}
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_mobilefacenet import MobileFaceNetConfig
from .modeling_iresnet import check_pixel_values, init_conv_prelu


class MobileFaceNetConvLayer(nn.Module):
    """Conv (no bias, optionally depthwise) + BatchNorm2d + PReLU, or no activation for a "linear" layer.

    (B, C_in, H, W) -> (B, C_out, H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        depthwise: bool = False,
        linear: bool = False,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.convolution = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=in_channels if depthwise else 1,
            bias=False,
        )
        self.normalization = nn.BatchNorm2d(out_channels, eps=eps)
        self.activation = nn.Identity() if linear else nn.PReLU(out_channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.normalization(self.convolution(hidden_states)))


class MobileFaceNetBottleneck(GradientCheckpointingLayer):
    """Inverted residual: 1x1 expand (PReLU) -> 3x3 depthwise(stride) (PReLU) -> 1x1 linear projection.

    The identity is added only when the shape is kept (stride 1 and equal channels), as in MobileNetV2.
    (B, C_in, H, W) -> (B, C_out, H/s, W/s).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, eps: float):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = MobileFaceNetConvLayer(in_channels, hidden, 1, eps=eps)
        self.depthwise = MobileFaceNetConvLayer(hidden, hidden, 3, stride=stride, padding=1, depthwise=True, eps=eps)
        self.project = MobileFaceNetConvLayer(hidden, out_channels, 1, linear=True, eps=eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = self.project(self.depthwise(self.expand(hidden_states)))
        return hidden_states + output if self.use_residual else output


class MobileFaceNetGDCPooler(nn.Module):
    """Linear global depthwise conv (kernel = whole map) + linear 1x1 conv, both with BatchNorm, flattened.

    (B, feature_size, h, w) -> (B, embedding_size). Unlike average pooling, the GDC learns a per-channel weight for
    every spatial position, which matters for aligned faces (the eyes are always in the same place).
    """

    def __init__(self, config: MobileFaceNetConfig):
        super().__init__()
        eps = config.batch_norm_eps
        self.gdc = MobileFaceNetConvLayer(
            config.feature_size, config.feature_size, config.feature_map_size, depthwise=True, linear=True, eps=eps
        )
        self.projection = MobileFaceNetConvLayer(config.feature_size, config.embedding_size, 1, linear=True, eps=eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.projection(self.gdc(hidden_states)).flatten(1)


class MobileFaceNetPreTrainedModel(PreTrainedModel):
    """Weight init and the transformers plumbing shared by MobileFaceNet models."""

    config_class = MobileFaceNetConfig
    config: MobileFaceNetConfig
    base_model_prefix = "mobilefacenet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MobileFaceNetBottleneck"]

    def _init_weights(self, module: nn.Module) -> None:
        if not init_conv_prelu(module):
            super()._init_weights(module)  # BatchNorm: weight 1, bias 0, running stats reset


class MobileFaceNetModel(MobileFaceNetPreTrainedModel):
    """MobileFaceNet backbone; its `pooler_output` is the face embedding itself.

    Output (`BaseModelOutputWithPooling`):
        last_hidden_state: (B, feature_size, h, w), the conv1x1 (512) map before the GDC; (B, 512, 7, 6) for
            112x96 input, (B, 512, 7, 7) for 112x112.
        pooler_output: (B, embedding_size) = GDC -> linear conv1x1 -> BatchNorm, flattened (not L2-normalised).
        hidden_states (if `output_hidden_states`): (stem depthwise output, output of each bottleneck stage,
            last_hidden_state).
    """

    def __init__(self, config: MobileFaceNetConfig):
        super().__init__(config)
        eps = config.batch_norm_eps
        self.stem = MobileFaceNetConvLayer(config.num_channels, config.stem_size, 3, stride=2, padding=1, eps=eps)
        self.stem_depthwise = MobileFaceNetConvLayer(
            config.stem_size, config.stem_size, 3, padding=1, depthwise=True, eps=eps
        )
        stages, in_channels = [], config.stem_size
        for expansion, out_channels, repeats, stride in config.bottleneck_settings:
            blocks = []
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                blocks.append(MobileFaceNetBottleneck(in_channels, out_channels, block_stride, expansion, eps))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.conv_expand = MobileFaceNetConvLayer(in_channels, config.feature_size, 1, eps=eps)
        self.pooler = MobileFaceNetGDCPooler(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple[torch.Tensor, ...]:
        """Embed faces.

        Args:
            pixel_values: (B, num_channels, H, W) with (H, W) = config.image_size; the released checkpoints expect
                RGB normalised as (x - 127.5) / 128.
            output_hidden_states: also return the stem and stage outputs.
            return_dict: return a `BaseModelOutputWithPooling` (default) or a plain tuple
                ``(last_hidden_state, pooler_output[, hidden_states])``.

        Raises:
            ValueError: on a wrong number of channels or a wrong image size.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        check_pixel_values(pixel_values, self.config.num_channels, tuple(self.config.image_size), "MobileFaceNet")

        hidden_state = self.stem_depthwise(self.stem(pixel_values))
        all_hidden_states = [hidden_state]
        for stage in self.stages:
            hidden_state = stage(hidden_state)
            all_hidden_states.append(hidden_state)
        last_hidden_state = self.conv_expand(hidden_state)
        all_hidden_states.append(last_hidden_state)
        # FaceRecModel drops the pooler (sets it to None) when it pools the map itself ("mean" pooling).
        pooled_output = self.pooler(last_hidden_state) if self.pooler is not None else None
        hidden_states = tuple(all_hidden_states) if output_hidden_states else None

        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled_output, hidden_states) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state, pooler_output=pooled_output, hidden_states=hidden_states
        )


__all__ = ["MobileFaceNetModel", "MobileFaceNetPreTrainedModel"]
