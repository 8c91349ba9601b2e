"""A gallery of enrolled verifiers on disk, and identification as a sequence of verifications.

Layout of a gallery folder: ``index.json`` (format, f's layout, the face size, ``users``: user id -> file, and the
open-set ``threshold``) and ``verifiers/<slug>-<hash>.safetensors``, one :class:`~.verifiers.Verifier` file per
user. Adding or removing a user writes that user's file and the index only (each atomically); the others are
never touched. Identification runs every verifier on the probe (batched, :func:`~.verifiers.verifier_logits`), takes
the user whose verifier is most confident, and rejects the probe (open set) when that probability is below the
threshold calibrated at a FAR by :func:`~hf_facerec.evaluation.roc.threshold_at_far`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write, check_output_dir
from .target import TargetConfig
from .verifiers import UnknownUserError, Verifier, verifier_logits

__all__ = ["Gallery", "GalleryError", "calibrate_threshold"]

GALLERY_FORMAT = "hf_facerec.hypernet.gallery"
INDEX = "index.json"


class GalleryError(ValueError):
    """A gallery folder whose index is missing or unreadable, or a verifier that does not fit the gallery."""


def calibrate_threshold(scores, labels, far: float) -> float:
    """The reject threshold on verifier probabilities at `far`: genuine (label 1) and impostor (0) scores (N,) ->
    the package's threshold-at-FAR (ValueError when `far` < 1 / #impostors: not measurable)."""
    from ..evaluation.roc import threshold_at_far

    return float(threshold_at_far(np.asarray(scores, dtype=np.float64), np.asarray(labels), far))


def _file_name(user_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", user_id).strip("._")[:40] or "user"
    return f"{slug}-{hashlib.sha1(user_id.encode('utf-8')).hexdigest()[:12]}.safetensors"


class Gallery:
    """The enrolled users of one folder (created on first `add` when ``create=True``).

    Args:
        folder: the gallery folder. create: make an empty gallery if there is none (needs `target` / `face_size`
            on the first add, taken from the first verifier).
    """

    def __init__(self, folder: str | os.PathLike, create: bool = False):
        self.folder = Path(folder)
        self._stacked: tuple[list[str], torch.Tensor] | None = None
        index = self.folder / INDEX
        if index.is_file():
            self.index = self._read_index(index)
        elif create:
            self.index = {"format": GALLERY_FORMAT, "version": 1, "target": None, "face_size": None, "users": {},
                          "threshold": None}
        else:
            raise FileNotFoundError(f"no gallery at {self.folder} (no {INDEX}); enrol a user first")

    @staticmethod
    def _read_index(path: Path) -> dict:
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GalleryError(f"{path}: unreadable gallery index: {error}") from error
        if not isinstance(index, dict) or index.get("format") != GALLERY_FORMAT or not isinstance(index.get("users"), dict):
            raise GalleryError(f"{path} is not a gallery index (format {GALLERY_FORMAT!r} with a users table)")
        return index

    # -- contents --------------------------------------------------------------------------------------------
    @property
    def users(self) -> list[str]:
        return list(self.index["users"])

    def __len__(self) -> int:
        return len(self.index["users"])

    def __contains__(self, user_id: str) -> bool:
        return user_id in self.index["users"]

    @property
    def target(self) -> TargetConfig | None:
        return None if self.index["target"] is None else TargetConfig(**self.index["target"])

    @property
    def face_size(self) -> tuple[int, int] | None:
        return None if self.index["face_size"] is None else tuple(self.index["face_size"])

    def path_of(self, user_id: str) -> Path:
        if user_id not in self.index["users"]:
            raise UnknownUserError(f"user {user_id!r} is not enrolled in the gallery {self.folder} "
                                   f"({len(self)} users)")
        return self.folder / self.index["users"][user_id]

    def __getitem__(self, user_id: str) -> Verifier:
        verifier = Verifier.load(self.path_of(user_id))
        self._check_fits(verifier, self.path_of(user_id))
        return verifier

    def _check_fits(self, verifier: Verifier, where) -> None:
        if self.index["target"] is not None and verifier.target.to_dict() != self.index["target"]:
            raise GalleryError(f"{where}: verifier layout {verifier.target.to_dict()} differs from the gallery's "
                               f"{self.index['target']}")
        if self.index["face_size"] is not None and list(verifier.face_size) != list(self.index["face_size"]):
            raise GalleryError(f"{where}: verifier face size {verifier.face_size} differs from the gallery's "
                               f"{tuple(self.index['face_size'])}")

    # -- changes ---------------------------------------------------------------------------------------------
    def _write_index(self) -> None:
        with atomic_write(self.folder / INDEX) as handle:
            json.dump(self.index, handle, indent=1, ensure_ascii=False)
        self._stacked = None

    def add(self, verifier: Verifier) -> Path:
        """Save (or replace) `verifier`'s user; only its file and the index are written."""
        self._check_fits(verifier, f"user {verifier.user_id!r}")
        check_output_dir(self.folder / "verifiers", "gallery folder")
        name = f"verifiers/{_file_name(verifier.user_id)}"
        verifier.save(self.folder / name)
        self.index["target"] = verifier.target.to_dict()
        self.index["face_size"] = list(verifier.face_size)
        self.index["users"][verifier.user_id] = name
        self._write_index()
        return self.folder / name

    def remove(self, user_id: str) -> None:
        """Delete one user's verifier (UnknownUserError if absent); the others are untouched."""
        path = self.path_of(user_id)
        del self.index["users"][user_id]
        self._write_index()
        path.unlink(missing_ok=True)

    @property
    def threshold(self) -> dict | None:
        """``{"value": p, "far": far, ...}``: the open-set reject threshold, or None."""
        return self.index.get("threshold")

    def set_threshold(self, value: float, far: float | None = None, **details) -> None:
        if not np.isfinite(value):
            raise ValueError(f"threshold must be finite, got {value}")
        self.index["threshold"] = {"value": float(value), "far": far, **details}
        self._write_index()

    # -- identification --------------------------------------------------------------------------------------
    def stacked(self) -> tuple[list[str], torch.Tensor]:
        """(user ids (U,), (U, P) weights) of every enrolled verifier, read once and cached until a change."""
        if self._stacked is None:
            if not len(self):
                raise GalleryError(f"the gallery {self.folder} has no users")
            users = self.users
            self._stacked = (users, torch.stack([self[user].weights for user in users]))
        return self._stacked

    def probabilities(self, pixel_values: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """(user ids (U,), (N, U) p(probe n is user u)) for f inputs (N, C, S, S)."""
        users, weights = self.stacked()
        return users, torch.sigmoid(verifier_logits(weights, self.target, pixel_values))

    def identify_pixels(self, pixel_values: torch.Tensor, threshold: float | None = None, top_k: int = 1) -> list[dict]:
        """One result per probe: ``{"user": best user or None (rejected), "probability", "candidates": [...]}``;
        `threshold` defaults to the gallery's calibrated one (none: closed set, never rejects)."""
        if threshold is None and self.threshold is not None:
            threshold = self.threshold["value"]
        users, probs = self.probabilities(pixel_values)
        k = min(top_k, len(users))
        values, order = probs.topk(k, dim=1)
        results = []
        for row_values, row_order in zip(values.tolist(), order.tolist()):
            best = row_values[0]
            accepted = threshold is None or best >= threshold
            results.append({"user": users[row_order[0]] if accepted else None, "probability": best,
                            "candidates": [{"user": users[j], "probability": p} for j, p in zip(row_order, row_values)]})
        return results

    def identify(self, images: Sequence, faces=None, threshold: float | None = None, top_k: int = 1) -> list[dict]:
        """Identify photos / crops (decoded, detected and aligned like enrolment; `faces` a FaceInput, default the
        package's default detector at the gallery's face size)."""
        from ..data.preprocess import FaceInput
        from .verifiers import _crop, _names, target_pixels

        if self.face_size is None:
            raise GalleryError(f"the gallery {self.folder} has no users")
        images = list(images)
        faces = faces or FaceInput(self.face_size)
        crops = [_crop(faces, image, name) for image, name in zip(images, _names(images))]
        return self.identify_pixels(target_pixels(crops, self.target), threshold, top_k)
