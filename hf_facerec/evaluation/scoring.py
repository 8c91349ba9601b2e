"""Embeddings -> similarity scores: the package's one score function (cosine) and IJB templates.

Pure numpy. Higher score = more similar; every embedding is L2-normalised before the dot
product, so scores lie in [-1, 1]. Re-exported by :mod:`~hf_facerec.evaluation.verification`.
"""

from __future__ import annotations

import numpy as np

from ._checks import _as_embeddings, _l2_normalize, _positive_int

__all__ = ["cosine_similarity", "pair_scores", "template_embeddings"]

# Pairs are scored in blocks so gathering (block, D) rows never needs more than ~64 MB
# (IJB-C has 15.6M pairs: gathering them at once would take ~64 GB at D=512).
_PAIR_BLOCK_BYTES = 64 * 2**20


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings.

    Args:
        a: (N, D) embeddings. b: (N, D) embeddings; row i of ``a`` is compared with row i of ``b``.
    Returns:
        (N,) scores in [-1, 1] (float32 for float32 inputs, else float64).
    """
    a = _as_embeddings(a, "a")
    b = _as_embeddings(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    return np.einsum("nd,nd->n", _l2_normalize(a, "a"), _l2_normalize(b, "b"))


def _as_index(index, name: str, n_rows: int) -> np.ndarray:
    arr = np.asarray(index)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_rows):
        raise ValueError(f"{name} has indices outside [0, {n_rows}) (embeddings has {n_rows} rows)")
    return arr


def pair_scores(embeddings, index1, index2, block_size: int | None = None) -> np.ndarray:
    """Cosine similarity of pairs of rows of one embedding table.

    Args:
        embeddings: (M, D), e.g. one row per image. index1, index2: (N,) integer row indices;
            pair i compares ``embeddings[index1[i]]`` with ``embeddings[index2[i]]``.
        block_size: pairs per block (default: ~64 MB of gathered rows).
    Returns:
        (N,) scores (float32 for float32 embeddings).
    """
    emb = _l2_normalize(_as_embeddings(embeddings, "embeddings"), "embeddings")
    i1 = _as_index(index1, "index1", emb.shape[0])
    i2 = _as_index(index2, "index2", emb.shape[0])
    if i1.shape != i2.shape:
        raise ValueError(f"index1 and index2 must have the same length, got {i1.size} and {i2.size}")
    if i1.size == 0:
        raise ValueError("index1 and index2 are empty: no pairs to score")
    if block_size is None:
        block_size = max(1, _PAIR_BLOCK_BYTES // (2 * emb.shape[1] * emb.itemsize))
    block_size = _positive_int(block_size, "block_size")
    out = np.empty(i1.size, dtype=emb.dtype)
    for start in range(0, i1.size, block_size):
        sl = slice(start, start + block_size)
        out[sl] = np.einsum("nd,nd->n", emb[i1[sl]], emb[i2[sl]])
    return out


def _group_means(x: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the rows of ``x`` (N, D) sharing a key (N,): (unique keys (K,), means (K, D))."""
    unique, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    sums = np.add.reduceat(x[order], starts, axis=0)
    counts = np.diff(np.r_[starts, order.size])
    return unique, sums / counts[:, None]


def template_embeddings(
    embeddings,
    template_ids,
    media_ids=None,
    flip_embeddings=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate image embeddings into one unit vector per template (IJB-B/C protocol).

    As in the insightface IJB evaluation (Whitelam et al. 2017; Maze et al. 2018 for the
    protocol): each image's embedding (plus its horizontally flipped twin when
    ``flip_embeddings`` is given) is L2-normalised; images of the same media (video/photo id)
    within a template are averaged so a 100-frame video counts like one photo; the media
    averages are averaged per template and the result is L2-normalised.

    Args:
        embeddings: (M, D) one row per image.
        template_ids: (M,) template of each image (any sortable ids).
        media_ids: (M,) media of each image, or None to treat every image as its own media.
        flip_embeddings: (M, D) embeddings of the flipped images, summed with ``embeddings``.
    Returns:
        ``(template_ids_unique (T,), templates (T, D))``, ids sorted, rows unit-norm.
    """
    emb = _as_embeddings(embeddings, "embeddings")
    if flip_embeddings is not None:
        flip = _as_embeddings(flip_embeddings, "flip_embeddings")
        if flip.shape != emb.shape:
            raise ValueError(f"flip_embeddings must have shape {emb.shape}, got {flip.shape}")
        emb = emb + flip
    emb = _l2_normalize(emb, "embeddings (+ flip_embeddings)")
    templates = np.asarray(template_ids)
    if templates.shape != (emb.shape[0],):
        raise ValueError(f"template_ids must have shape ({emb.shape[0]},), got {templates.shape}")
    if media_ids is None:
        media_codes = np.arange(emb.shape[0])
    else:
        media = np.asarray(media_ids)
        if media.shape != templates.shape:
            raise ValueError(f"media_ids must have shape {templates.shape}, got {media.shape}")
        media_codes = np.unique(media, return_inverse=True)[1].reshape(-1)
    template_codes = np.unique(templates, return_inverse=True)[1].reshape(-1)
    # One integer key per (template, media): a media id shared by two templates stays separate.
    media_keys, media_means = _group_means(emb, template_codes * (media_codes.max() + 1) + media_codes)
    _, template_means = _group_means(media_means, media_keys // (media_codes.max() + 1))
    return np.unique(templates), _l2_normalize(template_means, "templates").astype(emb.dtype, copy=False)
