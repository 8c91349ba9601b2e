"""ONNX export of the embedding model (dynamic batch, checked with onnxruntime) and an onnxruntime embedder.

``export_onnx(model, "model.onnx")`` traces ``pixel_values (B, C, H, W) -> embeddings (B, D)`` (unit rows) with
``torch.onnx.export(..., dynamo=False)``, batch axis dynamic, H and W fixed to the model's face size; then
:func:`check_onnx` runs torch and onnxruntime on face-like input, a batch of another size than the traced one:
by default :data:`CHECK_FACES` synthetic faces (``hf_facerec.data.synthetic``, not anyone's face) aligned to the
model's template and put through its image processor, or the user's own aligned crops (``check_images``). It
measures max |torch - onnxruntime| over the embeddings and the lowest cosine between the two embeddings of one
image, and raises :class:`OnnxExportError` when the difference exceeds ``atol``.

Tolerance (``DEFAULT_ATOL`` = 1e-3 on unit-norm embeddings): onnxruntime fuses convolutions with BatchNorm and
reorders float32 sums, so differences of 1e-7 (MobileFaceNet) to ~1e-3 (deep backbones on real photos) are
rounding, not a broken graph; a wrong export differs by 0.1 or more. Random noise input understates the
difference (its activations are small), hence face-like input. :class:`OnnxFaceEmbedder` is `FaceEmbedder` with
an onnxruntime session instead of torch: same call, same flip TTA, same preprocessing, for CPU serving.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..embedding import FLIP_MODES, FaceEmbedder

__all__ = ["CHECK_FACES", "DEFAULT_ATOL", "ONNX_FILENAME", "OnnxCheck", "OnnxExportError", "OnnxFaceEmbedder",
           "check_onnx", "export_onnx", "facerec_model", "folder_image_processor", "synthetic_face_crops"]

#: Where the ONNX file lives inside a model folder / Hub repo.
ONNX_FILENAME = "onnx/model.onnx"
#: Largest allowed max |torch - onnxruntime| of the unit-norm embeddings (see the module docstring).
DEFAULT_ATOL = 1e-3
#: Synthetic faces the check renders when no images are given (3 batches: not the traced batch size of 2).
CHECK_FACES = 24
_CHECK_BATCH = 8


class OnnxExportError(RuntimeError, ValueError):
    """The exported graph does not reproduce the torch model within tolerance (a ValueError too, so the CLI
    reports it in one line)."""


@dataclass(frozen=True)
class OnnxCheck:
    """What :func:`check_onnx` measured: `max_abs_diff` over the (N, D) embeddings, `min_cosine` between the torch
    and onnxruntime embedding of one image, `num_images` and their `source` ("synthetic faces" or a path)."""

    max_abs_diff: float
    min_cosine: float
    num_images: int
    source: str
    atol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff) and self.max_abs_diff <= self.atol)

    def __str__(self) -> str:
        return (f"max |torch - onnxruntime| = {self.max_abs_diff:.2e} (tolerance {self.atol:g}), min cosine "
                f"{self.min_cosine:.7f}, on {self.num_images} {self.source}")


class _Embeddings(torch.nn.Module):
    """The exported function: pixel_values (B, C, H, W) -> (embeddings (B, D) unit rows, features (B, D) before the
    normalisation: flip TTA "sum" adds features, as FaceEmbedder does)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values)
        return outputs.embeddings, outputs.features


def _check_facerec_folder(name_or_path) -> None:
    """Refuse, in one line naming the folder, what FaceRecModel.from_pretrained would load with random weights."""
    from transformers import PretrainedConfig

    path = Path(name_or_path)
    if path.is_dir() and not (path / "config.json").is_file():
        hint = " (a PEFT adapter: export the merged model folder)" if (path / "adapter_config.json").is_file() else ""
        raise ValueError(f"{path} is not a saved FaceRec model folder: no config.json{hint}")
    try:
        config, _ = PretrainedConfig.get_config_dict(os.fspath(name_or_path))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{name_or_path}: cannot read config.json ({error})") from error
    if config.get("model_type") != "facerec":
        raise ValueError(f"{name_or_path} holds a {config.get('model_type')!r} model, not a FaceRec model (its "
                         "config.json needs model_type 'facerec'); export a model saved by hf_facerec")


def facerec_model(model_or_path):
    from ..models import FaceRecModel

    if isinstance(model_or_path, (str, os.PathLike)):
        _check_facerec_folder(model_or_path)
        return FaceRecModel.from_pretrained(model_or_path)
    model = getattr(model_or_path, "facerec", model_or_path)  # a margin-classification model exports its encoder
    if not isinstance(model, FaceRecModel):
        raise ValueError(f"expected a FaceRecModel (or a saved folder), got {type(model_or_path).__name__}")
    return model


def _session(path: str | os.PathLike, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def synthetic_face_crops(face_size: Sequence[int], count: int = CHECK_FACES, seed: int = 0) -> list:
    """`count` synthetic faces (one image each of `count` identities) aligned to the template of `face_size`
    (height, width) by their rendered landmarks: PIL images of (width, height)."""
    from ..data.align import align_face, face_template
    from ..data.synthetic import identity_rng, image_rng, render_identity_image, sample_identity

    template, size = face_template(face_size)
    crops = []
    for identity in range(count):
        image, landmarks = render_identity_image(sample_identity(identity_rng(seed, identity)),
                                                 image_rng(seed, identity, 0), 128)
        crops.append(align_face(image, landmarks, template, size))
    return crops


def _check_images(images) -> tuple[list, str]:
    """The user's aligned crops: a folder (every image under it), a list of paths / images; one decode path."""
    from ..data.align_folder import list_images
    from ..data.images import load_rgb

    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"check images folder {folder} does not exist")
        paths = [folder / p for p in list_images(folder)]
        if not paths:
            raise ValueError(f"check images folder {folder} holds no images")
        return [load_rgb(p) for p in paths], f"images of {folder}"
    loaded = [load_rgb(image) for image in images]
    if not loaded:
        raise ValueError("check_images is empty")
    return loaded, "given images"


def folder_image_processor(model_or_path, model):
    """The image processor saved in the model folder, else the default `FaceRecImageProcessor` at the face size."""
    from ..models import FaceRecImageProcessor

    if isinstance(model_or_path, (str, os.PathLike)) and Path(model_or_path, "preprocessor_config.json").is_file():
        return FaceRecImageProcessor.from_pretrained(model_or_path)
    height, width = model.config.face_size
    return FaceRecImageProcessor(size={"height": height, "width": width})


def check_onnx(model_or_path, onnx_path: str | os.PathLike, images=None, image_processor=None,
               atol: float = DEFAULT_ATOL) -> OnnxCheck:
    """Compare onnxruntime with torch on face-like input; returns the :class:`OnnxCheck` (raises nothing).

    Args:
        model_or_path: the torch model (or its folder) `onnx_path` was exported from.
        images: aligned crops (a folder, paths or images) at the model's face size; default
            :func:`synthetic_face_crops`. Run through `image_processor` (default: the folder's, else the default
            `FaceRecImageProcessor` at the face size) in batches of 8.
        atol: the tolerance recorded in the result (`OnnxCheck.passed`).
    """
    model = facerec_model(model_or_path)
    height, width = model.config.face_size
    image_processor = image_processor or folder_image_processor(model_or_path, model)
    if images is None:
        crops, source = synthetic_face_crops((height, width)), "synthetic faces"
    else:
        crops, source = _check_images(images)
    session = _session(onnx_path)
    wrapper = _Embeddings(model)
    was_training = model.training
    model.eval()
    expected, got = [], []
    try:
        for start in range(0, len(crops), _CHECK_BATCH):
            pixels = image_processor(images=crops[start:start + _CHECK_BATCH], return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                expected.append(wrapper(pixels)[0].numpy())
            got.append(session.run(["embeddings"], {"pixel_values": pixels.numpy().astype(np.float32)})[0])
    finally:
        model.train(was_training)
    expected, got = np.concatenate(expected), np.concatenate(got)
    diff = float(np.max(np.abs(got - expected)))
    cosine = float(np.min(np.sum(got * expected, axis=1)))  # both sides are unit rows
    return OnnxCheck(diff if np.isfinite(diff) else float("nan"), cosine, len(crops), source, atol)


def export_onnx(
    model_or_path, output_path: str | os.PathLike, opset: int = 17, check: bool = True, atol: float = DEFAULT_ATOL,
    check_images=None, image_processor=None,
) -> Path:
    """Export a FaceRec embedding model to ONNX with a dynamic batch axis.

    Args:
        model_or_path: a FaceRecModel / FaceRecForMarginClassification or a saved folder (its config.json must
            say model_type 'facerec': another model is refused, not loaded with random weights).
        output_path: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset version.
        check: compare onnxruntime with torch (:func:`check_onnx`) on `check_images` (default: synthetic faces).
        atol: the largest allowed max |torch - onnxruntime| of the unit-norm embeddings (module docstring).
    Returns:
        The path written. Graph input ``pixel_values`` (batch, C, H, W) float32; outputs ``embeddings`` (batch, D,
        unit rows) and ``features`` (batch, D, before normalisation).
    Raises:
        OnnxExportError: the check fails (the message gives the measured difference and cosine).
    """
    model = facerec_model(model_or_path)
    height, width = model.config.face_size
    channels = model.config.num_channels
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _Embeddings(model).eval()
    was_training = model.training
    model.eval()
    try:
        # The models' own shape checks are Python ifs the tracer warns about; shapes other than the batch are fixed.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                wrapper, (torch.randn(2, channels, height, width),), os.fspath(output_path),
                input_names=["pixel_values"], output_names=["embeddings", "features"], opset_version=opset,
                dynamo=False, dynamic_axes={name: {0: "batch"} for name in ("pixel_values", "embeddings", "features")},
            )
    finally:
        model.train(was_training)
    if check:
        processor = image_processor or folder_image_processor(model_or_path, model)
        result = check_onnx(model, output_path, check_images, processor, atol)
        if not result.passed:
            raise OnnxExportError(f"{output_path}: onnxruntime differs from torch: {result}")
    return output_path


class OnnxFaceEmbedder(FaceEmbedder):
    """:class:`~hf_facerec.FaceEmbedder` running an exported ONNX graph with onnxruntime (CPU).

    Args:
        onnx_path: the ``.onnx`` file of :func:`export_onnx`.
        image_processor: defaults to a `FaceRecImageProcessor` at the graph's input size (H, W).
        batch_size, flip, preprocess: as in `FaceEmbedder` (the flipped batch runs in the same session call).
        threads: onnxruntime intra-op threads (default: its own choice).

    Example:
        >>> embed = OnnxFaceEmbedder.from_pretrained("path/or/org-name")   # onnx/model.onnx + preprocessor_config.json
        >>> embed(["a.jpg", "b.jpg"]).shape                                # (2, D), rows of norm 1
    """

    def __init__(self, onnx_path: str | os.PathLike, image_processor=None, batch_size: int = 64,
                 flip: str = "none", preprocess=None, threads: int | None = None):
        if flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not Path(onnx_path).is_file():
            raise ValueError(f"ONNX file {onnx_path} does not exist")
        self.session = _session(onnx_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        height, width = self.session.get_inputs()[0].shape[2:]
        if image_processor is None:
            from ..models import FaceRecImageProcessor

            image_processor = FaceRecImageProcessor(size={"height": int(height), "width": int(width)})
        self.model = None  # no torch model: FaceEmbedder's batching and loading are reused as they are
        self.image_processor, self.batch_size, self.flip, self.preprocess = image_processor, batch_size, flip, preprocess
        self.device = torch.device("cpu")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, filename: str = ONNX_FILENAME,
                        **kwargs) -> "OnnxFaceEmbedder":
        """Load ``filename`` and the image processor from a model folder or a Hub repo."""
        from ..models import FaceRecImageProcessor

        folder = Path(name_or_path)
        if folder.is_dir():
            onnx_path = folder / filename
        else:
            from huggingface_hub import hf_hub_download

            onnx_path = Path(hf_hub_download(os.fspath(name_or_path), filename))
        try:
            processor = FaceRecImageProcessor.from_pretrained(name_or_path)
        except OSError:  # no preprocessor_config.json; a hostile one raises its ValueError
            processor = None
        return cls(onnx_path, image_processor=processor, **kwargs)

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The onnxruntime session in place of the torch model; FaceEmbedder does the rest (flip TTA included)."""
        batch = np.ascontiguousarray(pixel_values.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(["features"], {self.input_name: batch})[0])
