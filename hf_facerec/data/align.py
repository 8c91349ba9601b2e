"""5-point face alignment: a least-squares similarity transform onto a template, then a warp.

This is the one alignment routine of the project (training data, evaluation, the Space and
the pipeline all call :func:`align_face` or :class:`FaceAligner`).

Conventions:
    * points are ``(x, y)`` pixels, pixel centres at integer coordinates (OpenCV's convention);
    * sizes are ``(width, height)`` (PIL's convention), e.g. ``(96, 112)`` for the 96x112 template;
    * landmark order is the detectors' order: image-left eye, image-right eye, nose tip,
      image-left mouth corner, image-right mouth corner.
    * the area outside the source image is filled with black (``border="constant"``), as in
      insightface's ``norm_crop`` that ArcFace-family models were trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from .detectors import Detection, FaceDetector, resolve_detector
from .images import ImageSource, load_rgb, to_rgb_array


def _frozen(points: list[list[float]]) -> np.ndarray:
    array = np.array(points, dtype=np.float64)
    array.setflags(write=False)  # module constants: nobody may edit them in place
    return array


#: insightface's 5-point template for 112x112 (width x height) ArcFace crops.
ARCFACE_TEMPLATE = _frozen(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
#: The SphereFace/MobileFaceNet template for 96x112 (width x height) crops; ARCFACE_TEMPLATE is
#: this template shifted 8 px right (centred in 112 columns).
TEMPLATE_96x112 = _frozen(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]]
)


@dataclass(frozen=True)
class FaceTemplate:
    """Template landmarks ``points`` (N, 2) for a crop of ``size`` = (width, height) pixels."""

    points: np.ndarray
    size: tuple[int, int]


TEMPLATES: dict[str, FaceTemplate] = {
    "arcface": FaceTemplate(ARCFACE_TEMPLATE, (112, 112)),
    "96x112": FaceTemplate(TEMPLATE_96x112, (96, 112)),
}

TemplateLike = str | np.ndarray | list
SizeLike = int | tuple[int, int] | None
Policy = Literal["largest", "central", "highest_score"]
POLICIES = ("largest", "central", "highest_score")
_BORDERS = ("constant", "replicate", "reflect")


class NoFaceDetectedError(ValueError):
    """The detector found no face (above the minimum score) in the image."""


def _parse_size(output_size: SizeLike, default: tuple[int, int] | None = None) -> tuple[int, int]:
    """``int`` n -> (n, n); ``(w, h)`` -> validated tuple; ``None`` -> ``default``."""
    if output_size is None:
        if default is None:
            raise ValueError("output_size (width, height) is required for a template given as an array")
        return default
    size = (output_size, output_size) if isinstance(output_size, (int, np.integer)) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise ValueError(f"output_size must be a positive int or a (width, height) pair of ints, got {output_size!r}")
    return int(size[0]), int(size[1])


def get_template(template: TemplateLike = "arcface", output_size: SizeLike = None) -> np.ndarray:
    """Template points (N, 2) in the pixel coordinates of an ``output_size`` (width, height) crop.

    A named template (``"arcface"``, ``"96x112"``) is scaled uniformly by
    ``s = min(W / W0, H / H0)`` (the face keeps its shape) and centred in the crop: ``"arcface"``
    at (224, 224) is the 112 template times 2; ``"96x112"`` at (112, 112) is exactly
    ``ARCFACE_TEMPLATE``. A template given as an (N, 2) array is already in output pixels and
    is returned as a float64 copy whatever ``output_size`` is.
    """
    if isinstance(template, str):
        if template not in TEMPLATES:
            raise ValueError(
                f"unknown template {template!r}; choose one of {sorted(TEMPLATES)} or pass an (N, 2) array"
            )
        base = TEMPLATES[template]
        width, height = _parse_size(output_size, base.size)
        scale = min(width / base.size[0], height / base.size[1])
        offset = (np.array([width, height]) - scale * np.array(base.size)) / 2.0
        return base.points * scale + offset
    points = np.array(template, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 2 or not np.all(np.isfinite(points)):
        raise ValueError(f"a template array must be finite with shape (N >= 2, 2), got shape {points.shape}")
    return points


def face_template(face_size) -> tuple[str, tuple[int, int]]:
    """The template for a model input ``face_size`` (height, width): ``("96x112", (w, h))`` for the
    96:112 SphereFace/MobileFaceNet aspect, else ``("arcface", (w, h))``; the one rule every caller
    that aligns for a model uses (benchmarks, pipeline, Space, calibration)."""
    height, width = (int(v) for v in face_size)
    return ("96x112" if width * 112 == height * 96 else "arcface"), (width, height)


def template_size(template: TemplateLike, output_size: SizeLike = None) -> tuple[int, int]:
    """The crop size (width, height): ``output_size`` if given, else the named template's own."""
    default = TEMPLATES[template].size if isinstance(template, str) and template in TEMPLATES else None
    return _parse_size(output_size, default)


def estimate_similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) from ``src`` to ``dst``.

    Umeyama (1991): the proper rotation R, scale s > 0 and translation t minimising
    ``sum_i ||s R src_i + t - dst_i||^2``. When the best orthogonal map would be a reflection
    (e.g. ``src`` is a mirrored face) the reflection is excluded by flipping the sign of the
    smallest singular direction, so the result never mirrors the image.

    Args:
        src: (N, 2) or (B, N, 2) source points, N >= 2, not all identical.
        dst: (N, 2) or (B, N, 2) target points (broadcast against ``src``).

    Returns:
        (2, 3) or (B, 2, 3) float64 matrices ``[s R | t]`` mapping ``src`` to ``dst``
        (``cv2.warpAffine`` convention: ``dst = M[:, :2] @ src + M[:, 2]``).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim not in (2, 3) or src.shape[-1] != 2 or dst.ndim not in (2, 3) or dst.shape[-1] != 2:
        raise ValueError(f"src and dst must have shape (N, 2) or (B, N, 2); got {src.shape} and {dst.shape}")
    if src.shape[-2] != dst.shape[-2]:
        raise ValueError(f"src and dst must have the same number of points; got {src.shape[-2]} and {dst.shape[-2]}")
    if src.shape[-2] < 2:
        raise ValueError(f"a similarity transform needs at least 2 points, got {src.shape[-2]}")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("src and dst must be finite (no NaN or inf)")
    src, dst = np.broadcast_arrays(src, dst) if src.ndim == dst.ndim else _broadcast_batch(src, dst)
    n = src.shape[-2]
    src_mean = src.mean(axis=-2, keepdims=True)  # (..., 1, 2)
    dst_mean = dst.mean(axis=-2, keepdims=True)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum(axis=(-2, -1)) / n  # (...,)
    if np.any(src_var <= 1e-12):
        raise ValueError("src points are all identical: the similarity transform is undefined")
    covariance = np.swapaxes(dst_c, -1, -2) @ src_c / n  # (..., 2, 2)
    u, singular, vt = np.linalg.svd(covariance)
    # d = -1 where U V^T is a reflection: flip the last singular direction instead
    d = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    d = np.where(d == 0, 1.0, d)
    signs = np.stack([np.ones_like(d), d], axis=-1)  # (..., 2)
    rotation = (u * signs[..., None, :]) @ vt
    scale = (singular * signs).sum(axis=-1) / src_var  # (...,)
    linear = scale[..., None, None] * rotation
    translation = dst_mean[..., 0, :] - (linear @ src_mean[..., 0, :, None])[..., 0]
    return np.concatenate([linear, translation[..., None]], axis=-1)


def _broadcast_batch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast an (N, 2) set against a (B, N, 2) batch."""
    batch = src.shape[0] if src.ndim == 3 else dst.shape[0]
    return np.broadcast_to(src, (batch, *src.shape[-2:])), np.broadcast_to(dst, (batch, *dst.shape[-2:]))


def alignment_matrix(
    landmarks: np.ndarray, template: TemplateLike = "arcface", output_size: SizeLike = None
) -> np.ndarray:
    """(2, 3) matrix mapping image pixels to crop pixels: ``landmarks`` (N, 2) onto the template."""
    points = get_template(template, template_size(template, output_size))
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != points.shape:
        raise ValueError(f"landmarks must have shape {points.shape} to match the template, got {landmarks.shape}")
    return estimate_similarity_transform(landmarks, points)


def warp_affine(
    image: ImageSource, matrix: np.ndarray, output_size: tuple[int, int], border: str = "constant"
) -> Image.Image:
    """Warp ``image`` by the (2, 3) image->crop ``matrix`` into an ``output_size`` (width, height) crop.

    Bilinear interpolation. Uses ``cv2.warpAffine`` when OpenCV is installed and PIL's
    ``Image.transform(AFFINE)`` otherwise (same geometry; PIL supports ``border="constant"`` only).
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"matrix must be a finite (2, 3) array, got shape {matrix.shape}")
    width, height = _parse_size(output_size)
    rgb = to_rgb_array(image)  # load_rgb's conversions (EXIF too); an RGB uint8 array as it is
    try:
        import cv2
    except ImportError:
        return _warp_with_pil(Image.fromarray(rgb), matrix, (width, height), border)
    border_mode = {
        "constant": cv2.BORDER_CONSTANT,
        "replicate": cv2.BORDER_REPLICATE,
        "reflect": cv2.BORDER_REFLECT_101,
    }[border]
    crop = cv2.warpAffine(
        rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=border_mode, borderValue=(0, 0, 0)
    )
    return Image.fromarray(crop)


def _warp_with_pil(rgb: Image.Image, matrix: np.ndarray, size: tuple[int, int], border: str) -> Image.Image:
    """PIL fallback of :func:`warp_affine`. PIL wants the crop->image map in its own convention:
    it evaluates the map at pixel *corners* ``x + 0.5`` and samples at ``result - 0.5``, hence the
    half-pixel terms that make it agree with OpenCV's centre-at-integer convention."""
    if border != "constant":
        raise ImportError(f"border={border!r} needs OpenCV: pip install hf_facerec[align]")
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    linear, shift = inverse[:, :2], inverse[:, 2]
    shift = shift + 0.5 - linear @ np.array([0.5, 0.5])
    coefficients = (linear[0, 0], linear[0, 1], shift[0], linear[1, 0], linear[1, 1], shift[1])
    return rgb.transform(
        size, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)
    )


def align_face(
    image: ImageSource,
    landmarks: np.ndarray,
    template: TemplateLike = "arcface",
    output_size: SizeLike = None,
    border: str = "constant",
) -> Image.Image:
    """Crop and align one face: the similarity transform taking ``landmarks`` onto the template.

    Args:
        image: anything :func:`~hf_facerec.data.images.load_rgb` accepts.
        landmarks: (5, 2) ``(x, y)`` image points in template order (or (N, 2) for an (N, 2)
            template array).
        template: ``"arcface"`` (112x112), ``"96x112"``, or an (N, 2) array in crop pixels.
        output_size: crop ``(width, height)`` (or an int for a square); default: the named
            template's own size. Named templates are rescaled to it (see :func:`get_template`).
        border: ``"constant"`` (black, default), ``"replicate"`` or ``"reflect"``.

    Returns:
        The aligned RGB crop of ``output_size``.
    """
    size = template_size(template, output_size)
    return warp_affine(image, alignment_matrix(landmarks, template, size), size, border)


@dataclass(frozen=True)
class AlignedFace:
    """An aligned crop with its provenance.

    Attributes:
        image: the aligned RGB crop.
        detection: the detection it came from (image coordinates).
        num_faces: faces found in the image with score >= the aligner's ``min_score``.
        matrix: (2, 3) image->crop transform used for the warp.
    """

    image: Image.Image
    detection: Detection
    num_faces: int
    matrix: np.ndarray = field(repr=False)


def select_face(
    detections: list[Detection], image_size: tuple[int, int], policy: Policy = "largest", min_score: float = 0.0
) -> tuple[Detection, int]:
    """Pick one face: the ``"largest"`` box, the box centre nearest the image centre
    (``"central"``), or the ``"highest_score"``, among detections with ``score >= min_score``.

    Args:
        image_size: (width, height) of the image, for ``"central"``.

    Returns:
        (chosen detection, number of candidates over ``min_score``).

    Raises:
        NoFaceDetectedError: no detection reaches ``min_score``.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    candidates = [d for d in detections if d.score >= min_score]
    if not candidates:
        if detections:
            best = max(d.score for d in detections)
            raise NoFaceDetectedError(
                f"{len(detections)} face(s) found but none with score >= {min_score} (best {best:.3f})"
            )
        raise NoFaceDetectedError("no face detected")
    if policy == "largest":
        keys = [-d.area for d in candidates]
    elif policy == "central":
        centre = np.asarray(image_size, dtype=np.float64) / 2.0
        keys = [float(np.sum((d.center - centre) ** 2)) for d in candidates]
    else:
        keys = [-d.score for d in candidates]
    return candidates[int(np.argmin(keys))], len(candidates)


class FaceAligner:
    """Detector + policy + template: ``aligner(image) -> aligned PIL crop``.

    Args:
        detector: a :class:`FaceDetector`, a backend name, or ``"auto"`` (default: the package's one default,
            :func:`~hf_facerec.data.detectors.default_detector_name`: YuNet if ``$HF_FACEREC_YUNET`` is set, else dlib).
        template, output_size, border: as in :func:`align_face`.
        policy: which face to keep when several are found (see :func:`select_face`).
        min_score: detections below this score are ignored.
        detector_kwargs: constructor arguments when ``detector`` is a name.
    """

    def __init__(
        self,
        detector: FaceDetector | str = "auto",
        template: TemplateLike = "arcface",
        output_size: SizeLike = None,
        policy: Policy = "largest",
        min_score: float = 0.5,
        border: str = "constant",
        detector_kwargs: dict | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if border not in _BORDERS:
            raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
        self.output_size = template_size(template, output_size)
        self.template_points = get_template(template, self.output_size)
        if self.template_points.shape != (5, 2):
            raise ValueError(f"FaceAligner needs a 5-point template, got shape {self.template_points.shape}")
        self.detector = resolve_detector(detector, **(detector_kwargs or {}))
        self.policy, self.min_score, self.border = policy, float(min_score), border

    @classmethod
    def for_face_size(
        cls,
        face_size,
        detector: FaceDetector | str = "auto",
        detector_model: str | os.PathLike | None = None,
        policy: Policy = "largest",
        min_score: float = 0.5,
        **kwargs,
    ) -> "FaceAligner":
        """The aligner for a model whose input is ``face_size`` (height, width): the template of
        :func:`face_template`, at that size. ``detector_model`` is the YuNet ONNX file or the dlib
        predictor when ``detector`` is a name or ``"auto"`` (:func:`~hf_facerec.data.detectors.resolve_detector`)."""
        template, size = face_template(face_size)
        detector = resolve_detector(detector, detector_model, **dict(kwargs.pop("detector_kwargs", None) or {}))
        return cls(detector, template=template, output_size=size, policy=policy, min_score=min_score, **kwargs)

    def __repr__(self) -> str:
        return (
            f"FaceAligner({self.detector!r}, output_size={self.output_size}, policy={self.policy!r}, "
            f"min_score={self.min_score})"
        )

    def _crop(self, image: Image.Image, detection: Detection, num_faces: int) -> AlignedFace:
        matrix = estimate_similarity_transform(detection.landmarks, self.template_points)
        crop = warp_affine(image, matrix, self.output_size, self.border)
        return AlignedFace(image=crop, detection=detection, num_faces=num_faces, matrix=matrix)

    def __call__(self, image: ImageSource, return_detection: bool = False) -> Image.Image | AlignedFace:
        """Align the face chosen by the policy; an :class:`AlignedFace` if ``return_detection``.

        Raises:
            NoFaceDetectedError: no face with ``score >= min_score``.
            InvalidImageError: the image cannot be read.
        """
        rgb = load_rgb(image)
        detections = self.detector.detect(np.asarray(rgb))  # an RGB uint8 array skips re-conversion
        detection, num_faces = select_face(detections, rgb.size, self.policy, self.min_score)
        aligned = self._crop(rgb, detection, num_faces)
        return aligned if return_detection else aligned.image

    def align_all(self, image: ImageSource) -> list[AlignedFace]:
        """Every face with ``score >= min_score``, best score first (empty list when none)."""
        rgb = load_rgb(image)
        faces = [d for d in self.detector.detect(np.asarray(rgb)) if d.score >= self.min_score]
        return [self._crop(rgb, d, len(faces)) for d in faces]
