"""One-line face embedding for notebooks and services: images in, an (N, D) array of unit vectors out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .models import FaceRecImageProcessor, FaceRecModel

FLIP_MODES = ("none", "sum", "concat")


class FaceEmbedder:
    """Embed many face images in batches with a FaceRec model.

    Args:
        model: a [`FaceRecModel`] (or anything returning `features` of shape (B, D) for `pixel_values`).
        image_processor: defaults to a [`FaceRecImageProcessor`] sized to `model.config.image_size`.
        batch_size: images per forward pass.
        flip: test-time augmentation with the mirrored image: ``"none"``, ``"sum"`` (insightface: add the two
            feature vectors, then normalise) or ``"concat"`` (concatenate them, then normalise: D doubles).
        preprocess: an optional callable applied to each loaded image first, e.g. a `FaceAligner` from
            `hf_facerec.data.align` for photos that are not aligned crops yet.
        device: where to run; defaults to the model's device.

    Example:
        >>> embedder = FaceEmbedder(model, flip="sum")
        >>> embeddings = embedder(["a.jpg", "b.jpg"])   # (2, D) float32 numpy array, rows of norm 1
        >>> float(embeddings[0] @ embeddings[1])        # cosine similarity
    """

    def __init__(
        self,
        model: FaceRecModel,
        image_processor: FaceRecImageProcessor | None = None,
        batch_size: int = 64,
        flip: str = "none",
        preprocess: Callable[[Any], Any] | None = None,
        device: str | torch.device | None = None,
    ):
        if flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if image_processor is None:
            height, width = model.config.face_size
            image_processor = FaceRecImageProcessor(size={"height": height, "width": width})
        self.model = model.eval()
        self.image_processor = image_processor
        self.batch_size = batch_size
        self.flip = flip
        self.preprocess = preprocess
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "FaceEmbedder":
        """Load a saved FaceRec model (and its image processor, if saved) from a folder or the Hub."""
        from transformers import AutoImageProcessor

        model = FaceRecModel.from_pretrained(name_or_path)
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):
            processor = None  # no preprocessor_config.json: derive one from the model config
        return cls(model, image_processor=processor, **kwargs)

    def _load(self, image: Any, preprocess: Callable[[Any], Any] | None = None) -> Any:
        if isinstance(image, (str, os.PathLike, bytes)):
            from .data.images import load_rgb

            image = load_rgb(image)
        preprocess = self.preprocess if preprocess is None else preprocess
        return preprocess(image) if preprocess is not None else image

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) processed pixels -> (B, D) features before normalisation: the one place a
        subclass swaps the network (``OnnxFaceEmbedder`` runs an onnxruntime session here)."""
        return self.model(pixel_values=pixel_values.to(self.device)).features

    @torch.no_grad()
    def embed_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) processed pixels -> (B, D) float32 unit embeddings (2D with ``flip="concat"``).

        The package's one flip test-time augmentation (the pipeline, the Space, ONNX serving and the
        calibrated thresholds all go through it): the mirrored batch is embedded in the same call,
        then the two feature vectors are summed or concatenated, then normalised.
        """
        if self.flip == "none":
            features = self._features(pixel_values)
        else:
            n = pixel_values.shape[0]
            both = self._features(torch.cat([pixel_values, pixel_values.flip(-1)]))
            features = both[:n] + both[n:] if self.flip == "sum" else torch.cat([both[:n], both[n:]], dim=-1)
        return F.normalize(torch.as_tensor(features).float(), dim=-1).cpu()

    def _embed_batch(self, images: Sequence[Any], preprocess=None) -> torch.Tensor:
        batch = self.image_processor(images=[self._load(image, preprocess) for image in images], return_tensors="pt")
        return self.embed_pixel_values(batch["pixel_values"])

    def __call__(
        self,
        images: Sequence[Any],
        return_tensors: str = "np",
        progress: bool | None = None,
        preprocess: Callable[[Any], Any] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed `images` (PIL images, HxWx3 uint8 arrays, file paths or encoded bytes).

        `preprocess`, when given, replaces the embedder's own for this call (the benchmark runner
        aligns some sets and crops others with one embedder).

        Returns: (N, D) float32 rows of unit norm (D doubles with ``flip="concat"``), as numpy or torch
        (``return_tensors="pt"``). A progress bar is shown for more than four batches unless `progress` says.
        """
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
        images = list(images)
        if not images:
            raise ValueError("No images to embed")
        starts = range(0, len(images), self.batch_size)
        show = progress if progress is not None else len(starts) > 4
        chunks = [
            self._embed_batch(images[start : start + self.batch_size], preprocess)
            for start in tqdm(starts, desc="embedding", unit="batch", disable=not show)
        ]
        embeddings = torch.cat(chunks)
        return embeddings.numpy() if return_tensors == "np" else embeddings


__all__ = ["FaceEmbedder"]
