"""Face detectors returning boxes, scores and five landmarks in the ArcFace template order.

Backends (``build_detector(name)``): ``"yunet"`` (OpenCV ``FaceDetectorYN``, ONNX) and
``"dlib"`` (HOG + 68-point shape predictor). Their optional dependencies (``pip install hf_facerec[align]``)
are imported only when a detector is built. :func:`resolve_detector` applies the package's one default
(:func:`default_detector_name`): YuNet when a YuNet file is given, else dlib, which works offline.
"""

from __future__ import annotations

import os

from .base import LANDMARK_NAMES, Detection, FaceDetector, available_detectors, build_detector
from .dlib_hog import DlibHogDetector
from .yunet import YUNET_ENV_VAR, YuNetDetector

__all__ = [
    "LANDMARK_NAMES", "Detection", "DlibHogDetector", "FaceDetector", "YuNetDetector", "available_detectors",
    "build_detector", "default_detector_name", "resolve_detector",
]

#: The ``detector_model`` keyword of each backend's constructor.
MODEL_ARGUMENT = {"yunet": "model_path", "dlib": "predictor_path"}


def default_detector_name(detector_model: str | os.PathLike | None = None) -> str:
    """The package's one default detector (the align command, FaceEmbedder, the pipelines).

    ``"yunet"`` when ``detector_model`` is a YuNet ``.onnx`` file or ``$HF_FACEREC_YUNET`` names one; otherwise
    ``"dlib"`` (HOG + the 68-point predictor of ``face-recognition-models``): it works offline with weights from
    PyPI, and on LFW its crops verify as well as YuNet's (98.77% vs 98.68%, see ``dlib_hog``).
    """
    if detector_model is not None:
        return "yunet" if os.fspath(detector_model).lower().endswith(".onnx") else "dlib"
    return "yunet" if os.environ.get(YUNET_ENV_VAR) else "dlib"


def resolve_detector(
    detector: FaceDetector | str = "auto", detector_model: str | os.PathLike | None = None, **kwargs
) -> FaceDetector:
    """A detector from an instance (returned as is), a backend name, or ``"auto"`` (:func:`default_detector_name`).

    ``detector_model`` is the backend's model file: the YuNet ``.onnx`` or the dlib ``.dat`` predictor.
    """
    if isinstance(detector, FaceDetector):
        return detector
    if not isinstance(detector, str):
        raise TypeError(f"detector must be a FaceDetector, a backend name or 'auto'; got {type(detector).__name__}")
    name = default_detector_name(detector_model) if detector == "auto" else detector
    if name in MODEL_ARGUMENT and detector_model is not None:
        kwargs[MODEL_ARGUMENT[name]] = detector_model
    return build_detector(name, **kwargs)
