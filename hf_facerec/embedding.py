"""One-line face embedding for notebooks and services: images in, an (N, D) array of unit vectors out.

Ordinary photos are detected and aligned by default (:class:`~hf_facerec.data.preprocess.FaceInput`: the
template follows ``config.face_size``); inputs that already are crops of the model's face size skip detection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.images import IMAGE_SOURCE_TYPES, load_rgb
from .data.preprocess import FaceInput
from .models.image_processing_facerec import FaceRecImageProcessor
from .models.modeling_facerec import FaceRecModel, named_load_error

FLIP_MODES = ("none", "sum", "concat")


class FaceEmbedder:
    """Embed many face images in batches with a FaceRec model.

    Args:
        model: a [`FaceRecModel`] (or anything returning `features` of shape (B, D) for `pixel_values`).
        image_processor: defaults to a [`FaceRecImageProcessor`] sized to `model.config.image_size`.
        batch_size: images per forward pass.
        flip: test-time augmentation with the mirrored image: ``"none"``, ``"sum"`` (insightface: add the two
            feature vectors, then normalise) or ``"concat"`` (concatenate them, then normalise: D doubles).
        preprocess: a callable applied to each loaded image instead of the detection below (the benchmark
            runner hands in its own alignment / crops this way).
        detector: how photos that are not ``config.face_size`` crops are aligned: ``"auto"`` (default: YuNet if
            ``$HF_FACEREC_YUNET`` is set, else dlib, offline), ``"dlib"``, ``"yunet"``, a `FaceDetector` or
            `FaceAligner`, or None (no detection: such images are resized whole, with a warning).
        detector_model: the YuNet ``.onnx`` or dlib ``.dat`` file of a named detector.
        policy, min_score: which face of a photo with several is kept, and the lowest detection score.
        device: where to run; defaults to the model's device.

    Raises (when called):
        NoFaceDetectedError: an input that is not a face crop and in which no face is found (named in the message).

    Example:
        >>> embedder = FaceEmbedder(model, flip="sum")
        >>> embeddings = embedder(["a.jpg", "b.jpg"])   # (2, D) float32 numpy array, rows of norm 1
        >>> float(embeddings[0] @ embeddings[1])        # cosine similarity
        >>> embedder.detector_name                       # "dlib": the photos were detected and aligned
    """

    def __init__(
        self,
        model: FaceRecModel,
        image_processor: FaceRecImageProcessor | None = None,
        batch_size: int = 64,
        flip: str = "none",
        preprocess: Callable[[Any], Any] | None = None,
        device: str | torch.device | None = None,
        detector: Any = "auto",
        detector_model: str | os.PathLike | None = None,
        policy: str = "largest",
        min_score: float = 0.5,
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
        self.faces = FaceInput(model.config.face_size, detector, detector_model, policy, min_score)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "FaceEmbedder":
        """Load a saved FaceRec model (and its image processor, if saved) from a folder or the Hub."""
        from transformers import AutoImageProcessor

        model = FaceRecModel.from_pretrained(name_or_path)
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except OSError:  # no preprocessor_config.json: derive one from the model config
            processor = None  # (a hostile one, e.g. size 10**5, raises its ValueError instead of being ignored)
        except (ValueError, RecursionError) as error:
            raise named_load_error(error, name_or_path) from error
        return cls(model, image_processor=processor, **kwargs)

    @property
    def detector_name(self) -> str | None:
        """The detector that aligns photos (``"dlib"``, ``"yunet"``, ...), None without one or with a `preprocess`."""
        faces = getattr(self, "faces", None)
        return None if faces is None or self.preprocess is not None else faces.detector_name

    def _load(self, image: Any, preprocess: Callable[[Any], Any] | None = None, name: str | None = None) -> Any:
        preprocess = self.preprocess if preprocess is None else preprocess
        faces = getattr(self, "faces", None)  # subclasses without one (OnnxFaceEmbedder) skip detection
        if preprocess is None and faces is not None:
            return faces.face(image, name)[0]  # decodes with load_rgb itself
        if isinstance(image, IMAGE_SOURCE_TYPES):
            # load_rgb's conversions (EXIF, alpha, dtypes) for every image; others (LandmarkedImage) go to preprocess
            image = load_rgb(image, name=name)
        return image if preprocess is None else preprocess(image)

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
        features = check_finite_features(torch.as_tensor(features).float(), pixel_values,
                                         model_name=getattr(self.model, "name_or_path", None))
        return F.normalize(features, dim=-1).cpu()

    def _embed_batch(self, images: Sequence[Any], preprocess=None, start: int = 0) -> torch.Tensor:
        loaded = [self._load(image, preprocess, _input_name(image, start + i)) for i, image in enumerate(images)]
        batch = self.image_processor(images=loaded, return_tensors="pt")
        return self.embed_pixel_values(batch["pixel_values"])

    def __call__(
        self,
        images: Sequence[Any],
        return_tensors: str = "np",
        progress: bool | None = None,
        preprocess: Callable[[Any], Any] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed `images` (PIL images, HxWx3 uint8 arrays, file paths, http(s) URLs, base64 strings or encoded
        bytes). Photos that are not crops of the model's face size are detected and aligned (see the class).

        `preprocess`, when given, replaces the embedder's own preprocessing and detection for this call (the
        benchmark runner aligns some sets and crops others with one embedder).

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
            self._embed_batch(images[start : start + self.batch_size], preprocess, start)
            for start in tqdm(starts, desc="embedding", unit="batch", disable=not show)
        ]
        embeddings = torch.cat(chunks)
        return embeddings.numpy() if return_tensors == "np" else embeddings


class NonFiniteEmbeddingError(ValueError):
    """The model produced NaN or infinite features: broken weights or image processor settings (``image_std`` 0)."""


def check_finite_features(
    features: torch.Tensor, pixel_values: torch.Tensor | None = None, model_name: str | None = None
) -> torch.Tensor:
    """``features`` (B, D) unchanged if every value is finite, else a :class:`NonFiniteEmbeddingError` naming the rows.

    The one guard between a model and every embedding the package returns (FaceEmbedder, both pipelines, evaluate,
    the Space): a NaN row would otherwise score as "different person" at every threshold without a word.
    """
    finite = torch.isfinite(features).all(dim=-1)
    if bool(finite.all()):
        return features
    rows = torch.nonzero(~finite).flatten().tolist()
    if pixel_values is not None and not bool(torch.isfinite(pixel_values).all()):
        cause = "the processed pixels already hold NaN/inf: check the image processor's image_mean / image_std"
    else:
        cause = "check the model's weights (NaN/inf parameters) and the image processor's image_mean / image_std"
    raise NonFiniteEmbeddingError(
        f"{f'{model_name}: ' if model_name else ''}the model returned NaN or infinite features for {len(rows)} of {features.shape[0]} images in the batch "
        f"(rows {rows[:10]}); {cause}"
    )


def _input_name(image: Any, index: int) -> str:
    """How an error names input ``index``: ``images[3] ('a.jpg')``, or ``images[3] (PIL image)``."""
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        return f"images[{index}] ({text!r})" if len(text) < 200 else f"images[{index}] (a {len(text)}-character string)"
    return f"images[{index}] ({type(image).__name__})"


__all__ = ["FaceEmbedder", "NonFiniteEmbeddingError", "check_finite_features"]
