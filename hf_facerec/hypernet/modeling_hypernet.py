"""The hypernetwork h: a frozen FaceRec backbone h_bb + a chunked weight generator h_gen -> one verifier f per user."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ..models.modeling_facerec import FaceRecModel
from .configuration_hypernet import HyperNetConfig
from .target import TinyVerifierNet, fan_in, parameter_shapes

__all__ = ["FaceRecHyperNetwork", "HyperNetOutput", "batched_logits", "split_weights"]


@dataclass
class HyperNetOutput(ModelOutput):
    """Output of [`FaceRecHyperNetwork`] for B episodes of M probes each.

    Attributes:
        logits (`(B, M)`): f_b(probe_{b,m}), the generated verifier of episode b on its probes (None without probes).
        weights (`(B, P)`): the generated weights of f, flattened in `parameter_shapes` order (fan-in scaled).
        raw_weights (`(B, P)`): the generator's raw outputs before scaling (what the norm penalty acts on).
        enrol_embeddings (`(B, D)`): the pooled, unit-norm enrolment embeddings h_gen read.
    """

    logits: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    raw_weights: torch.Tensor | None = None
    enrol_embeddings: torch.Tensor | None = None


def split_weights(flat: torch.Tensor, shapes) -> dict[str, torch.Tensor]:
    """(P,) or (U, P) flat weights -> name -> (*shape) or (U, *shape) views, in `parameter_shapes` order."""
    out, start = {}, 0
    lead = flat.shape[:-1]
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = flat[..., start:start + n].reshape(*lead, *shape)
        start += n
    if start != flat.shape[-1]:
        raise ValueError(f"flat weights have {flat.shape[-1]} values, the target network needs {start}")
    return out


def batched_logits(net: TinyVerifierNet, flat: torch.Tensor, pixel_values: torch.Tensor, shapes=None,
                   shared_probes: bool = False) -> torch.Tensor:
    """Many verifiers at once with ``torch.func.vmap`` over users.

    Args:
        flat: (U, P) generated weights. pixel_values: (U, M, C, S, S) one probe set per verifier, or with
            ``shared_probes`` (M, C, S, S) the same probes for every verifier (identification).
    Returns:
        (U, M) logits.
    """
    shapes = parameter_shapes(net.config) if shapes is None else shapes
    weights = split_weights(flat, shapes)
    run = lambda w, x: functional_call(net, w, (x,))  # noqa: E731
    return vmap(run, in_dims=(0, None if shared_probes else 0))(weights, pixel_values)


class FaceRecHyperNetwork(PreTrainedModel):
    """h: enrolment image(s) (or their h_bb embeddings) -> the weights of a per-user verifier f, and f's logits on probes.

    h_bb (``self.backbone``, a [`FaceRecModel`]) is frozen: it never receives gradients and stays in eval mode, so
    training may feed its cached embeddings (``enrol_embeddings``) instead of images, with the same result.
    """

    config_class = HyperNetConfig
    base_model_prefix = "hypernet"
    main_input_name = "enrol_embeddings"
    _no_split_modules: list[str] = []

    def __init__(self, config: HyperNetConfig, backbone: FaceRecModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else FaceRecModel(config.facerec_config)
        for module in self.backbone.modules():
            module._is_hf_initialized = True  # post_init leaves h_bb's weights as built / loaded
        self.backbone.requires_grad_(False)
        target = config.target_config
        # f's layout only (meta tensors, not in the state dict): its weights always come from the generator
        with torch.device("meta"):
            object.__setattr__(self, "_target", TinyVerifierNet(target))
        self.shapes = parameter_shapes(target)
        self.num_target_params = sum(math.prod(s) for s in self.shapes.values())
        self.num_chunks = math.ceil(self.num_target_params / config.chunk_size)
        self.embedding_projection = nn.Linear(config.embedding_size, config.embedding_projection_size)
        self.chunk_embeddings = nn.Parameter(torch.zeros(self.num_chunks, config.chunk_embedding_size))
        width, layers = config.embedding_projection_size + config.chunk_embedding_size, []
        for _ in range(config.generator_layers):
            layers += [nn.Linear(width, config.generator_hidden_size), nn.GELU()]
            width = config.generator_hidden_size
        self.generator = nn.Sequential(*layers, nn.LayerNorm(width))
        self.generator_output = nn.Linear(width, config.chunk_size)
        self.post_init()

    @property
    def target(self) -> TinyVerifierNet:
        """f's layout (meta tensors): pass it to `target_forward` / `batched_logits` with generated weights."""
        return self._target

    @property
    def weight_scales(self) -> torch.Tensor:
        """(P,) the fixed scale of each generated value (derived from f's shapes: not a parameter, not saved; a
        plain cached tensor because from_pretrained's meta-device loading leaves non-persistent buffers empty)."""
        scales = self.__dict__.get("_scales")
        device = self.generator_output.weight.device
        if scales is None or scales.device != device:
            scales = self.__dict__["_scales"] = self._weight_scales().to(device)
        return scales

    def _weight_scales(self) -> torch.Tensor:
        """(P,) fixed scale per generated value: He fan-in for ReLU convs, 1/fan_in for the last linear, biases small."""
        last = list(self.shapes)[-2]  # the classifier's weight
        parts = []
        for name, shape in self.shapes.items():
            if len(shape) == 1:
                scale = self.config.bias_scale
            else:
                scale = math.sqrt((1.0 if name == last else 2.0) / fan_in(name, shape))
            parts.append(torch.full((math.prod(shape),), scale))
        return torch.cat(parts)

    def _init_weights(self, module: nn.Module) -> None:
        """He init for the generator's hidden layers, unit-variance outputs for its last layer, N(0, 1) chunk codes."""
        if module is self.generator_output:  # unit-variance raw outputs from the LayerNorm'd hidden state
            nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=math.sqrt(2.0 / module.in_features))
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif module is self:
            nn.init.normal_(self.chunk_embeddings, std=1.0)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm statistics and dropout of h_bb never change
        return self

    @torch.no_grad()
    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """h_bb: (N, C, H, W) processed face crops -> (N, D) unit embeddings (no gradient: h_bb is frozen)."""
        return self.backbone(pixel_values=pixel_values).embeddings

    def pool(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, E, D) enrolment embeddings (+ (B, E) mask of the real ones) -> (B, D): mean of unit vectors, renormalised."""
        embeddings = F.normalize(embeddings, dim=-1)
        if mask is None:
            return F.normalize(embeddings.mean(dim=1), dim=-1)
        mask = mask.to(embeddings.dtype).unsqueeze(-1)
        if bool((mask.sum(dim=1) == 0).any()):
            raise ValueError("every episode needs at least one enrolment embedding (enrol_mask row of zeros)")
        return F.normalize((embeddings * mask).sum(dim=1), dim=-1)

    def generate(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_gen: (B, D) pooled unit embeddings -> ((B, P) scaled weights, (B, P) raw generator outputs)."""
        if pooled.ndim != 2 or pooled.shape[1] != self.config.embedding_size:
            raise ValueError(f"enrolment embeddings must be (B, {self.config.embedding_size}), got {tuple(pooled.shape)}")
        e = self.embedding_projection(pooled)  # (B, d_e)
        b, k = e.shape[0], self.num_chunks
        z = self.chunk_embeddings.unsqueeze(0).expand(b, k, -1)  # (B, K, d_z)
        hidden = self.generator(torch.cat([e.unsqueeze(1).expand(b, k, -1), z], dim=-1))
        raw = self.generator_output(hidden).reshape(b, k * self.config.chunk_size)[:, : self.num_target_params]
        return raw * self.weight_scales.to(raw.dtype), raw

    def forward(
        self,
        enrol_embeddings: torch.Tensor | None = None,
        enrol_pixel_values: torch.Tensor | None = None,
        enrol_mask: torch.Tensor | None = None,
        probe_pixel_values: torch.Tensor | None = None,
        **kwargs,
    ) -> HyperNetOutput:
        r"""
        enrol_embeddings (`(B, E, D)` or `(B, D)`): cached h_bb embeddings of each episode's enrolment image(s).
        enrol_pixel_values (`(B, E, C, H, W)`): the enrolment crops instead, embedded by h_bb.
        enrol_mask (`(B, E)`, *optional*): 1 for real enrolment images, 0 for padding.
        probe_pixel_values (`(B, M, c, s, s)`, *optional*): f's low-resolution probes of each episode.
        Other keys (``labels``, ``probe_embeddings``: what the trainer's objectives read) are ignored here.
        """
        if (enrol_embeddings is None) == (enrol_pixel_values is None):
            raise ValueError("pass exactly one of enrol_embeddings and enrol_pixel_values")
        if enrol_pixel_values is not None:
            b, e = enrol_pixel_values.shape[:2]
            enrol_embeddings = self.embed(enrol_pixel_values.flatten(0, 1)).reshape(b, e, -1)
        if enrol_embeddings.ndim == 2:
            enrol_embeddings = enrol_embeddings.unsqueeze(1)
        pooled = self.pool(enrol_embeddings, enrol_mask)
        weights, raw = self.generate(pooled)
        logits = None
        if probe_pixel_values is not None:
            logits = batched_logits(self.target, weights, probe_pixel_values, self.shapes)
        return HyperNetOutput(logits=logits, weights=weights, raw_weights=raw, enrol_embeddings=pooled)

    @classmethod
    def from_backbone(cls, backbone: FaceRecModel, **config_kwargs) -> "FaceRecHyperNetwork":
        """A fresh h_gen around an existing (e.g. the converted MobileFaceNet) h_bb; its weights are kept."""
        return cls(HyperNetConfig(facerec_config=backbone.config, **config_kwargs), backbone=backbone)
