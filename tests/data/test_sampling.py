"""Identity-balanced batches: composition, coverage, determinism, sharding; class-balanced weights."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_sample_weight

from hf_facerec.data.sampling import IdentityBalancedBatchSampler, class_balanced_weights


def _skewed_labels(seed: int = 0, identities: int = 40) -> np.ndarray:
    """Identities with 1..30 images, shuffled: small ones need repeats, large ones appear in many batches."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(identities) * 7 + 3, rng.integers(1, 31, identities))  # non-contiguous ids
    return rng.permutation(labels)


def _check_composition(batches, labels, p, k):
    for batch in batches:
        ids = np.asarray(labels)[batch].reshape(p, k)
        assert np.all(ids == ids[:, :1]), "each identity's K images are contiguous"
        assert len(set(ids[:, 0])) == p, "P distinct identities per batch"


@pytest.mark.parametrize("k", [2, 3, 4])
def test_every_batch_has_p_identities_times_k_images(k):
    labels = _skewed_labels()
    sampler = IdentityBalancedBatchSampler(labels, batch_size=6 * k, images_per_identity=k, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) and all(len(b) == 6 * k for b in batches)
    _check_composition(batches, labels, 6, k)
    assert abs(len(batches) - len(labels) / (6 * k)) <= 0.15 * len(labels) / (6 * k) + 1


def test_epoch_is_a_permutation_when_identities_divide_evenly():
    labels = np.repeat(np.arange(12), 4)  # 12 identities x 4 images: 12 chunks, 4 batches of 3 identities
    batches = list(IdentityBalancedBatchSampler(labels, batch_size=12, images_per_identity=4, seed=0))
    assert len(batches) == 4 and sorted(np.concatenate(batches).tolist()) == list(range(48))


def test_small_identities_cycle_their_images():
    labels = np.array([0] + [1] * 2 + [2] * 12 + [3] * 4 + [4] * 4 + [5] * 4)
    sampler = IdentityBalancedBatchSampler(labels, batch_size=8, images_per_identity=4, seed=0, drop_last=False)
    seen_of_2 = set()
    for epoch in range(10):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        _check_composition(batches, labels, 2, 4)
        chunks = [tuple(sorted(b[i : i + 4])) for b in batches for i in (0, 4)]
        assert (0, 0, 0, 0) in chunks  # the lone image, four times
        assert (1, 1, 2, 2) in chunks  # two images, each twice
        seen_of_2 |= {i for b in batches for i in b if labels[i] == 2}
    assert seen_of_2 == set(np.nonzero(labels == 2)[0].tolist())


def test_determinism_per_seed_and_epoch():
    labels = _skewed_labels()
    make = lambda seed: IdentityBalancedBatchSampler(labels, 16, 4, seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    assert list(a) == list(b) and list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first


def test_shards_are_disjoint_equal_length_and_cover_the_global_order():
    labels = np.repeat(np.arange(30), 4)  # 30 chunks -> 10 batches of 3 identities
    world = [IdentityBalancedBatchSampler(labels, 12, 4, seed=2, num_replicas=3, rank=r) for r in range(3)]
    shards = [list(s) for s in world]
    assert [len(s) for s in shards] == [3, 3, 3] == [len(s) for s in world]
    global_batches = list(IdentityBalancedBatchSampler(labels, 12, 4, seed=2))
    assert [b for r in range(3) for b in shards[r]] != global_batches  # interleaved, not contiguous
    assert [shards[r][i] for i in range(3) for r in range(3)] == global_batches[:9]
    indices = [set(np.concatenate(s).tolist()) for s in shards]
    assert all(indices[i].isdisjoint(indices[j]) for i in range(3) for j in range(i + 1, 3))


def test_no_drop_last_pads_full_batches_for_every_rank():
    labels = np.repeat(np.arange(7), 2)  # 7 chunks of 2 -> ceil(7 / 2) = 4 global batches
    world = [IdentityBalancedBatchSampler(labels, 4, 2, drop_last=False, num_replicas=3, rank=r) for r in range(3)]
    for sampler in world:
        batches = list(sampler)
        assert len(batches) == len(sampler) == 2
        _check_composition(batches, labels, 2, 2)


def test_works_as_a_dataloader_batch_sampler():
    labels = _skewed_labels()
    dataset = torch.utils.data.TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    sampler = IdentityBalancedBatchSampler(labels, 8, 2)
    for index, label in torch.utils.data.DataLoader(dataset, batch_sampler=sampler):
        assert torch.equal(label, torch.as_tensor(labels)[index]) and len(label.unique()) == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 10, "images_per_identity": 4}, "multiple"),
    ({"batch_size": 400, "images_per_identity": 4}, "distinct identities"),
    ({"batch_size": 8, "images_per_identity": 0}, "positive"),
    ({"batch_size": 8, "num_replicas": 2, "rank": 2}, "rank"),
    ({"batch_size": 8, "num_replicas": 10_000}, "replicas"),
])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IdentityBalancedBatchSampler(_skewed_labels(), **kwargs)


def test_rejects_bad_labels():
    with pytest.raises(ValueError):
        IdentityBalancedBatchSampler([], 4, 2)
    with pytest.raises(ValueError):
        class_balanced_weights(np.zeros((3, 2)))


def test_class_balanced_weights_known_answer_and_sklearn():
    np.testing.assert_allclose(class_balanced_weights([0, 0, 1]), [0.75, 0.75, 1.5])
    labels = _skewed_labels()
    weights = class_balanced_weights(labels)
    np.testing.assert_allclose(weights, compute_sample_weight("balanced", labels))
    totals = np.bincount(np.unique(labels, return_inverse=True)[1], weights=weights)
    np.testing.assert_allclose(totals, len(labels) / len(np.unique(labels)))
    assert class_balanced_weights(["b", "a", "b"]).tolist() == [0.75, 1.5, 0.75]
