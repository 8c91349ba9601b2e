"""Training episodes for the hypernetwork, and K-means Centered Sampling (KCS) of hard negatives.

An episode is one user: its enrolment image(s) (seen by h_bb, through their cached embeddings), positives (other
images of the user) and negatives (images of other identities), both seen by f at low resolution.

KCS (Rozner et al. 2024; the paper's schedule is not public, this is the one here): scikit-learn ``KMeans`` over the
identity centers (mean unit h_bb embedding of each identity, renormalised). A user's negatives come from the
``n(t)`` clusters whose centroids are nearest to the centroid of the user's own cluster (own cluster first), where
t = step / total steps and, easy to hard,

    n(t) = round(K - (K - n_hard) * min(1, t / hard_by))        (n_hard = 1 + hard_neighbor_clusters)

so training starts with negatives from every cluster (random negatives) and, from ``t = hard_by`` on, draws them
from the user's own cluster and its ``hard_neighbor_clusters`` nearest ones. ``random_fraction`` of the negatives
stay uniform over all other identities throughout (the verifier must keep rejecting easy impostors).
KCS off (``kcs=False``) = every negative uniform over the other identities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..evaluation.scoring import template_embeddings

__all__ = ["EpisodeConfig", "EpisodeDataset", "KMeansCenteredSampler", "identity_centers"]


def identity_centers(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique labels (I,), unit mean embedding per identity (I, D)) from (N, D) embeddings and (N,) labels: the
    evaluation core's template aggregation with one image per media."""
    return template_embeddings(embeddings, labels)


class KMeansCenteredSampler:
    """Which identities an episode's negatives come from, by K-means over identity centers and training progress.

    Args:
        centers: (I, D) identity centers (row i = identity code i). n_clusters: K of the K-means.
        hard_neighbor_clusters: clusters next to the user's own in the hardest pool.
        hard_by: fraction of training at which the hardest pool is reached (0: hard from the start).
        random_fraction: share of negatives that stay uniform over all other identities.
        seed: the K-means seed.
    """

    def __init__(self, centers: np.ndarray, n_clusters: int = 8, hard_neighbor_clusters: int = 1,
                 hard_by: float = 0.5, random_fraction: float = 0.0, seed: int = 0):
        from sklearn.cluster import KMeans

        if not 1 <= n_clusters <= len(centers):
            raise ValueError(f"n_clusters must be in [1, {len(centers)}] (the number of identities), got {n_clusters}")
        if not 0 <= hard_neighbor_clusters < n_clusters:
            raise ValueError(f"hard_neighbor_clusters must be in [0, {n_clusters - 1}], got {hard_neighbor_clusters}")
        if not 0 <= hard_by <= 1 or not 0 <= random_fraction <= 1:
            raise ValueError(f"hard_by and random_fraction must be in [0, 1], got {hard_by}, {random_fraction}")
        self.kmeans = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(centers)
        self.cluster_of = self.kmeans.labels_.astype(np.int64)  # (I,)
        c = self.kmeans.cluster_centers_
        distances = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        self.neighbors = np.argsort(distances, axis=1, kind="stable")  # (K, K): own cluster first (distance 0)
        self.members = [np.flatnonzero(self.cluster_of == k) for k in range(n_clusters)]
        self.n_clusters, self.n_hard = n_clusters, 1 + hard_neighbor_clusters
        self.hard_by, self.random_fraction = hard_by, random_fraction

    def clusters_at(self, progress: float) -> int:
        """n(t): how many nearest clusters (own included) the negative pool spans at training progress t in [0, 1]."""
        ramp = 1.0 if self.hard_by == 0 else min(1.0, max(0.0, progress) / self.hard_by)
        return int(round(self.n_clusters - (self.n_clusters - self.n_hard) * ramp))

    def pool(self, identity: int, progress: float) -> np.ndarray:
        """Identity codes (other than ``identity``) allowed as hard negatives now; widened when the pool is empty."""
        order = self.neighbors[self.cluster_of[identity]]
        for n in range(self.clusters_at(progress), self.n_clusters + 1):
            members = np.concatenate([self.members[k] for k in order[:n]])
            members = members[members != identity]
            if members.size:
                return members
        raise ValueError("KCS needs at least two identities")

    def negative_identities(self, identity: int, n: int, progress: float, rng: np.random.Generator) -> np.ndarray:
        """(n,) identity codes of negatives for a user at training progress t."""
        pool = self.pool(identity, progress)
        picks = rng.choice(pool, size=n)
        n_random = rng.binomial(n, self.random_fraction) if self.random_fraction else 0
        if n_random:
            others = np.delete(np.arange(len(self.cluster_of)), identity)
            picks[:n_random] = rng.choice(others, size=n_random)
        return picks


@dataclass
class EpisodeConfig:
    """What an episode holds and how negatives are drawn (module docstring: the KCS schedule).

    Args:
        max_enrol: enrolment images per episode, drawn uniformly in [1, max_enrol] (padded, with a mask).
        num_positives, num_negatives: f's probes per episode.
        kcs: K-means Centered Sampling on (off: random negatives); n_clusters, hard_neighbor_clusters, hard_by,
            random_fraction: see :class:`KMeansCenteredSampler`.
        flip: mirror each probe with probability 1/2 (the only augmentation).
    """

    max_enrol: int = 1
    num_positives: int = 4
    num_negatives: int = 12
    kcs: bool = True
    n_clusters: int = 8
    hard_neighbor_clusters: int = 1
    hard_by: float = 0.5
    random_fraction: float = 0.2
    flip: bool = True
    seed: int = 0


class EpisodeDataset(Dataset):
    """``num_steps * episodes_per_step`` deterministic episodes; item i belongs to step ``i // episodes_per_step``,
    so its KCS difficulty follows the schedule when read in order (the trainer's sampler is sequential).

    Args:
        embeddings: (N, D) cached h_bb embeddings. pixel_values: (N, c, s, s) f's inputs. labels: (N,) identities.
        Identities with >= 2 images are the users; every identity can be a negative.

    Item: ``enrol_embeddings`` (E, D), ``enrol_mask`` (E,), ``probe_pixel_values`` (M, c, s, s), ``probe_embeddings``
    (M, D), ``labels`` (M,) float 1 = the user, ``probe_identities`` (M,) identity codes; E = max_enrol,
    M = num_positives + num_negatives.
    """

    def __init__(self, embeddings, pixel_values, labels, config: EpisodeConfig, num_steps: int, episodes_per_step: int):
        self.embeddings = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        self.pixel_values = torch.as_tensor(pixel_values, dtype=torch.float32)
        _, self.codes = np.unique(np.asarray(labels), return_inverse=True)
        if not len(self.embeddings) == len(self.pixel_values) == len(self.codes):
            raise ValueError(f"embeddings, pixel_values and labels differ in length: {len(self.embeddings)}, "
                             f"{len(self.pixel_values)}, {len(self.codes)}")
        order = np.argsort(self.codes, kind="stable")
        self.images_of = np.split(order, np.cumsum(np.bincount(self.codes))[:-1])
        self.users = np.array([i for i, images in enumerate(self.images_of) if len(images) >= 2])
        if len(self.users) < 1 or len(self.images_of) < 2:
            raise ValueError("episodes need at least one identity with >= 2 images and two identities")
        self.config, self.num_steps, self.episodes_per_step = config, int(num_steps), int(episodes_per_step)
        self.sampler = None
        if config.kcs:
            _, centers = identity_centers(self.embeddings.numpy(), self.codes)
            self.sampler = KMeansCenteredSampler(centers, min(config.n_clusters, len(centers)),
                                                 min(config.hard_neighbor_clusters, min(config.n_clusters, len(centers)) - 1),
                                                 config.hard_by, config.random_fraction, config.seed)

    def __len__(self) -> int:
        return self.num_steps * self.episodes_per_step

    def progress(self, index: int) -> float:
        return (index // self.episodes_per_step) / max(1, self.num_steps)

    def negative_identities(self, user: int, n: int, progress: float, rng: np.random.Generator) -> np.ndarray:
        if self.sampler is not None:
            return self.sampler.negative_identities(user, n, progress, rng)
        others = np.delete(np.arange(len(self.images_of)), user)
        return rng.choice(others, size=n)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index])
        user = int(rng.choice(self.users))
        images = rng.permutation(self.images_of[user])
        n_enrol = min(int(rng.integers(1, cfg.max_enrol + 1)), len(images) - 1)
        enrol, rest = images[:n_enrol], images[n_enrol:]
        positives = rng.choice(rest, size=cfg.num_positives)
        neg_ids = self.negative_identities(user, cfg.num_negatives, self.progress(index), rng)
        negatives = np.array([rng.choice(self.images_of[i]) for i in neg_ids], dtype=np.int64)
        probes = torch.as_tensor(np.concatenate([positives, negatives]))
        pixels = self.pixel_values[probes]
        if cfg.flip:
            flips = torch.as_tensor(rng.random(len(probes)) < 0.5)
            pixels = torch.where(flips[:, None, None, None], pixels.flip(-1), pixels)
        enrol_embeddings = torch.zeros(cfg.max_enrol, self.embeddings.shape[1])
        enrol_embeddings[:n_enrol] = self.embeddings[torch.as_tensor(enrol)]
        return {
            "enrol_embeddings": enrol_embeddings,
            "enrol_mask": (torch.arange(cfg.max_enrol) < n_enrol).float(),
            "probe_pixel_values": pixels,
            "probe_embeddings": self.embeddings[probes],
            "labels": torch.cat([torch.ones(cfg.num_positives), torch.zeros(cfg.num_negatives)]),
            "probe_identities": torch.as_tensor(np.concatenate([[user] * cfg.num_positives, neg_ids])),
        }
