"""Training augmentations for aligned face crops (numpy + PIL only, no torchvision).

Every augmentation is a small callable ``aug(image, rng=None) -> np.ndarray``: it takes an
(H, W, 3) uint8 RGB array (anything else ``load_rgb`` reads is converted by its rules first: one decode
path for training and inference) and returns an (H, W, 3) uint8 array of the same size. It fires with probability ``p`` and draws all its randomness from
``rng`` (a ``np.random.Generator``) when one is passed, else from its own generator seeded by
``seed``. Crops and erasing stay small on purpose: the inputs are aligned crops, and the landmarks
must stay near the template.

:func:`make_train_transform` turns an image processor (+ augmentation) into the batch transform
``Dataset.set_transform`` expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

from .images import to_rgb_array

__all__ = [
    "Augmentation",
    "ColorJitter",
    "Compose",
    "RandomBlur",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomLowResolution",
    "RandomResizedCropSmall",
    "TrainTransform",
    "default_train_augmentation",
    "make_train_transform",
    "sample_generator",
]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L" conversion


def _to_rgb_array(image) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image, an array, a path or a datasets Image dict, by ``load_rgb``'s conversions."""
    if isinstance(image, dict):  # datasets.Image(decode=False): {"bytes": ..., "path": ...}
        path = image.get("path")
        if image.get("bytes") is not None:
            return to_rgb_array(image["bytes"], name=str(path) if path else None)
        image = path
    if isinstance(image, (str, os.PathLike, bytes, bytearray, np.ndarray, Image.Image)):
        return to_rgb_array(image)
    raise ValueError(f"expected a PIL image, an image array, a path or a datasets Image dict, got {type(image).__name__}")


def _range(
    name: str, value: float | tuple[float, float], centre: float | None = None, low: float = 0.0
) -> tuple[float, float]:
    """A (min, max) range from a pair, or from a jitter amount ``j`` as ``(centre - j, centre + j)``."""
    if centre is not None and np.isscalar(value):
        value = (centre - float(value), centre + float(value))
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a (min, max) pair, got {value!r}") from None
    if not (low <= lo <= hi) or not np.isfinite(hi):
        raise ValueError(f"{name} must satisfy {low} <= min <= max, got ({lo}, {hi})")
    return lo, hi


class Augmentation:
    """Base class: fires with probability ``p``; randomness from the ``rng`` passed, else its own."""

    def __init__(self, p: float = 1.0, seed: int | None = None) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)

    def __call__(self, image, rng: np.random.Generator | None = None) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W, 3) uint8 (a PIL image or grayscale array is converted first)."""
        rng = self._rng if rng is None else rng
        array = _to_rgb_array(image)
        if rng.random() >= self.p:  # always one draw, so the stream does not depend on p
            return array
        return self._apply(array, rng)

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomHorizontalFlip(Augmentation):
    """Mirror left-right (a mirrored face is the same identity)."""

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(p, seed)

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(image[:, ::-1])


class RandomResizedCropSmall(Augmentation):
    """Crop a random box of ``scale`` x the area and aspect ``ratio``, resized back to the input size."""

    def __init__(self, scale=(0.85, 1.0), ratio=(0.9, 1.1), p: float = 1.0, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.scale, self.ratio = _range("scale", scale), _range("ratio", ratio)
        if self.scale[1] > 1 or self.scale[0] <= 0 or self.ratio[0] <= 0:
            raise ValueError(f"scale must lie in (0, 1] and ratio be > 0, got {self.scale}, {self.ratio}")

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        area = rng.uniform(*self.scale)
        aspect = np.exp(rng.uniform(*np.log(self.ratio)))
        cw, ch = min(w, w * np.sqrt(area * aspect)), min(h, h * np.sqrt(area / aspect))
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        box = (x0, y0, x0 + cw, y0 + ch)
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR, box=box))


class ColorJitter(Augmentation):
    """Brightness, contrast and saturation factors, applied in random order (torchvision's blends).

    Each knob is a jitter ``j`` (factor uniform in [1 - j, 1 + j]) or an explicit (min, max) factor range.
    brightness: ``x * f``; contrast: blend with the mean gray level; saturation: blend with the per-pixel gray.
    """

    def __init__(self, brightness=0.2, contrast=0.2, saturation=0.2, p: float = 1.0, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.brightness = _range("brightness", brightness, centre=1.0)
        self.contrast = _range("contrast", contrast, centre=1.0)
        self.saturation = _range("saturation", saturation, centre=1.0)

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32)
        factors = [rng.uniform(*r) for r in (self.brightness, self.contrast, self.saturation)]
        for op in rng.permutation(3):
            f = np.float32(factors[op])
            if op == 0:
                x = x * f
            else:
                gray = x @ _LUMA  # (H, W)
                target = gray.mean() if op == 1 else gray[:, :, None]
                x = target + f * (x - target)
            np.clip(x, 0, 255, out=x)  # torchvision clips after every step too
        return (x + 0.5).astype(np.uint8)


class RandomBlur(Augmentation):
    """Gaussian blur with a standard deviation (PIL ``radius``) drawn from ``radius`` (pixels)."""

    def __init__(self, radius=(0.3, 1.5), p: float = 0.3, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.radius = _range("radius", radius)

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(rng.uniform(*self.radius))))


class RandomLowResolution(Augmentation):
    """Down-sample by a factor drawn from ``scale`` then back up: a low-resolution / far-away camera."""

    _DOWN = (Image.Resampling.BOX, Image.Resampling.BILINEAR, Image.Resampling.NEAREST)
    _UP = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.NEAREST)

    def __init__(self, scale=(0.25, 0.75), p: float = 0.2, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.scale = _range("scale", scale)
        if self.scale[0] <= 0 or self.scale[1] > 1:
            raise ValueError(f"scale must lie in (0, 1], got {self.scale}")

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        s = rng.uniform(*self.scale)
        small = (max(1, round(w * s)), max(1, round(h * s)))
        down, up = self._DOWN[rng.integers(len(self._DOWN))], self._UP[rng.integers(len(self._UP))]
        return np.asarray(Image.fromarray(image).resize(small, down).resize((w, h), up))


class RandomErasing(Augmentation):
    """Fill a random box of ``scale`` x the area and aspect ``ratio`` with noise or a constant ``value``."""

    def __init__(self, scale=(0.02, 0.15), ratio=(0.3, 3.3), value: str | int | Sequence[int] = "random",
                 p: float = 0.25, seed: int | None = None) -> None:
        super().__init__(p, seed)
        self.scale, self.ratio = _range("scale", scale), _range("ratio", ratio)
        if self.scale[1] > 1 or self.ratio[0] <= 0:
            raise ValueError(f"scale must lie in [0, 1] and ratio be > 0, got {self.scale}, {self.ratio}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"value must be 'random', an int or an RGB triple, got {value!r}")
        self.value = value

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        area = rng.uniform(*self.scale) * h * w
        aspect = np.exp(rng.uniform(*np.log(self.ratio)))
        eh, ew = min(h, round(np.sqrt(area * aspect))), min(w, round(np.sqrt(area / aspect)))
        y0, x0 = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        out = image.copy()
        if isinstance(self.value, str):
            out[y0 : y0 + eh, x0 : x0 + ew] = rng.integers(0, 256, (eh, ew, 3), dtype=np.uint8)
        else:
            out[y0 : y0 + eh, x0 : x0 + ew] = np.asarray(self.value, dtype=np.uint8)
        return out


class Compose(Augmentation):
    """Apply ``transforms`` in order, all drawing from one generator (the one passed, else its own)."""

    def __init__(self, transforms: Sequence[Callable], seed: int | None = None) -> None:
        super().__init__(1.0, seed)
        self.transforms = list(transforms)
        if not all(callable(t) for t in self.transforms):
            raise ValueError("Compose takes a sequence of callables")

    def __call__(self, image, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = self._rng if rng is None else rng
        out = _to_rgb_array(image)
        for t in self.transforms:
            out = t(out, rng) if isinstance(t, Augmentation) else _to_rgb_array(t(out))
        return out


def default_train_augmentation(strength: str = "light", seed: int | None = None) -> Compose:
    """The recipe for face-recognition training: ``"light"`` (flip, tiny crop, mild colour) or
    ``"medium"`` (+ stronger colour, blur, low resolution, erasing), for small or larger datasets."""
    if strength == "light":
        transforms = [RandomHorizontalFlip(0.5), RandomResizedCropSmall((0.9, 1.0), (0.95, 1.05), p=0.5),
                      ColorJitter(0.15, 0.15, 0.15, p=0.5)]
    elif strength == "medium":
        transforms = [RandomHorizontalFlip(0.5), RandomResizedCropSmall((0.8, 1.0), (0.9, 1.1), p=0.8),
                      ColorJitter(0.3, 0.3, 0.3, p=0.8), RandomBlur((0.3, 1.5), p=0.2),
                      RandomLowResolution((0.25, 0.75), p=0.2), RandomErasing(p=0.25)]
    else:
        raise ValueError(f"strength must be 'light' or 'medium', got {strength!r}")
    return Compose(transforms, seed=seed)


class _WorkerRng:
    """A generator per process *and* per torch seed, for batches that come without sample keys (a plain
    ``set_transform`` read): DataLoader workers (and every new epoch's workers, which get a fresh
    ``torch.initial_seed()``) draw different augmentations, reproducibly under ``torch.manual_seed`` /
    ``transformers.set_seed``. Its stream restarts with the process, so a resumed run draws other augmentations."""

    def __init__(self, seed: int) -> None:
        self.seed, self._key, self._rng = seed, None, None

    def get(self) -> np.random.Generator:
        key = (os.getpid(), torch.initial_seed())
        if key != self._key:
            self._key, self._rng = key, np.random.default_rng([self.seed, key[1]])
        return self._rng


def sample_generator(seed: int, key: Sequence[int]) -> np.random.Generator:
    """The generator of one sample's augmentation: a pure function of ``seed`` and the sample ``key`` (non-negative
    ints, e.g. ``(sampler seed, epoch, dataset index)``), so nothing needs saving for an exact resume."""
    try:
        return np.random.default_rng([int(seed), *(int(k) for k in key)])
    except (TypeError, ValueError):
        raise ValueError(f"a sample key must be a sequence of non-negative ints, got {key!r}") from None


class TrainTransform:
    """The batch transform of :func:`make_train_transform`: ``transform(batch)`` as ``set_transform`` calls it, or
    ``transform(batch, keys=...)`` with one key per row, each image then augmented by :func:`sample_generator`
    (``FaceRecTrainer`` passes ``(sampler seed, epoch, index)`` keys: exact resume, any number of workers/ranks)."""

    def __init__(self, image_processor: Callable, augmentation: Callable | None, image_column: str,
                 label_column: str | None, seed: int) -> None:
        if not callable(image_processor):
            raise ValueError(f"image_processor must be callable, got {type(image_processor).__name__}")
        if augmentation is not None and not callable(augmentation):
            raise ValueError(f"augmentation must be callable or None, got {type(augmentation).__name__}")
        self.image_processor, self.augmentation = image_processor, augmentation
        self.image_column, self.label_column, self.seed = image_column, label_column, int(seed)
        self._rng = _WorkerRng(self.seed)

    def __call__(self, batch: dict[str, list], keys: Sequence[Sequence[int]] | None = None) -> dict:
        image_column, label_column, augmentation = self.image_column, self.label_column, self.augmentation
        for column in (image_column, label_column):
            if column is not None and column not in batch:
                raise ValueError(f"column {column!r} not in the batch (columns: {sorted(batch)})")
        images = [_to_rgb_array(im) for im in batch[image_column]]
        if keys is not None and len(keys) != len(images):
            raise ValueError(f"{len(keys)} sample keys for a batch of {len(images)} images")
        if augmentation is not None:
            if isinstance(augmentation, Augmentation):
                generators = ([sample_generator(self.seed, key) for key in keys] if keys is not None
                              else [self._rng.get()] * len(images))
                images = [augmentation(im, g) for im, g in zip(images, generators)]
            else:  # a plain callable draws from its own randomness: keys cannot reach it
                images = [_to_rgb_array(augmentation(im)) for im in images]
        out = {"pixel_values": self.image_processor(images=images, return_tensors="pt")["pixel_values"]}
        if label_column is not None:
            out["labels"] = torch.as_tensor(np.asarray(batch[label_column]), dtype=torch.long)
        return out


def make_train_transform(
    image_processor: Callable,
    augmentation: Callable | None = None,
    image_column: str = "image",
    label_column: str | None = "label",
    seed: int = 0,
) -> TrainTransform:
    """A batch transform for ``Dataset.set_transform`` (use ``remove_unused_columns=False`` in Trainer); attach it
    with :func:`with_train_transform`, which also stops ``datasets`` decoding the images itself.

    The transform decodes ``batch[image_column]`` (PIL images, uint8 arrays or undecoded Image dicts),
    applies ``augmentation`` per image, runs ``image_processor(images=..., return_tensors="pt")`` and
    returns ``{"pixel_values": (B, 3, H, W) float tensor, "labels": (B,) int64 tensor}`` (no labels
    when ``label_column`` is None).

    Under ``FaceRecTrainer`` each image's augmentation is drawn from ``(seed, sampler seed, epoch, index)``
    (:class:`TrainTransform`), so a resumed run augments exactly as an uninterrupted one; read through a plain
    ``set_transform`` the images draw from a per-process stream instead.
    """
    return TrainTransform(image_processor, augmentation, image_column, label_column, seed)


def with_train_transform(dataset, transform: TrainTransform):
    """``dataset`` with ``transform`` attached, its image column decoded by the transform (``load_rgb``: its
    conversions, pixel limit and errors naming the file), not by ``datasets``.

    A decoding ``datasets.Image`` column is cast to ``Image(decode=False)`` first: ``datasets`` would otherwise
    decode every row before the transform sees it, and a truncated file or a decompression bomb would fail inside
    ``datasets`` without the file's name. A ``Dataset`` gets ``with_transform`` (lazy, per batch); an
    ``IterableDataset`` (streaming) gets a batched ``map`` that drops the raw columns.
    """
    import datasets

    column = transform.image_column
    feature = (dataset.features or {}).get(column)
    if isinstance(feature, datasets.Image) and feature.decode:
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(transform, batched=True, remove_columns=list(dataset.features or {}) or None)
    return dataset.with_transform(transform)
