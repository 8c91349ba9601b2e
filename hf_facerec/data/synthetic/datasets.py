"""`datasets.Dataset` builders over the SYNTHETIC faces of :mod:`.params` / :mod:`.render`.

``make_synthetic_faces`` gives an identity (classification) dataset; ``make_synthetic_pairs`` gives a
verification dataset with the project's pair schema, on identities disjoint from the training ones.
Both are re-exported by :mod:`hf_facerec.data.synthetic`.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetInfo, Features, Image, Value

from hf_facerec.data.synthetic.params import SyntheticFaceConfig, identity_rng, image_rng, sample_identity
from hf_facerec.data.synthetic.render import render_identity_image
from hf_facerec.evaluation.bias_groups import MIXED_GROUP
from hf_facerec.models.margins import check_int

__all__ = [
    "DEFAULT_EVAL_OFFSET",
    "MIXED_GROUP",
    "NO_GROUP",
    "PAIR_FEATURES",
    "assign_groups",
    "make_synthetic_faces",
    "make_synthetic_pairs",
    "render_synthetic_faces",
]

NO_GROUP = "all"  #: the ``group`` value of every row when no groups are asked for
DEFAULT_EVAL_OFFSET = 1_000_000  #: evaluation identities start here, far from training identities 0..N-1
_PAIR_STREAM = 2  # after the identity (0) and image (1) streams of synthetic.py
_GOLDEN = 0.6180339887498949  # the golden-ratio sequence frac(0.5 + i * g) is the most even 1-D sequence
_DESCRIPTION = (
    "SYNTHETIC faces drawn procedurally by hf_facerec.data.synthetic from random parameters; "
    "they are cartoons, not photographs and not faces of anyone."
)
PAIR_FEATURES = Features(
    {"image1": Image(), "image2": Image(), "is_same": Value("bool"), "fold": Value("int32"), "group": Value("string")}
)


def _encode_png(image: np.ndarray) -> bytes:
    """Minimal RGB8 PNG of an (H, W, 3) uint8 array, deflate level 0 (stored).

    The noisy images shrink only ~20% under deflate, which costs more than rendering them (~1 ms vs
    ~0.03 ms here), and PIL's encoder adds ~1 ms of overhead; a stored PNG is still a valid PNG.
    """
    h, w, _ = image.shape
    rows = np.zeros((h, 1 + 3 * w), dtype=np.uint8)  # first byte of each scanline: filter 0 (None)
    rows[:, 1:] = image.reshape(h, 3 * w)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB)
    data = zlib.compress(rows.tobytes(), 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _group_names(groups: Sequence[str] | Mapping[str, float] | None) -> list[str]:
    if groups is None:
        return []
    if isinstance(groups, str):
        raise ValueError(f"groups must be a sequence of names or a mapping name -> proportion, not {groups!r}")
    names = list(groups)
    if not names or any(not isinstance(g, str) or not g for g in names) or len(set(names)) != len(names):
        raise ValueError(f"groups must be distinct non-empty strings, got {names}")
    if NO_GROUP in names or MIXED_GROUP in names:
        raise ValueError(f"{NO_GROUP!r} and {MIXED_GROUP!r} are reserved group values")
    return names


def assign_groups(identities: np.ndarray, groups: Sequence[str] | Mapping[str, float] | None) -> np.ndarray:
    """Group of each global identity index, (N,) str array; depends on the index only (prefix-stable).

    A sequence of names is assigned round-robin (identity i -> groups[i % G]); a mapping name ->
    proportion follows the golden-ratio sequence, whose group counts stay within a few identities of
    the proportions for any N. None -> every identity is ``NO_GROUP``.
    """
    identities = np.asarray(identities, dtype=np.int64)
    names = _group_names(groups)
    if not names:
        return np.full(identities.shape, NO_GROUP, dtype=object)
    if not isinstance(groups, Mapping):
        return np.asarray(names, dtype=object)[identities % len(names)]
    weights = np.asarray([groups[g] for g in names], dtype=float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"group proportions must be >= 0 with a positive sum, got {dict(groups)}")
    u = np.modf(0.5 + identities * _GOLDEN)[0]
    bins = np.cumsum(weights) / weights.sum()
    return np.asarray(names, dtype=object)[np.minimum(np.searchsorted(bins, u, side="right"), len(names) - 1)]


def _resolve_config(config: SyntheticFaceConfig | None, groups) -> SyntheticFaceConfig:
    """Spread the given groups evenly over the skin-tone ramp unless the config already places them."""
    cfg = config or SyntheticFaceConfig()
    names = _group_names(groups)
    spread = {g: (k + 0.5) / len(names) for k, g in enumerate(names)}
    return dataclasses.replace(cfg, group_skin_tone={**spread, **cfg.group_skin_tone})


def _render_block(seed: int, config: SyntheticFaceConfig, image_size: int, groups, keys) -> list:
    """[(pixels (S, S, 3) uint8, landmarks (5, 2) float32)] of (global identity, image) ``keys``, in order."""
    identities: dict[int, object] = {}
    out = []
    for identity, image in keys:
        if identity not in identities:
            group = assign_groups(np.array([identity]), groups)[0]
            identities[identity] = sample_identity(
                identity_rng(seed, identity), None if group == NO_GROUP else group, config
            )
        out.append(render_identity_image(identities[identity], image_rng(seed, identity, image), image_size, config))
    return out


def _render_many(seed: int, config: SyntheticFaceConfig, image_size: int, groups, keys, num_workers: int) -> list:
    """``_render_block`` of ``keys`` split over ``num_workers`` processes; the same arrays for any worker count
    (every image draws from its own ``image_rng``)."""
    keys = [(int(i), int(j)) for i, j in keys]
    workers = min(check_int(num_workers, "num_workers", 1), max(1, len(keys) // 64))  # tiny sets: no pool start-up
    if workers == 1:
        return _render_block(seed, config, image_size, groups, keys)
    import multiprocessing as mp

    # fork shares the imported modules (no re-import per worker); spawn elsewhere (macOS, Windows) still works.
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    blocks = [list(block) for block in np.array_split(np.asarray(keys), 4 * workers) if len(block)]
    with context.Pool(workers) as pool:
        parts = pool.starmap(_render_block, [(seed, config, image_size, groups, block) for block in blocks])
    return [item for part in parts for item in part]


def render_synthetic_faces(
    num_identities: int = 100,
    images_per_identity: int = 10,
    image_size: int = 112,
    seed: int = 0,
    groups: Sequence[str] | Mapping[str, float] | None = None,
    config: SyntheticFaceConfig | None = None,
    identity_offset: int = 0,
    num_workers: int = 1,
) -> dict[str, np.ndarray]:
    """The pixels of :func:`make_synthetic_faces` as arrays, with no PNG round trip (N = identities x images).

    Returns ``{"images": (N, S, S, 3) uint8, "labels": (N,) int64 local identity, "groups": (N,) str,
    "landmarks": (N, 5, 2) float32}``, identity-major. ``num_workers`` processes render in parallel; the
    arrays are the same for any ``num_workers``.
    """
    n = check_int(num_identities, "num_identities", 1)
    m = check_int(images_per_identity, "images_per_identity", 1)
    check_int(image_size, "image_size", 32)
    seed, offset = check_int(seed, "seed", 0), check_int(identity_offset, "identity_offset", 0)
    ids = offset + np.arange(n)
    keys = [(i, j) for i in ids for j in range(m)]
    rendered = _render_many(seed, _resolve_config(config, groups), image_size, groups, keys, num_workers)
    return {
        "images": np.stack([pixels for pixels, _ in rendered]),
        "labels": np.repeat(np.arange(n), m),
        "groups": np.repeat(assign_groups(ids, groups), m),
        "landmarks": np.stack([landmarks for _, landmarks in rendered]),
    }


def make_synthetic_faces(
    num_identities: int = 100,
    images_per_identity: int = 10,
    image_size: int = 112,
    seed: int = 0,
    groups: Sequence[str] | Mapping[str, float] | None = None,
    config: SyntheticFaceConfig | None = None,
    identity_offset: int = 0,
    with_landmarks: bool = False,
    num_workers: int = 1,
) -> Dataset:
    """An identity dataset of SYNTHETIC faces, ``num_identities * images_per_identity`` rows.

    Features: ``image`` (Image, PNG bytes, image_size^2 RGB), ``label`` (ClassLabel with names
    ``synthetic_{global index:05d}``), ``group`` (string; ``"all"`` without groups) and, with
    ``with_landmarks``, ``landmarks`` ((5, 2) float32 pixel coordinates, ArcFace order). Rows are
    identity-major. Identities are the global indices ``identity_offset + 0..num_identities-1``.
    ``num_workers`` processes render in parallel (same rows for any count, see :func:`render_synthetic_faces`).
    """
    arrays = render_synthetic_faces(
        num_identities, images_per_identity, image_size, seed, groups, config, identity_offset, num_workers
    )
    ids = check_int(identity_offset, "identity_offset", 0) + np.arange(num_identities)
    columns = {
        "image": [{"bytes": _encode_png(pixels), "path": None} for pixels in arrays["images"]],
        "label": arrays["labels"].tolist(),
        "group": arrays["groups"].tolist(),
    }
    names = [f"synthetic_{i:05d}" for i in ids]
    features = {"image": Image(), "label": ClassLabel(names=names), "group": Value("string")}
    if with_landmarks:
        columns["landmarks"] = list(arrays["landmarks"])
        features["landmarks"] = Array2D(shape=(5, 2), dtype="float32")
    features = Features(features)
    return Dataset.from_dict(columns, features=features, info=DatasetInfo(description=_DESCRIPTION, features=features))


def _plan_pairs(
    rng: np.random.Generator,
    groups: np.ndarray,
    n_folds: int,
    pairs_per_fold: int,
    images_per_identity: int,
    same_group_fraction: float,
) -> dict[str, np.ndarray]:
    """Which (identity, image) pairs to draw; identities are local indices 0..N-1 with ``groups`` (N,).

    Folds own disjoint, contiguous blocks of identities (as in LFW's 10 folds). Each fold gets
    ``pairs_per_fold / 2`` genuine pairs (one identity, two distinct images) then as many impostor
    pairs; a fraction ``same_group_fraction`` of the impostors pair two identities of one group, the
    others an identity with any other identity of the fold. Returns arrays of length
    ``n_folds * pairs_per_fold``: id1, img1, id2, img2, is_same, fold.
    """
    half, m = pairs_per_fold // 2, images_per_identity
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("id1", "img1", "id2", "img2", "is_same", "fold")}
    for fold, block in enumerate(np.array_split(np.arange(len(groups)), n_folds)):
        genuine = rng.choice(block, half)
        first = rng.integers(0, m, half)
        a = rng.choice(block, half)  # impostor anchors
        # Partner: a uniform pick among the candidates (the fold, or the anchor's group in it) minus the anchor.
        b = np.empty(half, dtype=np.int64)
        want_same = rng.random(half) < same_group_fraction
        for g in np.unique(groups[block]):
            members = block[groups[block] == g]
            for mask, pool in ((want_same & (groups[a] == g), members), (~want_same & (groups[a] == g), block)):
                if len(pool) < 2:  # a lone member of its group in this fold: pair it with anyone
                    pool = block
                pos = np.searchsorted(pool, a[mask])
                pick = rng.integers(0, len(pool) - 1, mask.sum())
                b[mask] = pool[pick + (pick >= pos)]
        out["id1"] += [genuine, a]
        out["img1"] += [first, rng.integers(0, m, half)]
        out["id2"] += [genuine, b]
        out["img2"] += [(first + rng.integers(1, m, half)) % m, rng.integers(0, m, half)]
        out["is_same"] += [np.ones(half, bool), np.zeros(half, bool)]
        out["fold"] += [np.full(2 * half, fold, dtype=np.int32)]
    return {k: np.concatenate(v) for k, v in out.items()}


def make_synthetic_pairs(
    num_identities: int = 200,
    pairs_per_fold: int = 100,
    n_folds: int = 10,
    seed: int = 0,
    groups: Sequence[str] | Mapping[str, float] | None = None,
    config: SyntheticFaceConfig | None = None,
    identity_offset: int = DEFAULT_EVAL_OFFSET,
    images_per_identity: int = 10,
    image_size: int = 112,
    same_group_impostor_fraction: float = 0.5,
    num_workers: int = 1,
) -> Dataset:
    """A verification dataset of SYNTHETIC faces with the project's pair schema (``PAIR_FEATURES``).

    ``n_folds * pairs_per_fold`` rows: per fold half genuine then half impostor pairs, on identities
    ``identity_offset + 0..num_identities-1`` split into disjoint per-fold blocks; the default offset
    keeps them disjoint from ``make_synthetic_faces`` training identities of the same seed. Each
    identity has ``images_per_identity`` possible images (a pair's two genuine images differ).
    ``group``: the identity's group for genuine pairs; for impostors the shared group, or ``"mixed"``
    when the two identities belong to different groups (``"all"`` everywhere without groups).
    ``num_workers`` processes render the distinct images in parallel (the same rows for any count).
    """
    n = check_int(num_identities, "num_identities", 2)
    folds = check_int(n_folds, "n_folds", 1)
    per_fold = check_int(pairs_per_fold, "pairs_per_fold", 2)
    if per_fold % 2:
        raise ValueError(f"pairs_per_fold must be even (half genuine, half impostor), got {per_fold}")
    if n < 2 * folds:
        raise ValueError(f"num_identities ({n}) must be >= 2 * n_folds ({folds}): each fold needs 2 identities")
    m = check_int(images_per_identity, "images_per_identity", 2)
    check_int(image_size, "image_size", 32)
    seed, offset = check_int(seed, "seed", 0), check_int(identity_offset, "identity_offset", 0)
    if not 0.0 <= same_group_impostor_fraction <= 1.0:
        raise ValueError(f"same_group_impostor_fraction must lie in [0, 1], got {same_group_impostor_fraction}")
    ids = offset + np.arange(n)
    id_groups = assign_groups(ids, groups)
    plan_rng = np.random.default_rng([seed, _PAIR_STREAM, offset])
    plan = _plan_pairs(plan_rng, id_groups, folds, per_fold, m, same_group_impostor_fraction)
    first = list(zip(ids[plan["id1"]].tolist(), plan["img1"].tolist()))
    second = list(zip(ids[plan["id2"]].tolist(), plan["img2"].tolist()))
    unique = list(dict.fromkeys(first + second))  # each distinct image rendered and encoded once
    rendered = _render_many(seed, _resolve_config(config, groups), image_size, groups, unique, num_workers)
    png = {key: {"bytes": _encode_png(pixels), "path": None} for key, (pixels, _) in zip(unique, rendered)}
    g1, g2 = id_groups[plan["id1"]], id_groups[plan["id2"]]
    columns = {
        "image1": [png[key] for key in first],
        "image2": [png[key] for key in second],
        "is_same": plan["is_same"].tolist(),
        "fold": plan["fold"].tolist(),
        "group": np.where(g1 == g2, g1, MIXED_GROUP).tolist(),
    }
    info = DatasetInfo(description=_DESCRIPTION, features=PAIR_FEATURES.copy())
    return Dataset.from_dict(columns, features=PAIR_FEATURES, info=info)
