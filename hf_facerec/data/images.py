"""Safe image loading: any common source -> an RGB ``PIL.Image`` or a clear ``InvalidImageError``.

Every face pipeline step (detector, aligner, image processor, dataset builders) starts from
:func:`load_rgb`, so the conversions below happen in exactly one place:

========================  ==================================================================
source mode               conversion
========================  ==================================================================
``RGB``                   unchanged
``L``, ``1``              replicated to three channels
``P`` (palette)           palette colours; a transparent palette entry is composited on white
``RGBA``, ``LA``, ``PA``  composited on a white background (see below)
``CMYK``, ``YCbCr``, ...  converted by PIL's own colour conversion
``I;16*``, ``I``          16-bit data, clipped to [0, 65535] and scaled to 8 bits (``v / 257``)
``F`` (float)             clipped to [0, 255] (PIL's convention for float images), rounded
========================  ==================================================================

Alpha is composited on white rather than dropped: fully transparent pixels of PNG cut-outs
often hold arbitrary (usually black) colour values, and white is what image viewers show.

Strings that are not existing files may be ``http(s)://`` URLs (downloaded with the standard library) or base64
data (a ``data:image/...;base64,`` URI or bare base64), as ``transformers.image_utils.load_image`` accepts.

EXIF orientation is applied (``ImageOps.exif_transpose``) so that landmark coordinates refer to
the image as a person sees it.

Numpy arrays are read as ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA), with dtype

* ``uint8``: used as is;
* ``uint16``: 16-bit data, scaled by 1/257 (as ``I;16`` files);
* other integers (``int64`` from ``np.array(list)``, ...): must hold 0-255, used as 8-bit values;
* ``bool``: 0 / 255;
* floating point: must be finite and in [0, 1] (the numpy/torch convention; a rounding slack of half an 8-bit
  step is clipped), scaled by 255.

Anything else (NaN or inf pixels, floats outside [0, 1] such as 0-255 floats, negative or > 255 integers) is
refused with an :class:`InvalidImageError` rather than clipped into a silently different image. PIL ``F`` images
follow PIL's own [0, 255] convention (clipped) but must be finite too.

:func:`to_rgb_array` is the same conversion returning an ``(H, W, 3)`` uint8 array, with no copy for an input that
already is one (the training transform's hot path).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray
#: The types :func:`load_rgb` decodes, for ``isinstance`` (file objects aside): callers decode these, pass others on.
IMAGE_SOURCE_TYPES = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)

#: Default limit on decoded pixels (width * height) of an encoded image: 50 megapixels, i.e. a
#: 8660 x 5773 photo, well above any camera's face photo and far below a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000

#: Most encoded bytes of one image fetched from an http(s) URL or decoded from base64, and the download timeout.
MAX_URL_BYTES = 50 * 2**20
URL_TIMEOUT_S = 30.0
#: Longest base64 text accepted: the encoding of MAX_URL_BYTES bytes plus MIME line breaks (CRLF every 76 chars).
MAX_BASE64_CHARS = -(-MAX_URL_BYTES // 3) * 4 * 78 // 76 + 4
# Floats in [-_FLOAT_SLACK, 1 + _FLOAT_SLACK] round to a valid 8-bit value: accepted (and clipped).
_FLOAT_SLACK = 0.5 / 255

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
_WHITE = (255, 255, 255, 255)
_ORIENTATION = 0x0112  # the EXIF orientation tag


class InvalidImageError(ValueError):
    """The source is not a readable image: corrupt, truncated, not an image, or too large."""


def load_rgb(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, name: str | None = None) -> Image.Image:
    """Open ``source`` and return it as a fully loaded RGB image with EXIF orientation applied.

    Args:
        source: a file path (``str``/``PathLike``), an http(s) URL or base64 string, encoded bytes, a
            binary file object, a ``PIL.Image.Image`` or a numpy array (see the module docstring for the accepted
            shapes and dtypes).
        max_pixels: refuse encoded images with more than this many pixels (``width * height``)
            before decoding them; ``None`` disables the check (PIL's own hard limit of
            ``2 * Image.MAX_IMAGE_PIXELS`` still applies). Applies to URLs and base64 data too; in-memory
            images (PIL, numpy) are not checked.
        name: how error messages name the source (default: the path, or the kind and size of the input).

    Returns:
        A new ``PIL.Image.Image`` in mode ``"RGB"`` (the input is never modified).

    Raises:
        InvalidImageError: the bytes are not an image, the file is corrupt or truncated, the
            image exceeds ``max_pixels`` (a possible decompression bomb), its mode is unknown, or an
            array has an unsupported shape, dtype or values (NaN, out of range: see the module docstring).
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: ``max_pixels`` < 1.
        TypeError: an unsupported source type.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive number of pixels or None, got {max_pixels}")
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name)
    if isinstance(source, Image.Image):
        name = name or _describe(source)
        return _to_rgb(_exif_transpose(_loaded(source, name)), name)
    return _decode(source, max_pixels, name)


def _loaded(image: Image.Image, name: str) -> Image.Image:
    """``image`` with its pixels decoded: a lazily opened image (``Image.open``, a ``datasets`` row) decodes on
    first use, so a truncated file fails here, as one InvalidImageError naming it, not deep inside a caller."""
    try:
        image.load()
    except Exception as exc:  # PIL decoders raise OSError, SyntaxError, struct.error, ...
        raise InvalidImageError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from exc
    return image


def to_rgb_array(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, name: str | None = None) -> np.ndarray:
    """:func:`load_rgb` as an ``(H, W, 3)`` uint8 array: the same conversions, for array consumers (augmentations).

    An ``(H, W, 3)`` uint8 array is returned as it is (no copy, no check: the hot path of training on decoded
    crops); an RGB ``PIL`` image costs one copy (its EXIF orientation applied). The result may be read-only.
    """
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3 \
            and source.size:  # an empty array goes the checked way (refused)
        return source
    if isinstance(source, Image.Image) and source.mode == "RGB":
        return np.asarray(_exif_transpose(_loaded(source, name or _describe(source))))  # np.asarray copies PIL's buffer: the input stays untouched
    return np.asarray(load_rgb(source, max_pixels, name=name))


def _describe(source: object) -> str:
    """A short human-readable name of ``source`` for error messages."""
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        return text if len(text) <= 200 else f"<string of {len(text)} characters: {text[:40]}...>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        path = getattr(source, "filename", "")  # set by Image.open on a path (datasets rows too)
        return str(path) if path else f"<PIL image mode={source.mode} size={source.size}>"
    name = getattr(source, "name", None)  # open files know their path
    return str(name) if isinstance(name, (str, os.PathLike)) else f"<{type(source).__name__}>"


def _decode(source: ImageSource, max_pixels: int | None, name: str | None = None) -> Image.Image:
    """Decode an encoded source (path, bytes, file object) into a loaded RGB image."""
    name = name or _describe(source)
    if isinstance(source, str) and not os.path.isfile(source) and (encoded := _fetch(source, name)) is not None:
        stream: object = io.BytesIO(encoded)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {name}")
        stream = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        stream = source
    else:
        raise TypeError(
            f"cannot load an image from {type(source).__name__}; expected a path, bytes, a binary "
            "file object, a PIL image or a numpy array"
        )
    try:
        with warnings.catch_warnings():
            # We enforce our own max_pixels below; PIL's warning threshold (89 MP) would
            # otherwise print for images we accept and its error is converted by the except.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                pixels = image.width * image.height
                if max_pixels is not None and pixels > max_pixels:
                    raise InvalidImageError(
                        f"{name}: image of {image.width}x{image.height} = {pixels:,} pixels exceeds "
                        f"max_pixels={max_pixels:,} (possible decompression bomb); refusing to decode it"
                    )
                image.load()  # decode now, inside the try, so truncated data fails here
                image = _exif_transpose(image)
                return _to_rgb(image, name)
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{name}: refused as a possible decompression bomb ({exc})") from exc
    except Exception as exc:  # PIL decoders raise OSError, SyntaxError, struct.error, ...
        raise InvalidImageError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from exc


def _fetch(source: str, name: str) -> bytes | None:
    """The encoded bytes of an http(s) URL or a base64 string; None for anything else (a missing path)."""
    if source.startswith(("http://", "https://")):
        import urllib.request

        request = urllib.request.Request(source, headers={"User-Agent": "hf_facerec"})
        try:
            with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
                data = response.read(MAX_URL_BYTES + 1)
        except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
            raise InvalidImageError(f"{name}: cannot download the image ({exc})") from exc
        if len(data) > MAX_URL_BYTES:
            raise InvalidImageError(f"{name}: more than {MAX_URL_BYTES:,} bytes; refusing to download it")
        return data
    text = source.strip()
    if len(text) > MAX_BASE64_CHARS:  # refused before the decoded copy is allocated
        raise InvalidImageError(
            f"{name}: a string of {len(text):,} characters is not a path, and as base64 it would decode to more "
            f"than {MAX_URL_BYTES:,} bytes; refusing to decode it"
        )
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise InvalidImageError(f"{name}: only base64 data URIs are supported (data:image/...;base64,...)")
    elif len(text) < 64:  # too short for an image: a mistyped path, not base64
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        if source.startswith("data:"):
            raise InvalidImageError(f"{name}: invalid base64 data ({exc})") from exc
        return None


def _exif_transpose(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (the image itself when there is none); a broken EXIF block is ignored."""
    try:
        if image.getexif().get(_ORIENTATION, 1) == 1:
            return image  # nothing to turn: spare exif_transpose's full copy
        transposed = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not make an otherwise fine photo unreadable
        return image
    return image if transposed is None else transposed


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert a loaded PIL image of any mode to RGB, following the module's conversion table."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return _gray_or_rgb_from_uint8(np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InvalidImageError(f"{name}: float image with NaN or infinite pixels")
        return _gray_or_rgb_from_uint8(np.round(np.clip(values, 0, 255)).astype(np.uint8))
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InvalidImageError(f"{name}: cannot convert image mode {mode!r} to RGB ({exc})") from exc


def _gray_or_rgb_from_uint8(array: np.ndarray) -> Image.Image:
    """(H, W) or (H, W, 3) uint8 -> RGB image (grey replicated to three channels)."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array))


def _array_to_rgb(array: np.ndarray, name: str | None = None) -> Image.Image:
    """Numpy (H, W[, C]) image -> RGB PIL image; see the module docstring for dtypes and ranges."""
    name = name or f"<array shape={array.shape} dtype={array.dtype}>"
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidImageError(
            f"{name}: image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidImageError(f"{name}: image array is empty: shape {array.shape}")
    as_uint8 = _array_to_uint8(array, name)
    if as_uint8.ndim == 3 and as_uint8.shape[2] == 4:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(as_uint8)), name)
    return _gray_or_rgb_from_uint8(as_uint8)


def _array_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """The array's pixels as uint8 by the module docstring's dtype rules; InvalidImageError for bad values."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidImageError(
                f"{name}: {array.dtype} pixels must lie in 0-255, got {low}..{high} (cast 16-bit data to uint16)"
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidImageError(f"{name}: image array has NaN or infinite pixels")
        low, high = float(values.min()), float(values.max())
        if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
            raise InvalidImageError(
                f"{name}: float pixels must lie in [0, 1], got {low:g}..{high:g} (divide 0-255 floats by 255, "
                "or pass uint8)"
            )
        return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise InvalidImageError(
        f"{name}: unsupported image array dtype {array.dtype}; use uint8 (0-255), uint16 (0-65535), other integers "
        "in 0-255, bool, or float in [0, 1]"
    )
