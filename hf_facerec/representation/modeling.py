"""`SSLModel`: any vision backbone + what self-supervised pre-training needs around it, all dropped at save time.

The backbone is a :class:`~hf_facerec.models.FaceRecModel` with ``embedding_head="none"`` (so pooling, position
encoding interpolation and every backbone family work as in fine-tuning), then:

* ``swav``: projection MLP -> L2-normalised prototypes (K cosines) -> :func:`~.losses.swav_loss` over multi-crop.
* ``dino``: projection MLP -> K logits; a momentum teacher (EMA copy of encoder + head, updated after each
  optimizer step by :meth:`SSLModel.momentum_update`) sees the global crops, centred + sharpened.
* ``simsiam``: projection MLP + predictor, stop-gradient, the two global crops (local crops are not used).

:meth:`SSLModel.save_backbone` writes the backbone alone (``save_pretrained`` of its ``AutoModel``): the folder loads
with ``FaceRecModel.from_backbone(path)`` and ``AutoModel.from_pretrained(path)``.
"""

from __future__ import annotations

import copy
import inspect
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..models import FaceRecConfig, FaceRecModel
from ..models.modeling_facerec import pooled_feature_size
from .losses import dino_loss, ema_update, simsiam_loss, swav_loss, update_center

__all__ = ["METHODS", "SSLModel", "build_encoder"]

METHODS = ("swav", "dino", "simsiam")


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


def build_encoder(backbone, image_size: int, random_init: bool = False) -> FaceRecModel:
    """A FaceRecModel whose embedding is the pooled backbone vector (``features``: (B, width)).

    ``backbone``: a backbone config or a saved backbone folder (its weights, or with ``random_init`` its config
    alone, freshly initialised).
    """
    if isinstance(backbone, (str, os.PathLike)):
        config = FaceRecConfig.from_backbone(os.fspath(backbone), embedding_head="none", image_size=image_size)
        config.embedding_size = pooled_feature_size(config)
        encoder = FaceRecModel(config) if random_init else FaceRecModel.from_backbone(
            os.fspath(backbone), embedding_head="none", image_size=image_size, embedding_size=config.embedding_size)
    else:
        config = FaceRecConfig(backbone_config=backbone, embedding_head="none", image_size=image_size)
        config.embedding_size = pooled_feature_size(config)
        encoder = FaceRecModel(config)
    if "interpolate_pos_encoding" in inspect.signature(encoder.backbone.forward).parameters:
        # local crops are smaller than the global ones: ViT-like backbones interpolate their position embeddings
        encoder.config.interpolate_pos_encoding = encoder._interpolate_pos_encoding = True
    return encoder


class SSLModel(nn.Module):
    """Backbone + projection head (+ prototypes / teacher) with one SSL loss.

    Args:
        backbone: a backbone config (any ``AutoModel`` vision config, IResNet, MobileFaceNet) or a saved folder.
        method: one of :data:`METHODS`. image_size: side of the global crops.
        projection_dim / hidden_dim: projection MLP output / hidden widths.
        n_prototypes: SwAV prototypes / DINO output dimension K.
        temperature: SwAV / DINO-student softmax temperature; teacher_temperature: DINO's sharpening.
        epsilon / sinkhorn_iterations: SwAV's Sinkhorn-Knopp. teacher_momentum / center_momentum: DINO's EMAs.
    """

    def __init__(self, backbone, method: str = "swav", image_size: int = 112, projection_dim: int = 128,
                 hidden_dim: int = 512, n_prototypes: int = 256, temperature: float = 0.1,
                 teacher_temperature: float = 0.04, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 teacher_momentum: float = 0.996, center_momentum: float = 0.9):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown SSL method {method!r}; choose one of {', '.join(METHODS)}")
        self.method, self.temperature, self.teacher_temperature = method, temperature, teacher_temperature
        self.epsilon, self.sinkhorn_iterations = epsilon, sinkhorn_iterations
        self.teacher_momentum, self.center_momentum = teacher_momentum, center_momentum
        self.encoder = build_encoder(backbone, image_size)
        width = self.encoder.config.embedding_size
        self.projector = _mlp(width, hidden_dim, projection_dim)
        if method == "swav":
            self.prototypes = nn.Linear(projection_dim, n_prototypes, bias=False)
        elif method == "dino":
            self.prototypes = nn.utils.parametrizations.weight_norm(nn.Linear(projection_dim, n_prototypes, bias=False))
            self.register_buffer("center", torch.zeros(1, n_prototypes))
            self.teacher = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder), "projector": copy.deepcopy(
                self.projector), "prototypes": copy.deepcopy(self.prototypes)}).requires_grad_(False)
        else:
            self.predictor = _mlp(projection_dim, max(hidden_dim // 4, 8), projection_dim)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def _embed(self, crops: list[torch.Tensor], encoder, projector) -> list[torch.Tensor]:
        # crops of one size go through the encoder together (one forward per resolution, as SwAV does)
        out, sizes = [], [c.shape[0] for c in crops]
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            out.append(projector(encoder(torch.cat(crops[start:end])).features))
            start = end
        return list(torch.cat(out).split(sizes))

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor | None = None, **_) -> dict:
        """global_crops: (B, G, 3, S, S); local_crops: (B, L, 3, s, s) or None. Returns ``{"loss": ()}``."""
        if global_crops.ndim != 5:
            raise ValueError(f"global_crops must be (batch, crops, 3, H, W), got {tuple(global_crops.shape)}")
        if self.training and global_crops.shape[0] < 2:  # BatchNorm heads, Sinkhorn and centring need a batch
            raise ValueError("SSL training batches need >= 2 images (use dataloader_drop_last=True)")
        crops = list(global_crops.unbind(1))
        n_global = len(crops)
        if local_crops is not None and self.method != "simsiam":
            crops += list(local_crops.unbind(1))
        if self.method == "simsiam":
            if n_global < 2:
                raise ValueError("simsiam needs 2 global crops")
            z1, z2 = self._embed(crops[:2], self.encoder, self.projector)
            return {"loss": simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)}
        z = self._embed(crops, self.encoder, self.projector)
        if self.method == "swav":
            w = F.normalize(self.prototypes.weight, dim=1)
            scores = [F.normalize(v, dim=1) @ w.t() for v in z]
            loss = swav_loss(scores, n_global, self.temperature, self.epsilon, self.sinkhorn_iterations)
            return {"loss": loss}
        student = [self.prototypes(F.normalize(v, dim=1)) for v in z]
        with torch.no_grad():
            t = self.teacher
            teacher = [t["prototypes"](F.normalize(v, dim=1))
                       for v in self._embed(crops[:n_global], t["encoder"], t["projector"])]
        loss = dino_loss(student, teacher, self.center, self.temperature, self.teacher_temperature)
        if self.training:
            update_center(self.center, teacher, self.center_momentum)
        return {"loss": loss}

    @torch.no_grad()
    def momentum_update(self) -> None:
        """DINO: move the teacher towards the student (call after each optimizer step); other methods: nothing."""
        if self.method == "dino":
            for name in ("encoder", "projector", "prototypes"):
                ema_update(self.teacher[name], getattr(self, name), self.teacher_momentum)

    def save_backbone(self, save_directory: str | os.PathLike) -> str:
        """Write the backbone alone (``save_pretrained``): no projection head, prototypes or teacher."""
        self.backbone.save_pretrained(os.fspath(save_directory))
        return os.fspath(save_directory)
