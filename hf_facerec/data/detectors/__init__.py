"""Face detectors returning boxes, scores and five landmarks in the ArcFace template order.

Backends (``build_detector(name)``): ``"yunet"`` (OpenCV ``FaceDetectorYN``, ONNX) and
``"dlib"`` (HOG + 68-point shape predictor). Each is imported only when built, so its optional
dependency (``pip install hf_facerec[align]``) is needed only by its users.
"""

from __future__ import annotations

from hf_facerec.data.detectors.base import (
    LANDMARK_NAMES,
    Detection,
    FaceDetector,
    available_detectors,
    build_detector,
)

__all__ = ["LANDMARK_NAMES", "Detection", "FaceDetector", "available_detectors", "build_detector"]
