"""Identity-balanced (P x K) batch sampling and class-balanced sample weights.

Margin losses learn from many identities per batch, pair/triplet losses need several images of each;
:class:`IdentityBalancedBatchSampler` gives both: every batch holds ``batch_size / images_per_identity``
distinct identities with ``images_per_identity`` images each. :func:`class_balanced_weights` is the
alternative for ``torch.utils.data.WeightedRandomSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["IdentityBalancedBatchSampler", "class_balanced_weights"]


def _encode_labels(labels: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) of any sortable type -> (identity index (N,) int64, images per identity (I,))."""
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {array.shape}")
    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    return inverse.astype(np.int64), counts


def class_balanced_weights(labels: Sequence | np.ndarray) -> np.ndarray:
    """Per-sample weights (N,) float64 proportional to 1 / (images of the sample's identity).

    Normalised to mean 1, i.e. ``N / (num_identities * count)`` (scikit-learn's "balanced"), so every
    identity carries the same total weight ``N / num_identities``. Pass to
    ``WeightedRandomSampler(weights, num_samples=len(labels))``.
    """
    inverse, counts = _encode_labels(labels)
    return len(inverse) / (len(counts) * counts[inverse].astype(np.float64))


class IdentityBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``P = batch_size / images_per_identity`` distinct identities x ``K = images_per_identity``.

    A batch is a list of ``batch_size`` dataset indices, identity-major: ``[id_a x K, id_b x K, ...]``.
    An epoch cuts each identity's shuffled images into ``max(1, round(n_i / K))`` chunks of K (cycling
    through them again, i.e. repeating images, when an identity has fewer than needed), spreads each
    identity's chunks evenly over the epoch and packs them into batches of distinct identities, so an
    epoch has about ``len(labels) / batch_size`` batches and sees every identity in proportion to its
    size. ``drop_last=False`` pads the last (and, when sharding, the last rank's) batches instead.

    The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` every epoch. With
    ``num_replicas > 1`` every rank builds the same global batch list and keeps every
    ``num_replicas``-th batch from ``rank``; ranks get the same number of batches, and (with
    ``drop_last``) never the same batch. Use as ``DataLoader(dataset, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        labels: Sequence | np.ndarray,
        batch_size: int,
        images_per_identity: int = 4,
        seed: int = 0,
        drop_last: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self._identity, self._counts = _encode_labels(labels)
        for name, value in (("batch_size", batch_size), ("images_per_identity", images_per_identity)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if batch_size % images_per_identity:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of images_per_identity ({images_per_identity})"
            )
        self.batch_size, self.images_per_identity = int(batch_size), int(images_per_identity)
        self.identities_per_batch = self.batch_size // self.images_per_identity
        if self.identities_per_batch > len(self._counts):
            raise ValueError(
                f"a batch needs {self.identities_per_batch} distinct identities, labels hold {len(self._counts)}"
            )
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        self.seed, self.drop_last = int(seed), bool(drop_last)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 0
        # Chunks per identity: rounding (not flooring) keeps a 5-image identity at 1 chunk of 4 and a 7-image one at 2.
        self._chunks = np.maximum(1, np.floor(self._counts / self.images_per_identity + 0.5)).astype(np.int64)
        n_chunks, p = int(self._chunks.sum()), self.identities_per_batch
        self._global_batches = n_chunks // p if self.drop_last else -(-n_chunks // p)
        if self.drop_last and self._global_batches < self.num_replicas:
            raise ValueError(f"{self._global_batches} batches per epoch cannot feed {self.num_replicas} replicas")
        per_rank = self._global_batches / self.num_replicas
        self._per_rank = int(per_rank) if self.drop_last else int(np.ceil(per_rank))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order (the same on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._per_rank

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_batches(self.epoch)
        take = np.arange(self._per_rank * self.num_replicas) % len(batches)  # wraps only when padding
        for row in batches[take[self.rank :: self.num_replicas]]:
            yield row.tolist()

    def _epoch_batches(self, epoch: int) -> np.ndarray:
        """The global batch list of an epoch, (num_batches, batch_size) int64 dataset indices."""
        rng = np.random.default_rng([self.seed, epoch])
        k, counts, chunks = self.images_per_identity, self._counts, self._chunks
        # Each identity's images in random order, identities one after the other.
        order = np.lexsort((rng.random(len(self._identity)), self._identity))
        starts = np.cumsum(counts) - counts
        owner = np.repeat(np.arange(len(counts)), chunks)  # identity of each chunk, (C,)
        rank_in_owner = np.arange(len(owner)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
        # Slot j of chunk r takes image (r * K + j) mod n of the identity's shuffled run.
        slots = (rank_in_owner[:, None] * k + np.arange(k)) % counts[owner][:, None]
        members = order[starts[owner][:, None] + slots]  # (C, K) dataset indices
        # Spread each identity's chunks evenly over the epoch: chunk r sorts at (r + phase) / n_chunks.
        phase = rng.random(len(counts))
        stream = np.argsort((rank_in_owner + phase[owner]) / chunks[owner], kind="stable")
        rows = self._pack(stream, owner, rng)
        return np.stack([
            np.concatenate([members[c] if c >= 0 else self._fresh_chunk(-c - 1, rng, order, starts) for c in row])
            for row in rows
        ])

    def _pack(self, stream: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        """Cut the chunk stream into batches of distinct identities, deferring a chunk whose identity is
        already in the batch to the next one. Slots left empty at the end hold ``-(identity + 1)``: a
        fresh chunk of an identity not yet in the batch (drawn at random)."""
        p, rows, pending, pos = self.identities_per_batch, [], [], 0
        for _ in range(self._global_batches):
            row, seen, kept = [], set(), []
            for c in pending:
                if len(row) < p and owner[c] not in seen:
                    row.append(c)
                    seen.add(owner[c])
                else:
                    kept.append(c)
            pending = kept
            while len(row) < p and pos < len(stream):
                c = int(stream[pos])
                pos += 1
                if owner[c] in seen:
                    pending.append(c)
                else:
                    row.append(c)
                    seen.add(owner[c])
            if len(row) < p:  # the stream ran out (padding, or deferred chunks of a few identities)
                free = np.setdiff1d(np.arange(len(self._counts)), np.fromiter(seen, dtype=np.int64, count=len(seen)))
                row += [-int(i) - 1 for i in rng.choice(free, p - len(row), replace=False)]
            rows.append(row)
        return rows

    def _fresh_chunk(
        self, identity: int, rng: np.random.Generator, order: np.ndarray, starts: np.ndarray
    ) -> np.ndarray:
        """K images of ``identity``, without replacement when it has that many."""
        n = int(self._counts[identity])
        pick = rng.choice(n, self.images_per_identity, replace=n < self.images_per_identity)
        return order[starts[identity] + pick]
