"""Image processor for aligned face crops: resize to the model's face size, scale, normalise, optional flip TTA.

PIL/NumPy only (no torchvision). Also shipped as remote code next to saved checkpoints, so it imports only
``numpy``, ``PIL``, ``transformers`` and a sibling config file; ``hf_facerec``'s ``load_rgb`` decodes the inputs
where the package is installed (transformers' own conversion otherwise).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs
from transformers.utils import logging

logger = logging.get_logger(__name__)

from .configuration_iresnet import check_image_side

# ArcFace convention: (x / 255 - 0.5) / 0.5 maps pixels to [-1, 1].
FACE_MEAN = [0.5, 0.5, 0.5]
FACE_STD = [0.5, 0.5, 0.5]
_SIDES = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")


def _channels_last_rgb(image, input_data_format) -> np.ndarray | None:
    """(H, W, 3) uint8 by hf_facerec's ``load_rgb`` conversions (16-bit, alpha, float [0, 1], EXIF: one decode path),
    or None where transformers' conversion applies: channels-first arrays, tensors, no ``hf_facerec``."""
    if isinstance(image, np.ndarray):
        if input_data_format not in (None, "channels_last") or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
            return None
    elif not isinstance(image, Image.Image):
        return None
    try:
        from hf_facerec.data.images import to_rgb_array
    except ImportError:  # remote code where the package is not installed
        return None
    return to_rgb_array(image)


def check_processor_settings(size, image_mean, image_std) -> None:
    """ValueError naming the key and value for a side outside (0, MAX_IMAGE_SIDE] or a mean / std that is not finite
    (std > 0): checked when a processor is built or loaded, and per call, before any buffer is allocated."""
    for key in _SIDES:
        value = getattr(size, key, None) if not isinstance(size, dict) else size.get(key)
        if value is not None:
            check_image_side(value, f"size[{key!r}]")
    for key, values, low in (("image_mean", image_mean, -math.inf), ("image_std", image_std, 0.0)):
        values = [values] if isinstance(values, numbers.Real) else list(values or [])
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) and v > low for v in values):
            need = "finite numbers > 0" if low == 0.0 else "finite numbers"
            raise ValueError(f"{key} must be {need}, got {values!r}")


class FaceRecImageProcessorKwargs(ImagesKwargs, total=False):
    """flip_tta (`bool`): also return `pixel_values_flipped`, the horizontally mirrored batch."""

    flip_tta: bool


class FaceRecImageProcessor(PilBackend):
    r"""
    Prepares aligned face crops for a FaceRec model.

    Steps: convert to RGB -> resize to `size` (default 112x112, bilinear; skipped when the image already has that
    size) -> rescale by 1/255 -> normalise with mean 0.5, std 0.5 (ArcFace convention, pixels in [-1, 1]).
    With `flip_tta=True` the output also holds `pixel_values_flipped`, the mirrored batch, for flip test-time
    augmentation (embeddings of both views are summed or concatenated by the caller).

    Returns a `BatchFeature` with `pixel_values` of shape `(batch_size, 3, height, width)`.
    """

    valid_kwargs = FaceRecImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    size = {"height": 112, "width": 112}
    image_mean = FACE_MEAN
    image_std = FACE_STD
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    flip_tta = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        check_processor_settings(self.size, self.image_mean, self.image_std)

    @classmethod
    def from_dict(cls, image_processor_dict, **kwargs):
        """As transformers', but a bad saved setting says where it comes from (``AutoImageProcessor`` and
        ``pipeline()`` load through here without passing the folder)."""
        try:
            return super().from_dict(image_processor_dict, **kwargs)
        except ValueError as error:
            raise ValueError(f"image processor settings (preprocessor_config.json): {error}") from error

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As transformers', but a bad saved setting names the folder or Hub id it was read from."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except ValueError as error:
            if str(pretrained_model_name_or_path) in str(error):
                raise
            raise ValueError(f"{pretrained_model_name_or_path}: {error}") from error

    def process_image(self, image, do_convert_rgb=None, input_data_format=None, **kwargs) -> np.ndarray:
        """One input -> a channels-first array; PIL images and channels-last arrays go through ``load_rgb``'s
        conversions (an RGB uint8 array costs nothing), anything else through transformers'."""
        rgb = _channels_last_rgb(image, input_data_format) if do_convert_rgb else None
        if rgb is None:
            return super().process_image(image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format,
                                         **kwargs)
        return np.moveaxis(rgb, -1, 0)

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        size,
        resample,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        return_tensors=None,
        flip_tta: bool = False,
        **kwargs,
    ) -> BatchFeature:
        check_processor_settings(size, image_mean if do_normalize else None, image_std if do_normalize else None)
        # Images arrive channels-first (C, H, W). Resize only those that need it, then rescale and normalise the
        # whole stacked batch in one affine pass instead of image by image.
        if do_resize:
            target = (size.height, size.width)
            self._warn_if_not_crops(images, target)
            images = [
                image if image.shape[1:] == target else self.resize(image=image, size=size, resample=resample)
                for image in images
            ]
        shapes = {image.shape for image in images}
        if len(shapes) != 1:
            raise ValueError(
                f"Face crops must share one size to be batched, got {sorted(shapes)}; enable do_resize."
            )
        batch = np.stack(images).astype(np.float32)
        scale = np.float32(rescale_factor if do_rescale else 1.0)
        if do_normalize:
            mean = np.asarray(image_mean, dtype=np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(image_std, dtype=np.float32).reshape(1, -1, 1, 1)
            batch = (batch * scale - mean) / std
        elif do_rescale:
            batch = batch * scale
        data = {"pixel_values": batch}
        if flip_tta:
            data["pixel_values_flipped"] = np.ascontiguousarray(batch[..., ::-1])
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _warn_if_not_crops(self, images: list[np.ndarray], target: tuple[int, int]) -> None:
        """Say so (once per processor) when an input looks like a photo, not a face crop: resizing it is a wrong
        answer without a word (e.g. the built-in ``image-feature-extraction`` pipeline given a photo)."""
        if getattr(self, "_warned_not_crops", False):
            return
        th, tw = target
        for image in images:
            h, w = image.shape[1:]
            if abs((h / w) / (th / tw) - 1) > 0.1 or min(h / th, w / tw) > 2:
                self._warned_not_crops = True
                logger.warning(
                    f"FaceRecImageProcessor resizes a {w}x{h} image to {tw}x{th} without finding the face: it expects "
                    "face crops aligned to the model's template. For photos use pipeline('face-feature-extraction') "
                    "or hf_facerec.FaceEmbedder, which detect and align."
                )
                return


__all__ = ["FaceRecImageProcessor", "FACE_MEAN", "FACE_STD", "check_processor_settings"]
