"""IResNet backbone (insightface / ArcFace) as a transformers model.

This file is shipped as remote code next to saved checkpoints (``trust_remote_code=True`` copies model files flat
into the checkpoint folder and follows only single-dot relative imports), so it imports only torch, transformers and
its sibling configuration file.

Layout (module names; ``scripts/convert_iresnet.py`` maps insightface's ``backbone.pth`` keys onto them)::

    embedder.{convolution, normalization, activation}        insightface conv1, bn1, prelu
    encoder.stages.{s}.layers.{j}.{pre_norm, conv1, mid_norm, activation, conv2, post_norm}
                                                              layer{s+1}.{j}.{bn1, conv1, bn2, prelu, conv2, bn3}
    encoder.stages.{s}.layers.0.shortcut.{convolution, normalization}
                                                              layer{s+1}.0.downsample.{0, 1}
    final_norm                                                bn2
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_iresnet import IResNetConfig, to_size_pair


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int, image_size: tuple[int, int], model: str) -> None:
    """Raise a ValueError unless ``pixel_values`` is (B, num_channels, height, width) with the configured size.

    Face CNNs end in a fixed-size flatten (IResNet) or a global depthwise conv whose kernel is the whole final map
    (MobileFaceNet), so unlike generic vision models they cannot take another resolution.
    """
    if pixel_values.ndim != 4:
        raise ValueError(f"{model} expects pixel_values of shape (B, C, H, W), got {tuple(pixel_values.shape)}")
    channels, height, width = pixel_values.shape[1:]
    if channels != num_channels:
        raise ValueError(
            f"{model} expects {num_channels} input channels (config.num_channels), got {channels} "
            f"(pixel_values shape {tuple(pixel_values.shape)}); convert grayscale/RGBA images to RGB first"
        )
    if (height, width) != tuple(image_size):
        raise ValueError(
            f"{model} expects {image_size[0]}x{image_size[1]} (height x width) faces (config.image_size), got "
            f"{height}x{width}: align/resize faces to the configured size; the final pooling has a fixed size"
        )


class IResNetConvLayer(nn.Module):
    """Conv (no bias) + BatchNorm2d + optional PReLU. (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        eps: float = 1e-5,
        activation: bool = True,
    ):
        super().__init__()
        self.convolution = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.normalization = nn.BatchNorm2d(out_channels, eps=eps)
        self.activation = nn.PReLU(out_channels) if activation else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.normalization(self.convolution(hidden_states)))


class IResNetBasicBlock(GradientCheckpointingLayer):
    """insightface's IBasicBlock: ``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN`` plus the shortcut.

    No activation after the addition (the block is "pre-activation"-like). (B, C_in, H, W) -> (B, C_out, H/s, W/s).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float):
        super().__init__()
        self.pre_norm = nn.BatchNorm2d(in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.mid_norm = nn.BatchNorm2d(out_channels, eps=eps)
        self.activation = nn.PReLU(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.post_norm = nn.BatchNorm2d(out_channels, eps=eps)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = (
            IResNetConvLayer(in_channels, out_channels, kernel_size=1, stride=stride, eps=eps, activation=False)
            if needs_projection
            else nn.Identity()
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(hidden_states)
        hidden_states = self.conv1(self.pre_norm(hidden_states))
        hidden_states = self.activation(self.mid_norm(hidden_states))
        hidden_states = self.post_norm(self.conv2(hidden_states))
        return hidden_states + residual


class IResNetStage(nn.Module):
    """One stage: a stride-2 block (with projection shortcut) then ``depth - 1`` stride-1 blocks."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(
            IResNetBasicBlock(in_channels if i == 0 else out_channels, out_channels, 2 if i == 0 else 1, eps)
            for i in range(depth)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return hidden_states


class IResNetEncoder(nn.Module):
    """All stages. (B, hidden_sizes[0], H, W) -> (B, hidden_sizes[-1], H/2^n, W/2^n); also returns stage outputs."""

    def __init__(self, config: IResNetConfig):
        super().__init__()
        in_sizes = [config.hidden_sizes[0]] + config.hidden_sizes[:-1]
        self.stages = nn.ModuleList(
            IResNetStage(in_size, out_size, depth, config.batch_norm_eps)
            for in_size, out_size, depth in zip(in_sizes, config.hidden_sizes, config.layers)
        )

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        stage_outputs = []
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            stage_outputs.append(hidden_states)
        return hidden_states, tuple(stage_outputs)


def init_conv_prelu(module: nn.Module) -> bool:
    """He init for convolutions, torch's 0.25 slope for PReLU; False for modules it leaves to the caller.

    He init suits conv + PReLU stacks (IResNet, MobileFaceNet) better than the library's normal(0, 0.02).
    """
    if isinstance(module, nn.Conv2d):
        init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.PReLU):
        init.constant_(module.weight, 0.25)
    else:
        return False
    return True


class IResNetPreTrainedModel(PreTrainedModel):
    """Weight init and the transformers plumbing shared by IResNet models."""

    config_class = IResNetConfig
    config: IResNetConfig
    base_model_prefix = "iresnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["IResNetBasicBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        if not init_conv_prelu(module):
            super()._init_weights(module)  # BatchNorm: weight 1, bias 0, running stats reset


class IResNetModel(IResNetPreTrainedModel):
    """IResNet backbone returning the final feature map and its spatial flatten.

    Output (`BaseModelOutputWithPooling`):
        last_hidden_state: (B, hidden_sizes[-1], h, w) after the final BatchNorm2d (insightface ``bn2``);
            (B, 512, 7, 7) for 112x112 input.
        pooler_output: (B, hidden_sizes[-1] * h * w) = ``last_hidden_state.flatten(1)`` ("spatial flatten pooling":
            face CNNs keep the spatial layout and let the embedding FC learn position-specific weights), with
            `config.dropout` applied in training. `config.hidden_size` is its width. insightface's ``fc`` +
            ``features`` (Linear + BatchNorm1d) are the face model's embedding head, not part of this backbone.
        hidden_states (if `output_hidden_states`): (stem output, stage 1 output, ..., stage n output); stage outputs
            are taken before the final BatchNorm2d.
    """

    def __init__(self, config: IResNetConfig):
        super().__init__(config)
        stem_size = config.hidden_sizes[0]
        self.embedder = IResNetConvLayer(config.num_channels, stem_size, kernel_size=3, eps=config.batch_norm_eps)
        self.encoder = IResNetEncoder(config)
        self.final_norm = nn.BatchNorm2d(config.hidden_sizes[-1], eps=config.batch_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
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
            pixel_values: (B, num_channels, H, W) with (H, W) = config.image_size.
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
        check_pixel_values(pixel_values, self.config.num_channels, to_size_pair(self.config.image_size), "IResNet")

        stem_output = self.embedder(pixel_values)
        encoded, stage_outputs = self.encoder(stem_output)
        last_hidden_state = self.final_norm(encoded)
        pooled_output = self.dropout(last_hidden_state.flatten(1))
        hidden_states = (stem_output,) + stage_outputs if output_hidden_states else None

        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled_output, hidden_states) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state, pooler_output=pooled_output, hidden_states=hidden_states
        )


__all__ = ["IResNetModel", "IResNetPreTrainedModel", "check_pixel_values"]
