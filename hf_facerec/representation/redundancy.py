"""Dataset size, identity and redundancy analysis on embeddings, all through
:class:`~hf_facerec.evaluation.neighbors.NeighborIndex` (exact below ``exact_below`` vectors, FAISS IVF / HNSW
above: see that module for the switch size and why).

* :func:`dataset_statistics`: images, identities, images per identity.
* :func:`redundancy_report`: near-duplicate pairs above a cosine threshold, the fraction of images with such a
  neighbour, union-find duplicate clusters, the de-duplicated size (and, with identity labels, how many duplicate
  pairs cross identities: label noise or the same photo filed twice).
* :func:`deduplicated_subset`, :func:`size_controlled_subset`, :func:`redundancy_controlled_subset`: the subsets of
  the pre-training ablation (N distinct images; the same N made of groups of k+1 near-copies).
* :func:`embed_images` (a FaceRec or plain backbone folder, flip-sum embeddings) and :func:`thumbnail_embeddings`
  (model-free: centred gray thumbnails, flip-invariant) give the vectors.
"""

from __future__ import annotations

import numpy as np

from ..evaluation.neighbors import NeighborIndex, duplicate_clusters, near_duplicate_pairs

__all__ = ["dataset_statistics", "deduplicated_subset", "embed_images", "redundancy_controlled_subset",
           "redundancy_report", "size_controlled_subset", "thumbnail_embeddings"]


def dataset_statistics(n_images: int, labels=None) -> dict:
    """``images`` and, with (N,) identity ``labels``: ``identities``, images per identity (min / median / mean /
    max) and ``singleton_identities`` (one image: no genuine pair)."""
    out = {"images": int(n_images)}
    if labels is None:
        return out
    labels = np.asarray(labels)
    if len(labels) != n_images:
        raise ValueError(f"{len(labels)} labels for {n_images} images")
    _, counts = np.unique(labels, return_counts=True)
    out.update(identities=int(len(counts)), images_per_identity={
        "min": int(counts.min()), "median": float(np.median(counts)), "mean": float(counts.mean()),
        "max": int(counts.max())}, singleton_identities=int((counts == 1).sum()))
    return out


def redundancy_report(embeddings, threshold: float = 0.95, k: int = 10, labels=None, index: NeighborIndex | None = None,
                      **index_options) -> dict:
    """Near-duplicates of (N, D) ``embeddings`` at cosine >= ``threshold`` (``k`` neighbours searched each).

    Returns a JSON-able dict: ``images``, ``threshold``, ``method`` (the index used), ``duplicate_pairs``,
    ``images_with_duplicate`` and their ``near_duplicate_fraction``, ``clusters`` (of size > 1),
    ``largest_cluster``, ``deduplicated_images`` and ``redundancy`` (1 - deduplicated / images); with ``labels``
    also ``cross_identity_pairs``. The arrays: ``pairs`` (M, 2), ``scores`` (M,), ``cluster_of`` (N,).
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    index = index if index is not None else NeighborIndex(embeddings, **index_options)
    pairs, scores = near_duplicate_pairs(embeddings, threshold, k=k, index=index)
    clusters = duplicate_clusters(len(embeddings), pairs)
    _, sizes = np.unique(clusters, return_counts=True)
    n = len(embeddings)
    with_dup = np.zeros(n, bool)
    with_dup[pairs.ravel()] = True
    report = {"images": n, "threshold": float(threshold), "method": index.method, "k": int(k),
              "duplicate_pairs": int(len(pairs)), "images_with_duplicate": int(with_dup.sum()),
              "near_duplicate_fraction": float(with_dup.mean()), "clusters": int((sizes > 1).sum()),
              "largest_cluster": int(sizes.max()), "deduplicated_images": int(len(sizes)),
              "redundancy": float(1 - len(sizes) / n), "pairs": pairs, "scores": scores, "cluster_of": clusters}
    if labels is not None:
        labels = np.asarray(labels)
        report["cross_identity_pairs"] = int((labels[pairs[:, 0]] != labels[pairs[:, 1]]).sum()) if len(pairs) else 0
    return report


def deduplicated_subset(cluster_of) -> np.ndarray:
    """One image per duplicate cluster (its smallest index): sorted indices."""
    return np.unique(np.asarray(cluster_of, dtype=np.int64))


def size_controlled_subset(candidates, size: int, seed: int = 0) -> np.ndarray:
    """``size`` indices drawn (seeded, without replacement) from ``candidates`` (e.g. the de-duplicated set)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if not 0 < size <= len(candidates):
        raise ValueError(f"subset size must be in [1, {len(candidates)}], got {size}")
    return np.sort(np.random.default_rng(seed).choice(candidates, size, replace=False))


def redundancy_controlled_subset(cluster_of, size: int, copies: int, seed: int = 0) -> np.ndarray:
    """``size`` images made of groups of ``copies + 1`` members of one duplicate cluster each (``copies`` = 0: all
    distinct), clusters drawn at random: the same N as :func:`size_controlled_subset` with k near-copies each."""
    cluster_of = np.asarray(cluster_of, dtype=np.int64)
    group = copies + 1
    if copies < 0 or size < group or size % group:
        raise ValueError(f"size ({size}) must be a positive multiple of copies + 1 ({group})")
    rng = np.random.default_rng(seed)
    ids, counts = np.unique(cluster_of, return_counts=True)
    eligible = ids[counts >= group]
    if len(eligible) < size // group:
        raise ValueError(f"{size // group} clusters of >= {group} near-copies needed, the data has {len(eligible)}")
    chosen = rng.choice(eligible, size // group, replace=False)
    members = [rng.choice(np.flatnonzero(cluster_of == c), group, replace=False) for c in chosen]
    return np.sort(np.concatenate(members))


def thumbnail_embeddings(images, size: int = 16) -> np.ndarray:
    """Model-free (N, size*size) vectors: gray thumbnails, made flip-invariant (image + mirror), mean-centred per
    image. Re-encodes, small crops and flips of one photo score near 1, different photos far lower."""
    from ..data.images import load_rgb

    out = np.empty((len(images), size * size), np.float32)
    for i, image in enumerate(images):
        gray = np.asarray(load_rgb(image).convert("L").resize((size, size), 4), np.float32)  # 4 = box
        gray = gray + gray[:, ::-1]
        out[i] = (gray - gray.mean()).ravel()
    out[np.linalg.norm(out, axis=1) == 0] = 1.0  # a flat image: any constant direction, never a zero row
    return out


def embed_images(model_path: str, images, batch_size: int = 64, flip: str = "sum", image_size: int = 112):
    """(N, D) unit embeddings of ``images`` (resized whole to the model's input: aligned crops expected) by a
    FaceRec model folder or a plain backbone folder (its pooled features), through :class:`~hf_facerec.FaceEmbedder`
    (flip-sum by default: a mirrored copy embeds as its original)."""
    from ..embedding import FaceEmbedder
    from .fewshot import Pretraining, load_encoder

    model = load_encoder(Pretraining("model", str(model_path)), image_size)
    h, w = model.config.face_size
    embedder = FaceEmbedder(model, batch_size=batch_size, flip=flip, detector=None,
                            preprocess=lambda image: image.resize((w, h), 2))
    return embedder(list(images))
