"""ONNX export of the embedding model (dynamic batch, checked with onnxruntime) and an onnxruntime embedder.

``export_onnx(model, "model.onnx")`` traces ``pixel_values (B, C, H, W) -> embeddings (B, D)`` (unit rows) with
``torch.onnx.export(..., dynamo=False)``, batch axis dynamic, H and W fixed to the model's face size; then runs
onnxruntime on a batch of a *different* size than the traced one and raises :class:`OnnxExportError` if
``max |torch - onnxruntime| >= atol`` (1e-4). :class:`OnnxFaceEmbedder` is `FaceEmbedder` with an onnxruntime
session instead of torch: same call, same flip TTA, same preprocessing, for CPU serving without torch in the loop.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..embedding import FLIP_MODES, FaceEmbedder

__all__ = ["ONNX_FILENAME", "OnnxExportError", "OnnxFaceEmbedder", "export_onnx"]

#: Where the ONNX file lives inside a model folder / Hub repo.
ONNX_FILENAME = "onnx/model.onnx"


class OnnxExportError(RuntimeError):
    """The exported graph does not reproduce the torch model within tolerance."""


class _Embeddings(torch.nn.Module):
    """The exported function: pixel_values (B, C, H, W) -> (embeddings (B, D) unit rows, features (B, D) before the
    normalisation: flip TTA "sum" adds features, as FaceEmbedder does)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values)
        return outputs.embeddings, outputs.features


def _facerec_model(model_or_path):
    from ..models import FaceRecModel

    if isinstance(model_or_path, (str, os.PathLike)):
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


def export_onnx(
    model_or_path, output_path: str | os.PathLike, opset: int = 17, check: bool = True, atol: float = 1e-4
) -> Path:
    """Export a FaceRec embedding model to ONNX with a dynamic batch axis.

    Args:
        model_or_path: a FaceRecModel / FaceRecForMarginClassification or a saved folder.
        output_path: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset version.
        check: compare onnxruntime with torch on a random batch of 3 (export traces a batch of 2).
        atol: the largest allowed absolute difference of the embeddings.
    Returns:
        The path written. Graph input ``pixel_values`` (batch, C, H, W) float32; outputs ``embeddings`` (batch, D,
        unit rows) and ``features`` (batch, D, before normalisation).
    Raises:
        OnnxExportError: the check fails (the message gives the difference).
    """
    model = _facerec_model(model_or_path)
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
        if check:
            generator = torch.Generator().manual_seed(0)
            batch = torch.randn(3, channels, height, width, generator=generator)
            with torch.no_grad():
                expected = [t.numpy() for t in wrapper(batch)]
            got = _session(output_path).run(["embeddings", "features"], {"pixel_values": batch.numpy()})
            diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
            if not diff < atol:
                raise OnnxExportError(f"onnxruntime differs from torch by {diff:.3g} (allowed < {atol:g})")
    finally:
        model.train(was_training)
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
        except (OSError, ValueError):
            processor = None
        return cls(onnx_path, image_processor=processor, **kwargs)

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The onnxruntime session in place of the torch model; FaceEmbedder does the rest (flip TTA included)."""
        batch = np.ascontiguousarray(pixel_values.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(["features"], {self.input_name: batch})[0])
