"""Procedural SYNTHETIC face identities: cartoon faces drawn from random numbers, not faces of anyone.

Every identity is a set of parameters (face shape, skin tone, eyes, brows, nose, mouth, hair, beard,
glasses, moles) drawn from a seeded RNG; every image of it is rendered with its own nuisances (pose,
expression, lighting, background clutter, occlusion, blur, noise). The five landmarks of the drawn
face land near the ArcFace 112x112 template, so images look like aligned crops, and they are returned
with the image. Nothing here is derived from a real photo or a real person.

Used by the tests that need face-like data and by the offline quickstart (train a small model on CPU,
then evaluate verification and bias). This module holds the parameters and their sampling;
:mod:`.render` draws them and :mod:`.datasets` builds ``datasets.Dataset`` objects from them. Import
everything from :mod:`hf_facerec.data.synthetic`.

Streams are keyed, not sequential: identity ``i`` of seed ``s`` is drawn from
``default_rng([s, 0, i])`` and its image ``j`` from ``default_rng([s, 1, i, j])``, so a dataset of 10
identities is a prefix of one of 100, and evaluation identities taken at an ``identity_offset`` never
coincide with training identities ``0..N-1``.
"""

from __future__ import annotations

import numbers
import zlib
from dataclasses import dataclass, field, fields

import numpy as np

from hf_facerec.data.align import ARCFACE_TEMPLATE

_CX = 56.0  # the face's vertical axis in the canonical 112 frame

__all__ = [
    "IdentityParams",
    "SyntheticFaceConfig",
    "identity_rng",
    "image_rng",
    "sample_identity",
]

# Skin tones from light to dark (RGB); a tone t in [0, 1] interpolates along this ramp.
_SKIN_RAMP = np.array(
    [[246, 218, 196], [226, 182, 148], [196, 146, 106], [150, 102, 70], [96, 64, 44], [64, 43, 32]], dtype=float
)
# black, dark brown, brown, blond, red, grey
_HAIR_PALETTE = np.array(
    [[30, 24, 20], [70, 48, 32], [120, 84, 50], [200, 168, 110], [150, 70, 35], [170, 170, 170]], dtype=float
)
# brown, dark brown, blue, green, grey
_EYE_PALETTE = np.array([[70, 45, 25], [40, 28, 20], [70, 110, 160], [80, 120, 80], [110, 110, 120]], dtype=float)
_IDENTITY_STREAM, _IMAGE_STREAM = 0, 1


@dataclass
class SyntheticFaceConfig:
    """Knobs of the synthetic face generator (amplitudes are in pixels of the 112x112 frame).

    Identity knobs: ``identity_variation`` scales the spread of the geometric identity parameters (lower
    makes identities look more alike, i.e. harder); ``group_skin_tone`` maps a group name to the centre of
    its skin-tone distribution in [0 (light), 1 (dark)] (a group not listed gets a fixed value derived from
    its name; :func:`make_synthetic_faces` spreads the given groups evenly); ``group_difficulty`` multiplies
    every per-image nuisance amplitude of a group's identities (1.0 = default, 2.0 = twice the pose,
    lighting, noise ... variation), the knob bias analyses can look for.

    Per-image knobs: ``max_rotation`` (degrees, in-plane), ``max_yaw`` / ``max_pitch`` (fraction of a
    quarter turn, drawn as horizontal / vertical parallax of the features), ``scale_jitter`` (relative),
    ``max_shift`` (px), ``expression`` (mouth opening, smile, blink, brow raise, gaze; 0 = neutral),
    ``lighting`` (strength of a directional brightness gradient), ``brightness`` / ``contrast``
    (relative jitter), ``color_cast`` (per-channel gain jitter), ``max_clutter`` (background shapes),
    ``occlusion_prob``, ``blur_prob`` / ``max_blur`` (gaussian radius, px) and ``noise`` (max gaussian
    noise std, in 0-255 units).
    """

    identity_variation: float = 1.0
    group_skin_tone: dict[str, float] = field(default_factory=dict)
    group_difficulty: dict[str, float] = field(default_factory=dict)
    max_rotation: float = 12.0
    max_yaw: float = 0.35
    max_pitch: float = 0.2
    scale_jitter: float = 0.07
    max_shift: float = 4.0
    expression: float = 1.0
    lighting: float = 0.45
    brightness: float = 0.25
    contrast: float = 0.3
    color_cast: float = 0.1
    max_clutter: int = 8
    occlusion_prob: float = 0.15
    blur_prob: float = 0.35
    max_blur: float = 1.3
    noise: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                if any(not isinstance(v, numbers.Real) or not v >= 0 for v in value.values()):
                    raise ValueError(f"SyntheticFaceConfig.{f.name} values must be numbers >= 0, got {value}")
            elif not np.isfinite(value) or value < 0:
                raise ValueError(f"SyntheticFaceConfig.{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("occlusion_prob", "blur_prob", "scale_jitter"):
            if getattr(self, name) > 1:
                raise ValueError(f"SyntheticFaceConfig.{name} must be <= 1, got {getattr(self, name)}")
        if any(t > 1 for t in self.group_skin_tone.values()):
            raise ValueError(f"group_skin_tone values must lie in [0, 1], got {self.group_skin_tone}")

    @classmethod
    def no_nuisance(cls, **overrides: float) -> SyntheticFaceConfig:
        """Canonical pose, neutral expression, no lighting/noise/blur/clutter/occlusion (only the plain
        background and shirt colours still change between images); ``overrides`` set single knobs."""
        identity_knobs = ("identity_variation", "group_skin_tone", "group_difficulty")
        zero = {f.name: 0 for f in fields(cls) if f.name not in identity_knobs}
        return cls(**{**zero, **overrides})

    def skin_tone_centre(self, group: str | None) -> float | None:
        """Centre of the skin-tone distribution of ``group`` (None: tones uniform over the ramp)."""
        if group is None:
            return None
        if group in self.group_skin_tone:
            return float(self.group_skin_tone[group])
        return (zlib.crc32(group.encode()) % 1000) / 999.0  # stable across runs, unlike hash()


_DEFAULT_CONFIG = SyntheticFaceConfig()


@dataclass(frozen=True)
class IdentityParams:
    """One synthetic identity. Lengths are pixels in the canonical 112x112 frame; colours are RGB floats."""

    group: str | None
    nuisance_scale: float
    face_rx: float
    face_ry: float
    face_cy: float
    face_squareness: float  # superellipse exponent: 2 = ellipse, larger = squarer jaw
    chin_taper: float  # 1 = no narrowing towards the chin
    skin: tuple[float, float, float]
    eye_dx: float  # half the distance between the eye centres
    eye_y: float
    eye_rx: float
    eye_ry: float
    eye_tilt: float  # radians
    iris_frac: float
    eye_color: tuple[float, float, float]
    brow_gap: float
    brow_thickness: float
    brow_arch: float
    brow_length: float
    brow_tilt: float
    nose_y: float
    nose_w: float
    nostril: float
    mouth_y: float
    mouth_dx: float
    lip_upper: float
    lip_lower: float
    lip_color: tuple[float, float, float]
    hair_color: tuple[float, float, float]
    hairline: float
    hairline_curve: float
    hair_part: float
    hair_volume: float
    hair_length: float  # y where the back hair ends
    beard: float  # 0 = none, else the density of the beard colour over the skin
    moustache: bool
    glasses: tuple[float, float, float] | None  # frame colour
    moles: tuple[tuple[float, float, float], ...]  # (x, y, radius)

    @property
    def landmarks(self) -> np.ndarray:
        """The canonical (un-posed, neutral) 5 landmarks, (5, 2) float32 in the 112 frame."""
        return np.array(
            [[_CX - self.eye_dx, self.eye_y], [_CX + self.eye_dx, self.eye_y], [_CX, self.nose_y],
             [_CX - self.mouth_dx, self.mouth_y], [_CX + self.mouth_dx, self.mouth_y]],
            dtype=np.float32,
        )


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    """The generator of identity ``identity`` of ``seed`` (independent of how many identities are made)."""
    return np.random.default_rng([seed, _IDENTITY_STREAM, identity])


def image_rng(seed: int, identity: int, image: int) -> np.random.Generator:
    """The generator of image ``image`` of identity ``identity`` of ``seed``."""
    return np.random.default_rng([seed, _IMAGE_STREAM, identity, image])


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in (1 - t) * np.asarray(a) + t * np.asarray(b))


def sample_identity(
    rng: np.random.Generator, group: str | None = None, config: SyntheticFaceConfig | None = None
) -> IdentityParams:
    """Draw one identity's parameters; the group shifts skin tone (and with it hair and eye colours).

    Geometry is centred on the ArcFace template (eyes, nose tip, mouth corners within a few pixels
    of it); ``config.identity_variation`` scales every geometric spread.
    """
    cfg = config or _DEFAULT_CONFIG
    v = cfg.identity_variation
    T = ARCFACE_TEMPLATE

    def jitter(centre: float, spread: float) -> float:
        return float(centre + v * rng.uniform(-spread, spread))

    centre = cfg.skin_tone_centre(group)
    tone = rng.uniform(0, 1) if centre is None else np.clip(centre + rng.normal(0, 0.09), 0, 1)
    pos = tone * (len(_SKIN_RAMP) - 1)
    lo = int(min(pos, len(_SKIN_RAMP) - 2))
    skin = (1 - (pos - lo)) * _SKIN_RAMP[lo] + (pos - lo) * _SKIN_RAMP[lo + 1]
    skin = skin * (1 + rng.uniform(-0.05, 0.05, 3))  # undertone
    # Darker skin tones come with darker hair and eyes more often: groups differ in more than one cue.
    hair_weights = np.array([1 + 3 * tone, 1 + tone, 1.2 - 0.6 * tone, 1.2 - tone, 0.5 - 0.4 * tone, 0.4])
    hair = _HAIR_PALETTE[rng.choice(len(_HAIR_PALETTE), p=hair_weights / hair_weights.sum())]
    hair = hair * rng.uniform(0.8, 1.15)
    eye_weights = np.array([1.5, 1 + 2 * tone, 1.2 - tone, 1 - 0.8 * tone, 0.6 - 0.4 * tone])
    eye = _EYE_PALETTE[rng.choice(len(_EYE_PALETTE), p=eye_weights / eye_weights.sum())] * rng.uniform(0.8, 1.2)
    eye_dx = jitter((T[1, 0] - T[0, 0]) / 2, 2.2)
    mouth_dx = jitter((T[4, 0] - T[3, 0]) / 2, 2.5)
    moles = tuple((float(rng.uniform(-25, 25)), float(rng.uniform(40, 100)), float(rng.uniform(0.8, 2.0)))
                  for _ in range(rng.integers(0, 4)))
    bald = rng.random() < 0.08
    return IdentityParams(
        group=group,
        nuisance_scale=float(cfg.group_difficulty.get(group, 1.0)) if group is not None else 1.0,
        face_rx=jitter(37.5, 4.0), face_ry=jitter(50.0, 4.0), face_cy=jitter(62.0, 2.0),
        face_squareness=jitter(2.4, 0.5), chin_taper=jitter(0.82, 0.1),
        skin=tuple(float(c) for c in np.clip(skin, 0, 255)),
        eye_dx=eye_dx, eye_y=jitter(float(T[:2, 1].mean()), 2.0),
        eye_rx=jitter(6.0, 1.3), eye_ry=jitter(3.0, 0.8), eye_tilt=jitter(0.0, 0.15),
        iris_frac=jitter(0.5, 0.1), eye_color=tuple(float(c) for c in np.clip(eye, 0, 255)),
        brow_gap=jitter(6.5, 1.8), brow_thickness=jitter(2.3, 1.0), brow_arch=jitter(1.5, 1.5),
        brow_length=jitter(1.25, 0.25), brow_tilt=jitter(0.0, 0.15),
        nose_y=jitter(float(T[2, 1]), 2.5), nose_w=jitter(6.0, 2.0), nostril=jitter(1.6, 0.6),
        mouth_y=jitter(float(T[3:, 1].mean()), 2.5), mouth_dx=mouth_dx,
        lip_upper=jitter(2.6, 1.2), lip_lower=jitter(3.2, 1.4),
        lip_color=_mix(skin, [170, 60, 60], float(rng.uniform(0.2, 0.5))),
        hair_color=tuple(float(c) for c in np.clip(hair, 0, 255)),
        hairline=float(rng.uniform(4, 10)) if bald else jitter(25.0, 7.0),
        hairline_curve=jitter(6.0, 6.0), hair_part=jitter(0.0, 12.0),
        hair_volume=0.0 if bald else float(rng.uniform(1, 12)), hair_length=float(rng.uniform(45, 125)),
        beard=float(rng.uniform(0.35, 0.9)) if rng.random() < 0.18 else 0.0,
        moustache=bool(rng.random() < 0.2),
        glasses=tuple(float(c) for c in rng.uniform(0, 120, 3)) if rng.random() < 0.12 else None,
        moles=moles,
    )
