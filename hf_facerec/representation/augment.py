"""Face-appropriate multi-crop views for self-supervised pre-training (PIL / numpy / torch; no torchvision).

Each image gives ``n_global`` global views (``global_size`` px, crops of ``global_scale`` x the area: the face stays
in) and ``n_local`` local views (``local_size`` px, ``local_scale``: eyes, mouth, half faces), each then flipped
left-right only (a vertically flipped face is not a face a camera sees), colour-jittered, made gray and blurred at
random. The pieces are :mod:`hf_facerec.data.augment`'s; :class:`MultiCropTransform` is a
:class:`~hf_facerec.data.augment.TrainTransform`, so under a Trainer with the package's exact-resume mixin each
image's views are a pure function of (seed, sampler seed, epoch, index) and a resumed run sees the same views.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..data.augment import (_LUMA, Augmentation, ColorJitter, Compose, RandomBlur, RandomHorizontalFlip,
                            RandomResizedCropSmall, TrainTransform, _to_rgb_array, sample_generator)
from ..models.image_processing_facerec import FACE_MEAN, FACE_STD

__all__ = ["MultiCropTransform", "RandomGrayscale", "view_augmentation"]


class RandomGrayscale(Augmentation):
    """Replace the colours by their luma (ITU-R 601), kept as 3 channels."""

    def __init__(self, p: float = 0.2, seed: int | None = None) -> None:
        super().__init__(p, seed)

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gray = (image.astype(np.float32) @ _LUMA + 0.5).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)


def view_augmentation(scale: tuple[float, float], blur_p: float = 0.5) -> Compose:
    """One view's recipe: face-keeping crop of ``scale`` x the area, h-flip, colour jitter, grayscale, blur."""
    return Compose([RandomResizedCropSmall(scale, (3 / 4, 4 / 3), p=1.0), RandomHorizontalFlip(0.5),
                    ColorJitter(0.4, 0.4, 0.2, p=0.8), RandomGrayscale(0.2), RandomBlur((0.1, 2.0), p=blur_p)])


class MultiCropTransform(TrainTransform):
    """Batch transform (``Dataset.set_transform``): ``batch[image_column]`` -> multi-crop tensors.

    Returns ``{"global_crops": (B, n_global, 3, global_size, global_size), "local_crops": (B, n_local, 3,
    local_size, local_size)}`` (no ``local_crops`` when ``n_local`` is 0), normalised by ``mean`` / ``std``.
    """

    def __init__(self, global_size: int = 112, local_size: int = 48, n_global: int = 2, n_local: int = 4,
                 global_scale: Sequence[float] = (0.6, 1.0), local_scale: Sequence[float] = (0.2, 0.5),
                 image_column: str = "image", seed: int = 0, mean: Sequence[float] = FACE_MEAN,
                 std: Sequence[float] = FACE_STD) -> None:
        if n_global < 1 or n_local < 0 or global_size < 8 or local_size < 8:
            raise ValueError(f"multi-crop needs n_global >= 1, n_local >= 0 and sizes >= 8 px, got {n_global}, "
                             f"{n_local}, {global_size}, {local_size}")
        super().__init__(self._normalise, None, image_column, None, seed)
        self.global_size, self.local_size, self.n_global, self.n_local = global_size, local_size, n_global, n_local
        self.global_view, self.local_view = view_augmentation(tuple(global_scale)), view_augmentation(
            tuple(local_scale), blur_p=0.2)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def _normalise(self, views: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean) / self.std

    @staticmethod
    def _resized(image: np.ndarray, size: int) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))

    def views(self, image, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The (global, local) uint8 (S, S, 3) views of one image, all drawn from ``rng``."""
        image = _to_rgb_array(image)
        glob = [self._resized(self.global_view(image, rng), self.global_size) for _ in range(self.n_global)]
        loc = [self._resized(self.local_view(image, rng), self.local_size) for _ in range(self.n_local)]
        return glob, loc

    def __call__(self, batch: dict[str, list], keys: Sequence[Sequence[int]] | None = None) -> dict:
        if self.image_column not in batch:
            raise ValueError(f"column {self.image_column!r} not in the batch (columns: {sorted(batch)})")
        images = batch[self.image_column]
        if keys is not None and len(keys) != len(images):
            raise ValueError(f"{len(keys)} sample keys for a batch of {len(images)} images")
        rngs = [sample_generator(self.seed, key) for key in keys] if keys is not None else [self._rng.get()] * len(images)
        out = {"global_crops": [], "local_crops": []}
        for image, rng in zip(images, rngs):
            glob, loc = self.views(image, rng)
            out["global_crops"].append(self._normalise(glob))
            if loc:
                out["local_crops"].append(self._normalise(loc))
        return {name: torch.stack(value) for name, value in out.items() if value}
