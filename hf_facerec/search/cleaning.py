"""Data cleaning from a reference model's embeddings: the first decision group of the comprehensive search.

Four rules, applied in this order to (N, D) embeddings and (N,) identity labels:

1. ``duplicate``: near-duplicate images (cosine >= ``duplicate_threshold``, :mod:`..evaluation.neighbors`);
   one image of each duplicate cluster is kept (the first).
2. ``merge``: identities whose centers (mean unit embedding, renormalised) have cosine >= ``merge_threshold``
   are one person: their images get one label (the smallest).
3. ``noisy``: an image nearer another identity's center than its own leave-one-out center by ``noisy_margin``
   is a mislabelled image and is removed.
4. ``outlier``: per identity, images whose cosine to the (leave-one-out) center is below ``outlier_threshold``,
   or the lowest ``outlier_fraction`` of them, are removed.

A rule whose setting is None is off. Labels of the kept images are renumbered 0..K-1 in order of first label.

    result = clean_embeddings(embeddings, labels, CleaningConfig(merge_threshold=0.7, noisy_margin=0.0))
    cleaned, result = clean_dataset(dataset, CleaningConfig(...), embedder=FaceEmbedder(model))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..evaluation.neighbors import duplicate_clusters, near_duplicate_pairs
from ..models.margins import check_int

RULES = ("duplicate", "merge", "noisy", "outlier")


@dataclass
class CleaningConfig:
    """Settings of the four rules (None: the rule is off); see the module docstring."""

    duplicate_threshold: float | None = None
    merge_threshold: float | None = None
    noisy_margin: float | None = None
    outlier_threshold: float | None = None
    outlier_fraction: float | None = None
    min_images: int = 1  # identities left with fewer images are dropped (rule "small")
    neighbours: int = 10  # k of the near-duplicate search

    def __post_init__(self):
        for name in ("duplicate_threshold", "merge_threshold", "outlier_threshold"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a cosine in [-1, 1], got {value!r}")
        if self.noisy_margin is not None and not -2.0 <= float(self.noisy_margin) <= 2.0:
            raise ValueError(f"noisy_margin must be in [-2, 2], got {self.noisy_margin!r}")
        if self.outlier_fraction is not None and not 0.0 <= float(self.outlier_fraction) < 1.0:
            raise ValueError(f"outlier_fraction must be in [0, 1), got {self.outlier_fraction!r}")
        check_int(self.min_images, "min_images", 1)
        check_int(self.neighbours, "neighbours", 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CleaningResult:
    """What cleaning decided for each of N input images.

    ``keep`` (N,) bool; ``labels`` (N,) int64 new label of each kept image (-1 where removed); ``records``: one
    dict per removed or relabelled image (index, rule, old label, new label, score, detail).
    """

    keep: np.ndarray
    labels: np.ndarray
    records: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    num_identities_before: int = 0

    @property
    def counts(self) -> dict:
        """Images touched per rule, plus totals."""
        per_rule = {rule: 0 for rule in (*RULES, "small")}
        for record in self.records:
            per_rule[record["rule"]] += 1
        kept = self.labels[self.keep]
        return {**per_rule, "images_before": int(len(self.keep)), "images_after": int(self.keep.sum()),
                "identities_before": self.num_identities_before,
                "identities_after": int(len(np.unique(kept))) if len(kept) else 0}


def _unit(embeddings) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"embeddings must be a finite non-empty (N, D) array, got shape {getattr(x, 'shape', None)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("embeddings contain a zero vector")
    return x / norms


def _centers(x: np.ndarray, labels: np.ndarray, alive: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of unit embeddings (num, D) and image count (num,) per label, over ``alive`` images."""
    sums = np.zeros((num, x.shape[1]), np.float64)
    np.add.at(sums, labels[alive], x[alive])
    return sums, np.bincount(labels[alive], minlength=num)


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _own_similarity(x, labels, sums, counts, idx) -> np.ndarray:
    """Cosine of images ``idx`` to their own leave-one-out center (nan for an identity's only image)."""
    rest = sums[labels[idx]] - x[idx]
    sim = np.einsum("nd,nd->n", _normalise(rest), x[idx])
    return np.where(counts[labels[idx]] > 1, sim, np.nan)


def clean_embeddings(embeddings, labels, config: CleaningConfig | None = None) -> CleaningResult:
    """Apply the rules of ``config`` to ``embeddings`` (N, D) with identity ``labels`` (N,) ints >= 0."""
    config = config or CleaningConfig()
    x = _unit(embeddings)
    labels = np.asarray(labels)
    if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ValueError(f"labels must be ({len(x)},) non-negative integers, got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    num = int(labels.max()) + 1
    current = labels.copy()
    alive = np.ones(len(x), bool)
    records: list[dict] = []

    def remove(idx, rule, scores, detail):
        for i, score, text in zip(idx, scores, detail):
            alive[i] = False
            records.append({"index": int(i), "rule": rule, "label": int(labels[i]), "new_label": -1,
                            "score": round(float(score), 4), "detail": text})

    if config.duplicate_threshold is not None and len(x) > 1:
        pairs, _ = near_duplicate_pairs(x, config.duplicate_threshold, k=config.neighbours)
        cluster = duplicate_clusters(len(x), pairs)
        dup = np.flatnonzero(cluster != np.arange(len(x)))
        scores = np.einsum("nd,nd->n", x[dup], x[cluster[dup]])
        remove(dup, "duplicate", scores, [f"near-copy of image {c}" for c in cluster[dup]])

    if config.merge_threshold is not None:
        sums, counts = _centers(x, current, alive, num)
        present = np.flatnonzero(counts > 0)
        if len(present) > 1:
            centers = _normalise(sums[present]).astype(np.float32)
            pairs, _ = near_duplicate_pairs(centers, config.merge_threshold, k=min(config.neighbours, len(present) - 1))
            root = present[duplicate_clusters(len(present), pairs)]
            mapping = np.arange(num)
            mapping[present] = root
            for i in np.flatnonzero(alive & (mapping[current] != current)):
                score = float(centers[np.searchsorted(present, current[i])] @ centers[np.searchsorted(present, mapping[current[i]])])
                records.append({"index": int(i), "rule": "merge", "label": int(labels[i]),
                                "new_label": int(mapping[current[i]]), "score": round(score, 4),
                                "detail": f"identity {current[i]} merged into {mapping[current[i]]}"})
            current = mapping[current]

    if config.noisy_margin is not None:
        sums, counts = _centers(x, current, alive, num)
        idx = np.flatnonzero(alive)
        own = _own_similarity(x, current, sums, counts, idx)
        sims = x[idx] @ _normalise(sums).T.astype(np.float32)  # (n, num) cosine to every center
        sims[:, counts == 0] = -np.inf
        sims[np.arange(len(idx)), current[idx]] = -np.inf
        best = sims.argmax(axis=1)
        gap = sims[np.arange(len(idx)), best] - own
        bad = np.isfinite(gap) & (gap > config.noisy_margin)
        remove(idx[bad], "noisy", gap[bad], [f"nearer identity {b} than its own" for b in best[bad]])

    if config.outlier_threshold is not None or config.outlier_fraction is not None:
        sums, counts = _centers(x, current, alive, num)
        idx = np.flatnonzero(alive)
        own = _own_similarity(x, current, sums, counts, idx)
        bad = np.zeros(len(idx), bool)
        if config.outlier_threshold is not None:
            bad |= own < config.outlier_threshold
        if config.outlier_fraction:
            for label in np.unique(current[idx]):
                members = np.flatnonzero(current[idx] == label)
                drop = int(np.floor(config.outlier_fraction * len(members)))
                if drop and len(members) > 1:
                    bad[members[np.argsort(own[members], kind="stable")[:drop]]] = True
        remove(idx[bad], "outlier", own[bad], ["far from its identity's center"] * int(bad.sum()))

    counts = np.bincount(current[alive], minlength=num)
    small = np.flatnonzero(alive & (counts[current] < config.min_images))
    remove(small, "small", counts[current[small]], [f"identity left with < {config.min_images} images"] * len(small))

    new = np.full(len(x), -1, np.int64)
    _, first = np.unique(current[alive], return_index=True)
    order = current[alive][np.sort(first)]  # labels in order of first appearance
    lookup = np.full(num, -1, np.int64)
    lookup[order] = np.arange(len(order))
    new[alive] = lookup[current[alive]]
    for record in records:
        if record["rule"] == "merge" and alive[record["index"]]:
            record["new_label"] = int(new[record["index"]])
    return CleaningResult(alive, new, records, config.to_dict(), int(len(np.unique(labels))))


def clean_dataset(dataset, config: CleaningConfig | None = None, embeddings=None, embedder=None,
                  batch_size: int = 256):
    """Clean a ``datasets.Dataset`` with ``image`` and ``label`` columns.

    Args:
        embeddings: (N, D) precomputed reference embeddings, or ``embedder`` (a :class:`~hf_facerec.FaceEmbedder`)
            to compute them from the images.
    Returns:
        ``(cleaned dataset with renumbered labels, CleaningResult)``.
    """
    import datasets

    if (embeddings is None) == (embedder is None):
        raise ValueError("give exactly one of embeddings and embedder")
    if "label" not in dataset.column_names or "image" not in dataset.column_names:
        raise ValueError(f"dataset needs image and label columns, has {dataset.column_names}")
    if embeddings is None:
        embeddings = embed_dataset(dataset, embedder, batch_size)
    if len(embeddings) != len(dataset):
        raise ValueError(f"embeddings have {len(embeddings)} rows, the dataset {len(dataset)}")
    result = clean_embeddings(embeddings, np.asarray(dataset["label"]), config)
    kept = np.flatnonzero(result.keep)
    cleaned = dataset.select(kept).remove_columns("label")
    names = getattr(dataset.features["label"], "names", None)
    new_labels = result.labels[kept]
    label_names = None
    if names:  # the kept identity keeps the name of its first (merged-into) label
        label_names = [None] * (int(new_labels.max()) + 1 if len(new_labels) else 0)
        for old, new in zip(np.asarray(dataset["label"])[kept], new_labels):
            if label_names[new] is None:
                label_names[new] = names[old]
    feature = datasets.ClassLabel(names=label_names) if label_names else datasets.Value("int64")
    cleaned = cleaned.add_column("label", new_labels.tolist(), feature=feature)
    return cleaned, result


def embed_dataset(dataset, embedder, batch_size: int = 256) -> np.ndarray:
    """(N, D) embeddings of a dataset's ``image`` column by ``embedder`` (a FaceEmbedder), in row order."""
    import datasets
    from tqdm.auto import tqdm

    raw = dataset.cast_column("image", datasets.Image(decode=False))
    chunks = [embedder([_image_source(row) for row in raw[start:start + batch_size]["image"]], progress=False)
              for start in tqdm(range(0, len(raw), batch_size), desc="reference embeddings", unit="batch")]
    return np.concatenate(chunks)


def _image_source(value):
    """A datasets image cell (decode=False dict, path or bytes) as something load_rgb opens."""
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path")
    return value
