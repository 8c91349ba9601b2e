"""Tiny configs of every backbone family the FaceRec model is tested with (random weights, built in milliseconds)."""

from transformers import CLIPVisionConfig, ConvNextConfig, Dinov2Config, ResNetConfig, SwinConfig, ViTConfig

from hf_facerec.models import IResNetConfig, MobileFaceNetConfig

_VIT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def tiny_backbone_config(name: str, image_size: int = 112):
    """A tiny config of backbone family `name`, native to `image_size` unless the family has its own default."""
    if name == "dinov2":
        return Dinov2Config(image_size=image_size, patch_size=16, **_VIT_LIKE)
    if name == "vit":
        return ViTConfig(image_size=image_size, patch_size=16, **_VIT_LIKE)
    if name == "clip_vision_model":
        return CLIPVisionConfig(image_size=image_size, patch_size=16, projection_dim=16, **_VIT_LIKE)
    if name == "swin":
        return SwinConfig(image_size=image_size, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=7)
    if name == "convnext":
        return ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    if name == "resnet":
        return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    if name == "iresnet":
        return IResNetConfig(layers=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], image_size=image_size)
    if name == "mobilefacenet":
        return MobileFaceNetConfig.tiny(image_size=image_size) if hasattr(MobileFaceNetConfig, "tiny") else MobileFaceNetConfig(image_size=image_size)
    raise KeyError(name)


BACKBONES = ("dinov2", "vit", "clip_vision_model", "swin", "convnext", "resnet", "iresnet", "mobilefacenet")


def fit_losses(model, pixel_values, labels, steps: int = 15, lr: float = 3e-3) -> list[float]:
    """Train ``model`` (a margin-classification model) on one fixed batch with AdamW; the loss of each step."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = model(pixel_values, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses
