"""Enrol a user into a tiny verifier f (its weights alone: safetensors, ONNX for the edge) and verify images with it.

Images take the package's one input path: :func:`~hf_facerec.data.images.load_rgb` decoding and
:class:`~hf_facerec.data.preprocess.FaceInput` detection + alignment to h_bb's face size (the crop h_bb embeds,
through :class:`~hf_facerec.FaceEmbedder`); f sees that same crop resized to its low resolution
(:func:`target_pixels`). Unlike the embedding pipelines, which pick one face by policy, enrolment and verification
refuse a photo with several faces (:class:`MultipleFacesError`): a verifier must know whose face it learned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .._files import atomic_write
from ..data.preprocess import FaceInput
from .modeling_hypernet import FaceRecHyperNetwork, batched_logits, split_weights
from .target import BudgetExceededError, TargetConfig, TinyVerifierNet, parameter_shapes

__all__ = ["HyperNetEnroller", "MultipleFacesError", "enroll", "UnknownUserError", "Verifier", "VerifierFileError",
           "target_pixels", "verifier_logits", "verify"]

VERIFIER_FORMAT = "hf_facerec.hypernet.verifier"
ONNX_ATOL = 1e-5


class VerifierFileError(ValueError):
    """A verifier file that is not one, or whose tensors do not have the shapes its target network needs."""


class MultipleFacesError(ValueError):
    """A photo with several faces given to enrolment or verification (which face is meant is not guessed)."""


class UnknownUserError(KeyError):
    """A user id that is not enrolled in the gallery."""


def target_pixels(crops: Sequence[Image.Image], target: TargetConfig) -> torch.Tensor:
    """Aligned face crops -> f's input (N, C, S, S) in [-1, 1]: bilinear resize to S x S, grayscale if C == 1."""
    mode = "L" if target.num_channels == 1 else "RGB"
    size = (target.image_size, target.image_size)
    arrays = [np.asarray(crop.convert(mode).resize(size, Image.BILINEAR), dtype=np.float32) for crop in crops]
    pixels = torch.as_tensor(np.stack(arrays))
    pixels = pixels.unsqueeze(1) if target.num_channels == 1 else pixels.permute(0, 3, 1, 2)
    return pixels / 127.5 - 1.0


def verifier_logits(weights: torch.Tensor, target: TargetConfig, pixel_values: torch.Tensor,
                    users_per_chunk: int = 1024) -> torch.Tensor:
    """Every verifier on every probe: (U, P) flat weights, (N, C, S, S) probes -> (N, U) logits.

    Verifiers run ``users_per_chunk`` at a time with ``torch.func.vmap`` (activations of one chunk: about
    users_per_chunk x N x 16 x S x S floats), so 100K users never hold all their activations at once.
    """
    with torch.device("meta"):
        net = TinyVerifierNet(target)
    shapes = parameter_shapes(target)
    out = torch.empty(pixel_values.shape[0], weights.shape[0])
    with torch.no_grad():
        for start in range(0, weights.shape[0], users_per_chunk):
            chunk = weights[start:start + users_per_chunk]
            out[:, start:start + chunk.shape[0]] = batched_logits(net, chunk, pixel_values, shapes, True).T
    return out


@dataclass
class Verifier:
    """One user's tiny verifier f: its weights alone, with what is needed to feed it.

    Attributes:
        user_id: whom it accepts. weights: (P,) float32, flattened in `parameter_shapes(target)` order.
        target: f's layout. face_size: (height, width) of the aligned crop f's input is resized from.
    """

    user_id: str
    weights: torch.Tensor
    target: TargetConfig
    face_size: tuple[int, int]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """f's parameters by name (what `TinyVerifierNet.load_state_dict` takes)."""
        return {k: v.contiguous() for k, v in split_weights(self.weights, parameter_shapes(self.target)).items()}

    def module(self) -> TinyVerifierNet:
        """f as an ordinary torch module holding these weights (eval mode)."""
        net = TinyVerifierNet(self.target)
        net.load_state_dict(self.state_dict())
        return net.eval().requires_grad_(False)

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) f inputs (:func:`target_pixels`) -> (N,) logits."""
        with torch.no_grad():
            return self.module()(pixel_values)

    def metadata(self) -> dict[str, str]:
        return {"format": VERIFIER_FORMAT, "user_id": self.user_id, "target": json.dumps(self.target.to_dict()),
                "face_size": json.dumps(list(self.face_size))}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the verifier as one safetensors file (f's named tensors + metadata), atomically."""
        from safetensors.torch import save

        path = Path(path)
        with atomic_write(path, "wb") as handle:
            handle.write(save(self.state_dict(), metadata=self.metadata()))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Verifier":
        """Read a file written by :meth:`save`; :class:`VerifierFileError` names the file and what is wrong."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"verifier file not found: {path}")
        try:
            with safe_open(os.fspath(path), "pt") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError) as error:
            raise VerifierFileError(f"{path} is not a safetensors verifier file: {error}") from error
        if meta.get("format") != VERIFIER_FORMAT:
            raise VerifierFileError(f"{path} is not a verifier file (no {VERIFIER_FORMAT!r} format in its metadata)")
        try:
            target = TargetConfig(**json.loads(meta["target"]))
            face_size = tuple(int(v) for v in json.loads(meta["face_size"]))
            user_id = meta["user_id"]
        except (KeyError, TypeError, ValueError, BudgetExceededError) as error:
            raise VerifierFileError(f"{path}: unreadable verifier metadata: {error}") from error
        shapes = parameter_shapes(target)
        if set(tensors) != set(shapes):
            raise VerifierFileError(f"{path}: tensors {sorted(tensors)} but its target network has {sorted(shapes)}")
        for name, shape in shapes.items():
            if tuple(tensors[name].shape) != tuple(shape):
                raise VerifierFileError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, its "
                                        f"target network needs {tuple(shape)}")
        weights = torch.cat([tensors[name].float().reshape(-1) for name in shapes])
        return cls(user_id, weights, target, face_size)

    def export_onnx(self, path: str | os.PathLike, opset: int = 17, check: bool = True, atol: float = ONNX_ATOL) -> float:
        """Export f (input ``pixel_values`` (batch, C, S, S), output ``logits`` (batch,)) for the edge; with `check`,
        compare onnxruntime with torch on random probes and raise ``OnnxExportError`` past `atol`.

        Returns: max |torch - onnxruntime| over the check logits (NaN without the check).
        """
        import warnings

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        net = self.module()
        c, s = self.target.num_channels, self.target.image_size
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(2, c, s, s),), os.fspath(path), input_names=["pixel_values"],
                              output_names=["logits"], opset_version=opset, dynamo=False,
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
        if not check:
            return float("nan")
        import onnxruntime

        from ..hub.onnx import OnnxExportError

        probes = torch.rand(16, c, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
        session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"pixel_values": probes.numpy()})[0]
        diff = float(np.max(np.abs(got - self.logits(probes).numpy())))
        if not diff <= atol:
            raise OnnxExportError(f"{path}: onnxruntime differs from torch by {diff:.2e} (tolerance {atol:g})")
        return diff


def _crop(faces: FaceInput, image: Any, name: str) -> Image.Image:
    crop, info = faces.face(image, name)
    if (info.get("num_faces") or 0) > 1:
        raise MultipleFacesError(f"{name}: {info['num_faces']} faces found; give a photo of the one person "
                                 "(or an aligned crop)")
    return crop


def _names(images: Sequence[Any]) -> list[str]:
    from ..embedding import _input_name

    return [_input_name(image, i) for i, image in enumerate(images)]


def verify(verifier: Verifier, image: Any, faces: FaceInput | None = None) -> float:
    """p(the face in `image` is `verifier`'s user): sigmoid of f on the aligned, downsampled face.

    `faces` defaults to the package's default detector at the verifier's face size (an aligned crop of that size
    skips detection). Raises NoFaceDetectedError, MultipleFacesError or InvalidImageError for such input.
    """
    faces = faces or FaceInput(verifier.face_size)
    pixels = target_pixels([_crop(faces, image, _names([image])[0])], verifier.target)
    return float(torch.sigmoid(verifier.logits(pixels))[0])


class HyperNetEnroller:
    """Turns enrolment photos into verifiers with a trained hypernetwork (h is needed only here, not to verify).

    Args:
        model: a trained [`FaceRecHyperNetwork`]. image_processor: h_bb's (default: the FaceRec default at its size).
        detector, detector_model, min_score, flip: as in :class:`~hf_facerec.FaceEmbedder` (flip must match the
            embeddings h was trained on).
    """

    def __init__(self, model: FaceRecHyperNetwork, image_processor=None, detector: Any = "auto",
                 detector_model: str | os.PathLike | None = None, min_score: float = 0.5, flip: str = "none"):
        from ..embedding import FaceEmbedder

        self.model = model.eval()
        self.embedder = FaceEmbedder(model.backbone, image_processor, flip=flip, detector=detector,
                                     detector_model=detector_model, min_score=min_score)
        self.target = model.config.target_config
        self.face_size = tuple(model.config.facerec_config.face_size)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs) -> "HyperNetEnroller":
        """A saved hypernetwork folder (with h_bb's image processor, if saved there)."""
        from transformers import AutoImageProcessor

        import hf_facerec.models  # noqa: F401  (registers the FaceRec image processor)

        model = FaceRecHyperNetwork.from_pretrained(folder)
        try:
            processor = AutoImageProcessor.from_pretrained(folder)
        except OSError:
            processor = None
        return cls(model, processor, **kwargs)

    @property
    def faces(self) -> FaceInput:
        return self.embedder.faces

    def crops(self, images: Sequence[Any]) -> list[Image.Image]:
        """Decode, detect (one face per photo) and align: the crops h_bb and f both start from."""
        images = list(images)
        if not images:
            raise ValueError("no images given")
        return [_crop(self.faces, image, name) for image, name in zip(images, _names(images))]

    def embed_crops(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """(N,) aligned crops -> (N, D) h_bb unit embeddings (FaceEmbedder's processor, flip and finite check)."""
        pixel_values = self.embedder.image_processor(images=list(crops), return_tensors="pt")["pixel_values"]
        return self.embedder.embed_pixel_values(pixel_values)

    def enroll(self, user_id: str, images: Sequence[Any]) -> Verifier:
        """One verifier from one or more photos of `user_id` (their embeddings are pooled: mean of unit vectors)."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
        return self.enroll_embeddings(user_id, self.embed_crops(self.crops(images)))

    def enroll_embeddings(self, user_id: str, embeddings: torch.Tensor) -> Verifier:
        """One verifier from (E, D) h_bb embeddings of the user's enrolment images."""
        with torch.no_grad():
            weights, _ = self.model.generate(self.model.pool(torch.as_tensor(embeddings).float()[None]))
        return Verifier(user_id, weights[0].detach().cpu(), self.target, self.face_size)

    def verify(self, verifier: Verifier, image: Any) -> float:
        """:func:`verify` with this enroller's detector."""
        return verify(verifier, image, self.faces)


def enroll(hypernet: FaceRecHyperNetwork | str | os.PathLike, user_id: str, images: Sequence[Any], **kwargs) -> Verifier:
    """One-off enrolment: a model or saved hypernetwork folder, a user id and photos -> the user's :class:`Verifier`
    (`kwargs` go to :class:`HyperNetEnroller`; keep an enroller for many users: it loads the detector once)."""
    if isinstance(hypernet, FaceRecHyperNetwork):
        return HyperNetEnroller(hypernet, **kwargs).enroll(user_id, images)
    return HyperNetEnroller.from_pretrained(hypernet, **kwargs).enroll(user_id, images)
