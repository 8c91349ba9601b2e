"""The detector interface every backend implements, and the ``Detection`` it returns.

Landmark order is fixed for all backends (the ArcFace template order), as seen in the image:
image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner.
("Image-left" is the subject's right.) Coordinates are pixels of the RGB image handed to
:meth:`FaceDetector.detect`, x to the right and y down, pixel centres at integers (OpenCV's
convention, which ``align_face`` also uses).
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field

import numpy as np

from ..images import ImageSource, to_rgb_array

#: Names of the five landmarks, in the order of ``Detection.landmarks``.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: (4,) float64, ``x1, y1, x2, y2`` in pixels (x2 > x1, y2 > y1).
        score: detection confidence in [0, 1] (backend-specific calibration; see each backend).
        landmarks: (5, 2) float64 ``(x, y)`` points in :data:`LANDMARK_NAMES` order.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float64).reshape(-1)
        landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise ValueError(f"Detection.box must be 4 finite numbers x1, y1, x2, y2; got {self.box!r}")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"Detection.box must have x2 >= x1 and y2 >= y1; got {box.tolist()}")
        if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
            raise ValueError(f"Detection.landmarks must be a finite (5, 2) array; got shape {landmarks.shape}")
        # frozen dataclass: assign the normalised arrays through object.__setattr__
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "landmarks", landmarks)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        """(2,) box centre ``(x, y)``."""
        return (self.box[:2] + self.box[2:]) / 2.0

    def scaled(self, factor: float) -> Detection:
        """The same detection with all coordinates multiplied by ``factor`` (after a resize)."""
        return Detection(self.box * factor, self.score, self.landmarks * factor)

    def to_dict(self) -> dict:
        """JSON-friendly form: ``{"box": [4], "score": float, "landmarks": [[x, y] * 5]}``."""
        return {"box": self.box.tolist(), "score": self.score, "landmarks": self.landmarks.tolist()}


class FaceDetector(abc.ABC):
    """Base class of face detectors: ``detect(image) -> list[Detection]``, best score first.

    Subclasses implement :meth:`_detect` on an RGB ``uint8`` array; the base class does the
    input conversion (anything :func:`~hf_facerec.data.images.load_rgb` accepts) and sorting.
    """

    #: Short name used by :func:`build_detector` and in reports.
    name: str = "base"

    def detect(self, image: ImageSource) -> list[Detection]:
        """Find the faces of ``image`` (PIL image, (H, W, 3) uint8 RGB array, path or bytes).

        Returns:
            Detections sorted by decreasing score (empty when no face is found).
        """
        detections = self._detect(_as_rgb_array(image))
        return sorted(detections, key=lambda d: d.score, reverse=True)

    __call__ = detect

    @abc.abstractmethod
    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in a C-contiguous (H, W, 3) uint8 RGB array."""


def _as_rgb_array(image: ImageSource) -> np.ndarray:
    """Any image source -> C-contiguous (H, W, 3) uint8 RGB array (arrays of that form pass through).

    PIL images go through ``load_rgb`` too, so their EXIF orientation is applied exactly as the
    aligner applies it and landmark coordinates match the image that gets warped.
    """
    return np.ascontiguousarray(to_rgb_array(image))


# name -> "module:Class" inside this package, imported only when asked so that each backend's optional dependency
# (OpenCV, dlib) is needed only by its own users; package-relative, so the flat remote-code copy resolves it too.
_BACKENDS: dict[str, str] = {
    "yunet": "yunet:YuNetDetector",
    "dlib": "dlib_hog:DlibHogDetector",
}


def available_detectors() -> list[str]:
    """Names accepted by :func:`build_detector` (``resolve_detector`` also takes ``"auto"``)."""
    return sorted(_BACKENDS)


def build_detector(name: str, **kwargs) -> FaceDetector:
    """Build a detector backend by name: ``"yunet"`` or ``"dlib"``; ``kwargs`` go to its constructor."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {['auto', *available_detectors()]}")
    module_name, class_name = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module_name}"), class_name)(**kwargs)
