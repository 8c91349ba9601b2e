"""Templates, the Umeyama similarity transform, the warp and FaceAligner (no real data needed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from hf_facerec.data.align import (
    ARCFACE_TEMPLATE,
    TEMPLATES,
    AlignedFace,
    FaceAligner,
    NoFaceDetectedError,
    TEMPLATE_96x112,
    align_face,
    estimate_similarity_transform,
    get_template,
    select_face,
    warp_affine,
)
from hf_facerec.data.detectors.base import Detection, FaceDetector


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    theta = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return np.hstack([rotation, [[tx], [ty]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Independent reference: linear least squares on x' = a x - b y + tx, y' = b x + a y + ty."""
    rows_x = np.column_stack([src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))])
    rows_y = np.column_stack([src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))])
    (a, b, tx, ty), *_ = np.linalg.lstsq(
        np.vstack([rows_x, rows_y]), np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None
    )
    return np.array([[a, -b, tx], [b, a, ty]])


def _smooth_image(width: int, height: int, seed: int = 0) -> Image.Image:
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(4))


# --- templates -------------------------------------------------------------------------------


def test_template_constants_and_scaling_known_answers():
    assert TEMPLATES["arcface"].size == (112, 112) and TEMPLATES["96x112"].size == (96, 112)
    np.testing.assert_allclose(get_template("arcface"), ARCFACE_TEMPLATE)
    # the 96x112 template centred in 112 columns is exactly the ArcFace template (+8 px in x)
    np.testing.assert_allclose(get_template("96x112", (112, 112)), ARCFACE_TEMPLATE, atol=1e-12)
    np.testing.assert_allclose(get_template("arcface", 224), 2 * ARCFACE_TEMPLATE)
    # taller crop: same scale (min(112/112, 128/112) = 1), centred: +8 px in y
    np.testing.assert_allclose(get_template("arcface", (112, 128)), ARCFACE_TEMPLATE + [0, 8])
    np.testing.assert_allclose(get_template("96x112", (48, 56)), TEMPLATE_96x112 / 2)
    with pytest.raises(ValueError):
        ARCFACE_TEMPLATE[0, 0] = 1.0  # read-only constant


def test_template_errors_and_arrays():
    custom = [[10.0, 10.0], [30.0, 10.0], [20.0, 30.0]]
    np.testing.assert_array_equal(get_template(custom, (40, 40)), custom)
    with pytest.raises(ValueError, match="unknown template"):
        get_template("sphereface")
    with pytest.raises(ValueError, match="shape"):
        get_template([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="output_size"):
        get_template("arcface", (112, 0))
    with pytest.raises(ValueError, match="output_size"):
        align_face(np.zeros((50, 50, 3), np.uint8), np.array(custom), template=custom)


# --- similarity transform --------------------------------------------------------------------


def test_identity_on_template():
    matrix = estimate_similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)


@pytest.mark.parametrize("angle,scale,tx,ty", [(30, 2.5, 100, -40), (-75, 0.4, 3, 7), (180, 1.0, 0, 0)])
def test_known_transform_is_recovered(angle, scale, tx, ty):
    forward = _similarity(angle, scale, tx, ty)
    landmarks = _apply(forward, ARCFACE_TEMPLATE)  # a face placed in an image by a known map
    matrix = estimate_similarity_transform(landmarks, ARCFACE_TEMPLATE)
    assert np.abs(_apply(matrix, landmarks) - ARCFACE_TEMPLATE).max() < 0.5
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(matrix, inverse, atol=1e-9)
    # noisy landmarks (1 px) still land within 0.5 px on average
    noisy = landmarks + np.random.default_rng(0).normal(0, 1.0, landmarks.shape) * scale
    residual = np.linalg.norm(
        _apply(estimate_similarity_transform(noisy, ARCFACE_TEMPLATE), noisy) - ARCFACE_TEMPLATE, axis=1
    )
    assert residual.mean() < 1.5


def test_matches_independent_least_squares_and_batches():
    rng = np.random.default_rng(3)
    src, dst = rng.normal(size=(6, 5, 2)) * 40, rng.normal(size=(6, 5, 2)) * 40
    batch = estimate_similarity_transform(src, dst)
    assert batch.shape == (6, 2, 3)
    for i in range(6):
        np.testing.assert_allclose(batch[i], _lstsq_similarity(src[i], dst[i]), atol=1e-9)
    np.testing.assert_allclose(
        estimate_similarity_transform(src, ARCFACE_TEMPLATE)[2], estimate_similarity_transform(src[2], ARCFACE_TEMPLATE)
    )


def test_reflection_is_never_returned():
    mirrored = ARCFACE_TEMPLATE.copy()
    mirrored[:, 0] = 111 - mirrored[:, 0]  # a horizontally flipped face: the best orthogonal map is a mirror
    matrix = estimate_similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0  # rotation + scale only
    np.testing.assert_allclose(matrix, _lstsq_similarity(mirrored, ARCFACE_TEMPLATE), atol=1e-9)
    # an exact 2-point case: mirror symmetric pair maps by a 180-degree turn, not a flip
    matrix = estimate_similarity_transform(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(matrix, [[-1, 0, 2], [0, -1, 0]], atol=1e-12)


def test_transform_errors():
    with pytest.raises(ValueError, match="shape"):
        estimate_similarity_transform(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same number"):
        estimate_similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        estimate_similarity_transform(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="identical"):
        estimate_similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match="finite"):
        estimate_similarity_transform(np.full((5, 2), np.nan), ARCFACE_TEMPLATE)


# --- warping ---------------------------------------------------------------------------------


def test_warped_face_realigns_to_the_original_crop():
    crop = _smooth_image(112, 112)
    forward = _similarity(25, 2.0, 150, 60)  # crop -> a bigger "photo"
    import cv2

    photo = cv2.warpAffine(np.asarray(crop), forward, (420, 400), flags=cv2.INTER_CUBIC)
    landmarks = _apply(forward, ARCFACE_TEMPLATE)
    realigned = np.asarray(align_face(photo, landmarks), dtype=np.float64)
    assert realigned.shape == (112, 112, 3)
    inner = (slice(4, -4), slice(4, -4))  # the crop's own border is interpolated against black
    assert np.abs(realigned[inner] - np.asarray(crop, np.float64)[inner]).mean() < 1.5


def _reference_bilinear(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]):
    """Independent numpy bilinear warp; returns (crop, mask of pixels whose 4 neighbours exist)."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    inside = (x0 >= 0) & (y0 >= 0) & (x0 < image.shape[1] - 1) & (y0 < image.shape[0] - 1)
    x0, y0 = np.clip(x0, 0, image.shape[1] - 2), np.clip(y0, 0, image.shape[0] - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    img = image.astype(np.float64)
    out = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
           + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)  # fmt: skip
    return out, inside


def test_cv2_and_pil_warps_match_a_reference_bilinear(monkeypatch):
    image = _smooth_image(180, 200, seed=1)
    matrix = np.array([[0.8, -0.2, 10.3], [0.2, 0.8, -5.7]])
    reference, inside = _reference_bilinear(np.asarray(image), matrix, (112, 112))
    with_cv2 = np.asarray(warp_affine(image, matrix, (112, 112)), np.float64)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails: the PIL fallback runs
    with_pil = np.asarray(warp_affine(image, matrix, (112, 112)), np.float64)
    for crop in (with_cv2, with_pil):
        # rounding only; a half-pixel convention error would show as >= 1.5 here
        assert np.abs(crop - reference)[inside].max() <= 1.0 + 1e-9
    with pytest.raises(ImportError, match=r"hf_facerec\[align\]"):
        warp_affine(image, matrix, (112, 112), border="replicate")


def test_border_modes_and_errors():
    image = np.full((20, 20, 3), 200, np.uint8)
    shifted = np.array([[1.0, 0.0, 10.0], [0.0, 1.0, 0.0]])  # image moved 10 px right: left strip is outside
    assert np.asarray(warp_affine(image, shifted, (20, 20)))[:, :9].max() == 0
    assert np.asarray(warp_affine(image, shifted, (20, 20), border="replicate")).min() == 200
    with pytest.raises(ValueError, match="border"):
        warp_affine(image, shifted, (20, 20), border="wrap")
    with pytest.raises(ValueError, match="matrix"):
        warp_affine(image, np.eye(3), (20, 20))
    with pytest.raises(ValueError, match="landmarks must have shape"):
        align_face(image, np.zeros((3, 2)))


# --- choosing a face and FaceAligner ---------------------------------------------------------


def _detection(x1, y1, size, score):
    landmarks = ARCFACE_TEMPLATE * (size / 112.0) + [x1, y1]
    return Detection(box=[x1, y1, x1 + size, y1 + size], score=score, landmarks=landmarks)


class _FixedDetector(FaceDetector):
    name = "fixed"

    def __init__(self, detections):
        self.detections = detections

    def _detect(self, rgb):
        return list(self.detections)


FACES = [_detection(0, 0, 120, 0.7), _detection(140, 140, 60, 0.99), _detection(300, 20, 80, 0.4)]


@pytest.mark.parametrize(
    "policy,min_score,expected,count",
    [("largest", 0.0, 0, 3), ("central", 0.0, 1, 3), ("highest_score", 0.0, 1, 3), ("largest", 0.8, 1, 1)],
)
def test_select_face_policies(policy, min_score, expected, count):
    chosen, num = select_face(FACES, (340, 340), policy, min_score)
    assert chosen is FACES[expected] and num == count


def test_select_face_errors():
    with pytest.raises(NoFaceDetectedError, match="no face"):
        select_face([], (10, 10))
    with pytest.raises(NoFaceDetectedError, match="none with score >= 0.995"):
        select_face(FACES, (10, 10), min_score=0.995)
    with pytest.raises(ValueError, match="policy"):
        select_face(FACES, (10, 10), policy="smallest")


def test_face_aligner_with_a_fixed_detector():
    photo = np.asarray(_smooth_image(400, 340))
    aligner = FaceAligner(_FixedDetector(FACES), template="96x112", policy="largest", min_score=0.5)
    crop = aligner(photo)
    assert isinstance(crop, Image.Image) and crop.size == (96, 112)
    result = aligner(photo, return_detection=True)
    assert isinstance(result, AlignedFace) and result.num_faces == 2 and result.detection is not None
    # the chosen face (box at 0,0 size 120) maps its landmarks onto the 96x112 template
    np.testing.assert_allclose(_apply(result.matrix, FACES[0].landmarks), TEMPLATE_96x112, atol=1e-9)
    faces = aligner.align_all(photo)
    assert [f.detection.score for f in faces] == [0.99, 0.7] and all(f.num_faces == 2 for f in faces)
    with pytest.raises(NoFaceDetectedError):
        FaceAligner(_FixedDetector([]))(photo)
    assert FaceAligner(_FixedDetector([])).align_all(photo) == []


def test_face_aligner_argument_errors():
    with pytest.raises(ValueError, match="policy"):
        FaceAligner(_FixedDetector([]), policy="biggest")
    with pytest.raises(ValueError, match="min_score"):
        FaceAligner(_FixedDetector([]), min_score=1.5)
    with pytest.raises(ValueError, match="5-point"):
        FaceAligner(_FixedDetector([]), template=[[0.0, 0.0], [1.0, 1.0]], output_size=(10, 10))
    with pytest.raises(ValueError, match="unknown face detector"):
        FaceAligner("mtcnn")


def test_detection_validation():
    with pytest.raises(ValueError, match="box"):
        Detection(box=[0, 0, 1], score=1.0, landmarks=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="x2 >= x1"):
        Detection(box=[5, 0, 1, 1], score=1.0, landmarks=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="landmarks"):
        Detection(box=[0, 0, 1, 1], score=1.0, landmarks=np.zeros((4, 2)))
    detection = _detection(10, 20, 50, 0.9)
    assert detection.area == 2500 and np.allclose(detection.center, [35, 45])
    np.testing.assert_allclose(detection.scaled(2).box, [20, 40, 120, 140])
    assert detection.to_dict()["score"] == 0.9
