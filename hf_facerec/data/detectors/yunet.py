"""YuNet face detector (ONNX, run by OpenCV's ``cv2.FaceDetectorYN``).

YuNet returns a box, a score in [0, 1] and five landmarks already in the ArcFace template
order (image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth
corner); checked on the sample photos in ``tests/data/test_detectors.py``.

The default ``score_threshold`` is 0.5, not OpenCV's 0.9: measured on the LFW pair images,
0.5 finds a face in all 7,701 of them while 0.9 misses 81 (and costs about 0.45 points of
verification accuracy). The price is occasional low-score false positives (scores 0.5-0.7) in
large photos; ``FaceAligner``'s policy or a higher threshold (0.8) handles them when counting
faces matters.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .base import Detection, FaceDetector

#: Environment variable naming a local YuNet ONNX file, used when no ``model_path`` is given.
YUNET_ENV_VAR = "HF_FACEREC_YUNET"
#: File name of the OpenCV model zoo release, used with ``repo_id`` when no filename is given.
DEFAULT_YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"


def _import_cv2():
    """Import OpenCV lazily with an actionable message (it belongs to the ``[align]`` extra)."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the YuNet detector needs OpenCV: pip install hf_facerec[align]") from exc
    return cv2


def resolve_yunet_path(
    model_path: str | os.PathLike | None = None,
    *,
    repo_id: str | None = None,
    filename: str = DEFAULT_YUNET_FILENAME,
    revision: str | None = None,
) -> Path:
    """Find the YuNet ONNX file: ``model_path``, else ``$HF_FACEREC_YUNET``, else the Hub.

    The Hub (``huggingface_hub.hf_hub_download(repo_id, filename, revision=revision)``) is only
    contacted when ``repo_id`` is given and no local path is.

    Raises:
        FileNotFoundError: the given or environment path does not exist.
        ValueError: no path, no environment variable and no ``repo_id``.
    """
    if model_path is None:
        model_path = os.environ.get(YUNET_ENV_VAR) or None
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model file not found: {path}")
        return path
    if repo_id is not None:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision))
    raise ValueError(
        "no YuNet model given: pass model_path=..., set the environment variable "
        f"{YUNET_ENV_VAR}, or pass repo_id=... (and filename=...) to download it from the Hub"
    )


class YuNetDetector(FaceDetector):
    """YuNet through ``cv2.FaceDetectorYN``.

    Args:
        model_path: a local ``.onnx`` file (see :func:`resolve_yunet_path` for the fallbacks).
        repo_id, filename, revision: where to download the file from the Hub when no local
            path is given.
        score_threshold: minimum score kept (0.5 by default; see the module docstring).
        nms_threshold: IoU above which overlapping boxes are suppressed.
        top_k: boxes kept before non-maximum suppression.
        max_side: images whose longer side exceeds this are downscaled (area interpolation)
            for detection and the coordinates scaled back; YuNet gains nothing from more
            pixels on large photos (scores are equal or higher at 1280, fewer false positives)
            and runs 5-7x faster. ``None`` detects at full resolution.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        repo_id: str | None = None,
        filename: str = DEFAULT_YUNET_FILENAME,
        revision: str | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int | None = 1280,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 pixels or None, got {max_side}")
        self.model_path = resolve_yunet_path(model_path, repo_id=repo_id, filename=filename, revision=revision)
        self.score_threshold = float(score_threshold)
        self.max_side = max_side
        cv2 = _import_cv2()
        # OpenCV 5 logs a warning on every network creation ("Targets are not supported by
        # the new graph engine"): silence it for the creation only, then restore the level.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), self.score_threshold, float(nms_threshold), int(top_k)
            )
        except cv2.error as exc:
            raise ValueError(f"OpenCV could not load {self.model_path} as a YuNet model: {exc}") from exc
        finally:
            cv2.utils.logging.setLogLevel(previous)
        self._input_size: tuple[int, int] = (320, 320)
        # setInputSize + detect mutate the network: one caller at a time (e.g. a Space's threads)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"YuNetDetector(model_path={str(self.model_path)!r}, score_threshold={self.score_threshold})"

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        cv2 = _import_cv2()
        height, width = rgb.shape[:2]
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            # the exact per-axis factors after rounding, so coordinates map back precisely
            scale_xy = np.array([size[0] / width, size[1] / height])
        else:
            scale_xy = np.ones(2)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # OpenCV models expect BGR
        input_size = (bgr.shape[1], bgr.shape[0])
        with self._lock:
            if input_size != self._input_size:  # re-allocates the network: skip when unchanged
                self._net.setInputSize(input_size)
                self._input_size = input_size
            _, faces = self._net.detect(bgr)
        if faces is None or len(faces) == 0:
            return []
        return [_row_to_detection(row, scale_xy) for row in np.asarray(faces, dtype=np.float64)]


def _row_to_detection(row: np.ndarray, scale_xy: np.ndarray) -> Detection:
    """One YuNet output row (15,) = x, y, w, h, 5 x (x, y) landmarks, score -> Detection.

    ``scale_xy`` (2,) is the (x, y) factor the image was resized by before detection.
    """
    x, y, w, h = row[:4]
    box = np.array([x, y, x + w, y + h]) / np.tile(scale_xy, 2)
    landmarks = row[4:14].reshape(5, 2) / scale_xy
    return Detection(box=box, score=float(np.clip(row[14], 0.0, 1.0)), landmarks=landmarks)
