"""Rasteriser of the synthetic faces (:mod:`.params`): identity parameters + per-image nuisances -> image.

Every face part is a polygon in the canonical 112x112 frame with a depth (0 = face outline, 1 = nose
tip). One vectorised point transform applies the pose to all of them at once (yaw/pitch as parallax by
depth, then an in-plane similarity), PIL fills the polygons at 2x and box-reduces (antialiasing), and
numpy adds lighting and noise. The landmarks go through the same transform, so they match the pixels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hf_facerec.data.synthetic.params import _CX as CX
from hf_facerec.data.synthetic.params import _DEFAULT_CONFIG, IdentityParams, SyntheticFaceConfig
_POSE_CENTRE = np.array([56.0, 66.0])  # in-plane rotation / scale pivot (between the eyes and the mouth)
_SS = 2  # supersampling factor
_YAW_PX, _PITCH_PX = 22.0, 18.0  # parallax (px) of a depth-1 point at yaw / pitch 1
_SCLERA, _PUPIL, _MOUTH = np.array([238.0, 236, 230]), np.array([12.0, 10, 10]), np.array([50.0, 20, 25])
_LANDMARK_DEPTH = np.array([0.4, 0.4, 1.0, 0.45, 0.45])  # eye points at the pupil's depth, so they stay on it


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates normalised to [-1, 1], each (size, size, 1) float32."""
    u = np.linspace(-1, 1, size, dtype=np.float32)
    return u[None, :, None], u[:, None, None]


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> np.ndarray:
    """(n, 2) points of an ellipse rotated by ``angle`` radians."""
    c, s = _unit_circle(n)
    x, y = rx * c, ry * s
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _superellipse(cx: float, cy: float, rx: float, ry: float, power: float, taper: float, n: int = 48) -> np.ndarray:
    """(n, 2) face outline: a superellipse whose lower half narrows by ``taper`` towards the chin."""
    c, s = _unit_circle(n)
    x = rx * np.sign(c) * np.abs(c) ** (2 / power)
    y = ry * np.sign(s) * np.abs(s) ** (2 / power)
    below = np.clip(y / ry, 0, 1)
    x = x * (1 - (1 - taper) * below**2)
    return np.stack([cx + x, cy + y], axis=1)


class _Expression(NamedTuple):
    """Per-image facial state (pixels of the 112 frame unless said otherwise)."""

    mouth_open: float
    smile: float  # how far the mouth corners rise
    openness: float  # eyelid opening, fraction of the identity's eye height
    brow_raise: float
    gaze: np.ndarray  # iris offset (x px, y fraction of the eye height)

    @classmethod
    def draw(cls, rng: np.random.Generator, e: float) -> _Expression:
        return cls(e * 4.0 * rng.random() ** 2, e * rng.uniform(-1.0, 2.0), 1 - e * 0.6 * rng.random() ** 3,
                   e * rng.uniform(-1.0, 2.0), e * rng.uniform(-1, 1, 2) * np.array([1.5, 0.6]))


def _band(xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """(2n, 2) polygon between two curves sampled at the same ``xs`` (brows, lips, moustache)."""
    return np.concatenate([np.stack([xs, top], 1), np.stack([xs, bottom], 1)[::-1]])


def _head(p: IdentityParams, face: np.ndarray, shirt: np.ndarray) -> list:
    """Back hair, neck, shirt, ears, face, fringe, beard and moles, back to front."""
    skin, hair = np.asarray(p.skin), np.asarray(p.hair_color)
    parts: list = []
    if p.hair_volume > 0:
        v = p.hair_volume
        back = _superellipse(CX, p.face_cy - 0.4 * v, p.face_rx + v, p.face_ry + 0.7 * v, 2.2, 1.0)
        back[:, 1] = np.minimum(back[:, 1], p.hair_length)  # flat cut at the hair length
        parts.append((back, -0.3, hair, None))
    w, top = 0.45 * p.face_rx, p.face_cy + 0.5 * p.face_ry
    parts.append((np.array([[CX - w, top], [CX + w, top], [CX + w, 140], [CX - w, 140]]), -0.4, skin * 0.85, None))
    shoulders = [[CX - 75, 140], [CX - 62, 106], [CX - w - 3, 104], [CX, 116], [CX + w + 3, 104], [CX + 62, 106],
                 [CX + 75, 140]]
    parts.append((np.array(shoulders), -0.5, shirt, None))
    for side in (-1, 1):
        parts.append((_ellipse(CX + side * 0.97 * p.face_rx, p.eye_y + 9, 5.0, 9.0, n=14), -0.2, skin * 0.9, None))
    parts.append((face, 0.0, skin, None))
    # Fringe / beard: the face outline clipped above the hairline / below the beard line.
    u = (face[:, 0] - CX - p.hair_part) / p.face_rx
    fringe = face.copy()
    fringe[:, 1] = np.minimum(fringe[:, 1], p.hairline + p.hairline_curve * u**2)
    parts.append((fringe, 0.05, hair, None))
    if p.beard > 0:
        beard = face.copy()
        beard[:, 1] = np.maximum(beard[:, 1], p.nose_y + 4 + 10 * (1 - ((face[:, 0] - CX) / p.face_rx) ** 2))
        parts.append((beard, 0.2, (1 - p.beard) * skin + p.beard * hair, None))
    parts += [(_ellipse(CX + mx, my, mr, mr, n=8), 0.3, skin * 0.45, None) for mx, my, mr in p.moles]
    return parts


def _eyes_and_brows(p: IdentityParams, ex: _Expression) -> list:
    hair = np.asarray(p.hair_color)
    parts: list = []
    for side in (-1, 1):
        cx, ry = CX + side * p.eye_dx, p.eye_ry * ex.openness
        parts.append((_ellipse(cx, p.eye_y, p.eye_rx, ry, side * -p.eye_tilt), 0.35, _SCLERA, (40, 30, 30)))
        r = 2 * p.eye_ry * p.iris_frac
        iris = (cx + ex.gaze[0], p.eye_y + ex.gaze[1] * ry)
        parts.append((_ellipse(*iris, r, min(r, ry), n=14), 0.4, np.asarray(p.eye_color), None))
        parts.append((_ellipse(*iris, 0.45 * r, min(0.45 * r, ry), n=10), 0.4, _PUPIL, None))
        length, u = p.brow_length * p.eye_rx, np.linspace(-1, 1, 9)
        mid = (p.eye_y - p.eye_ry - p.brow_gap - ex.brow_raise - p.brow_arch * (1 - u**2)
               + side * p.brow_tilt * length * u)
        half = 0.5 * p.brow_thickness * (1 - 0.4 * u**2)
        parts.append((_band(cx + side * 0.05 * p.eye_dx + length * u, mid - half, mid + half), 0.35, hair * 0.7, None))
    if p.glasses is not None:
        for side in (-1, 1):
            ring = _ellipse(CX + side * p.eye_dx, p.eye_y, p.eye_rx + 4, p.eye_ry + 4.5)
            parts.append((ring, 0.45, None, p.glasses))
        inner = p.eye_dx - p.eye_rx - 4
        parts.append((np.array([[CX - inner, p.eye_y - 1], [CX + inner, p.eye_y - 1]]), 0.5, None, p.glasses))
    return parts


def _nose_and_mouth(p: IdentityParams, ex: _Expression) -> tuple[list, float]:
    """Nose, moustache and mouth polygons, and the y of the (smiling) mouth corners."""
    skin, hair = np.asarray(p.skin), np.asarray(p.hair_color)
    top, base = p.eye_y + 3, p.nose_y + 1.5
    parts: list = [
        (np.array([[CX - 2, top], [CX + 2, top], [CX + p.nose_w, base], [CX - p.nose_w, base]]), 0.7, skin * 0.88,
         None),
        (_ellipse(CX, p.nose_y - 0.5, 0.55 * p.nose_w, 2.5, n=12), 1.0, np.minimum(skin * 1.05, 255), None),
    ]
    for side in (-1, 1):
        nostril = _ellipse(CX + side * 0.5 * p.nose_w, p.nose_y + 1.8, p.nostril, 0.6 * p.nostril, n=8)
        parts.append((nostril, 0.85, skin * 0.45, None))
    # Lips: corners at mouth_dx, risen by the smile; u runs corner to corner, arc is 0 there and 1 mid-mouth.
    u = np.linspace(-1, 1, 9)
    arc = np.sqrt(1 - u**2)
    xs, corner_y = CX + p.mouth_dx * u, p.mouth_y - ex.smile
    mid = corner_y + ex.smile * arc**2
    upper, lower = p.lip_upper + 0.5 * ex.mouth_open, p.lip_lower + 0.5 * ex.mouth_open
    if p.moustache:  # a band along the top of the upper lip, thickest in the middle
        bottom = mid - upper * arc - 0.8
        band = _band(1.05 * (xs - CX) + CX, bottom - 1.0 - 2.5 * arc, bottom)
        parts.append((band, 0.5, 0.2 * skin + 0.8 * hair, None))
    parts.append((_band(xs, mid - upper * arc, mid + lower * arc), 0.45, np.asarray(p.lip_color), None))
    if ex.mouth_open > 1.0:
        gap = 0.5 * ex.mouth_open * arc**2
        parts.append((_band(xs, mid - gap, mid + gap)[1:-1], 0.45, _MOUTH, None))
    return parts, corner_y


def _face_parts(p: IdentityParams, rng: np.random.Generator, e: float) -> tuple[list, np.ndarray]:
    """Polygons of one face in the canonical frame and its 5 landmarks, with expression strength ``e``.

    Returns ``(parts, landmarks)``: parts is a list of ``(points (n, 2), depth, fill, outline)`` in
    drawing order (fill/outline: RGB or None); landmarks is (5, 2).
    """
    ex = _Expression.draw(rng, e)
    shirt = rng.uniform(10, 245, 3)
    face = _superellipse(CX, p.face_cy, p.face_rx, p.face_ry, p.face_squareness, p.chin_taper)
    lower, corner_y = _nose_and_mouth(p, ex)
    parts = _head(p, face, shirt) + lower + _eyes_and_brows(p, ex)
    landmarks = np.array([[CX - p.eye_dx, p.eye_y], [CX + p.eye_dx, p.eye_y], [CX, p.nose_y],
                          [CX - p.mouth_dx, corner_y], [CX + p.mouth_dx, corner_y]])
    return parts, landmarks


def _pose(
    points: np.ndarray, depth: np.ndarray, yaw: float, pitch: float, angle: float, scale: float, shift: np.ndarray
) -> np.ndarray:
    """Posed (N, 2) points: parallax by depth (yaw, pitch), then rotation/scale about the pivot, then shift."""
    x = CX + (points[:, 0] - CX) * (1 - 0.3 * abs(yaw)) + yaw * _YAW_PX * depth
    y = points[:, 1] + pitch * _PITCH_PX * depth
    ca, sa = scale * np.cos(angle), scale * np.sin(angle)
    dx, dy = x - _POSE_CENTRE[0], y - _POSE_CENTRE[1]
    return np.stack([ca * dx - sa * dy, sa * dx + ca * dy], axis=1) + _POSE_CENTRE + shift


def _ink(colour) -> tuple[int, int, int] | None:
    """PIL fill colour from 3 floats (pure Python: faster than numpy for 3 numbers)."""
    return None if colour is None else tuple(min(255, max(0, int(c))) for c in colour)


def _draw_background(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size_ss: int, n_shapes: int) -> None:
    """Random ellipses and polygons anywhere in the frame (the face covers the middle later)."""
    for _ in range(n_shapes):
        c = rng.uniform(0, size_ss, 2)
        r = rng.uniform(0.05, 0.35, 2) * size_ss
        if rng.random() < 0.5:
            pts = _ellipse(c[0], c[1], r[0], r[1], rng.uniform(0, np.pi), n=16)
        else:
            pts = c + rng.uniform(-1, 1, (int(rng.integers(3, 6)), 2)) * r
        draw.polygon(pts.ravel().tolist(), fill=_ink(rng.uniform(0, 255, 3)))


def render(
    p: IdentityParams, rng: np.random.Generator, size: int, cfg: SyntheticFaceConfig
) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`hf_facerec.data.synthetic.render_identity_image`: ((size, size, 3) uint8, (5, 2) float32)."""
    k = p.nuisance_scale
    angle = np.deg2rad(cfg.max_rotation * k) * rng.uniform(-1, 1)
    yaw, pitch = cfg.max_yaw * k * rng.uniform(-1, 1), cfg.max_pitch * k * rng.uniform(-1, 1)
    scale = 1 + min(cfg.scale_jitter * k, 0.5) * rng.uniform(-1, 1)
    shift = cfg.max_shift * k * rng.uniform(-1, 1, 2)
    parts, landmarks = _face_parts(p, rng, cfg.expression * k)

    size_ss = size * _SS
    im = Image.new("RGB", (size_ss, size_ss), _ink(rng.uniform(20, 235, 3)))
    draw = ImageDraw.Draw(im)
    _draw_background(draw, rng, size_ss, int(rng.integers(0, round(cfg.max_clutter * k) + 1)))
    # One transform for every point of every part (and the landmarks, appended last).
    counts = [len(pts) for pts, *_ in parts]
    points = np.concatenate([pts for pts, *_ in parts] + [landmarks])
    depth = np.concatenate([np.repeat([d for _, d, *_ in parts], counts), _LANDMARK_DEPTH])
    posed = _pose(points, depth, yaw, pitch, angle, scale, shift) * (size / 112.0)
    # Pixel centres sit at integer coordinates; after the box reduce, output x maps to input SS*x + (SS-1)/2.
    drawn = posed * _SS + (_SS - 1) / 2
    width = max(1, round(size_ss / 112))
    for (_, _, fill, outline), pts in zip(parts, np.split(drawn[: -len(landmarks)], np.cumsum(counts)[:-1])):
        draw.polygon(pts.ravel().tolist(), fill=_ink(fill), outline=_ink(outline), width=width)
    if rng.random() < min(cfg.occlusion_prob * k, 1.0):  # a hand, a microphone, a scarf ...
        c = rng.uniform(0.2, 0.8, 2) * size_ss
        r = rng.uniform(0.08, 0.22, 2) * size_ss
        draw.polygon((c + rng.uniform(-1, 1, (5, 2)) * r).ravel().tolist(), fill=_ink(rng.uniform(0, 255, 3)))
    im = im.reduce(_SS)
    if rng.random() < min(cfg.blur_prob * k, 1.0):
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * cfg.max_blur * k * size / 112))
    return _light(np.array(im, dtype=np.float32), rng, cfg, k), posed[-len(landmarks):].astype(np.float32)


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """2**20 standard normals drawn once: slicing at a random offset is 20x cheaper than fresh draws."""
    return np.random.default_rng(12345).standard_normal(1 << 20, dtype=np.float32)


def _light(img: np.ndarray, rng: np.random.Generator, cfg: SyntheticFaceConfig, k: float) -> np.ndarray:
    """Directional gradient, brightness, contrast, colour cast and gaussian noise on (H, W, 3) float32."""
    gx, gy = _grid(img.shape[0])
    theta = rng.uniform(0, 2 * np.pi)
    strength = cfg.lighting * k * rng.random()
    img *= 1 + strength * (np.cos(theta) * gx + np.sin(theta) * gy)  # (H, W, 1) broadcast over channels
    gain = (1 + cfg.brightness * k * rng.uniform(-1, 1)) * (1 + cfg.color_cast * k * rng.uniform(-1, 1, 3))
    img *= gain.astype(np.float32)  # brightness x per-channel colour cast
    contrast = 1 + cfg.contrast * k * rng.uniform(-1, 1)
    img = img * np.float32(contrast) + np.float32((1 - contrast) * img.mean())
    std = cfg.noise * k * rng.random()
    if std > 0:
        bank, n = _noise_bank(), img.size
        if n <= len(bank) // 2:
            start = int(rng.integers(0, len(bank) - n))
            noise = bank[start : start + n].reshape(img.shape)
        else:  # images above ~400x400
            noise = rng.standard_normal(img.shape, dtype=np.float32)
        img += noise * np.float32(std)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_identity_image(
    identity_params: IdentityParams,
    rng: np.random.Generator,
    image_size: int = 112,
    config: SyntheticFaceConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one image of an identity with fresh nuisances drawn from ``rng``.

    Returns ``(image, landmarks)``: image (image_size, image_size, 3) uint8 RGB; landmarks (5, 2)
    float32 pixel coordinates (x, y) in the image, in ArcFace order (left eye, right eye, nose tip,
    left mouth corner, right mouth corner), near ``align.ARCFACE_TEMPLATE * image_size / 112``.
    """
    if not isinstance(identity_params, IdentityParams):
        raise ValueError(
            f"identity_params must be an IdentityParams (see sample_identity), got {type(identity_params).__name__}"
        )
    if not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")
    return render(identity_params, rng, int(image_size), config or _DEFAULT_CONFIG)
