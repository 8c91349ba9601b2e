"""KCS draws negatives from the scheduled clusters; training on synthetic identities makes verifiers work."""

import numpy as np
import pytest
import torch

from hf_facerec.hypernet import batched_logits
from hf_facerec.hypernet.sampling import EpisodeConfig, EpisodeDataset, KMeansCenteredSampler, identity_centers
from hf_facerec.hypernet.trainer import (HyperNetTrainer, HyperNetTrainingArguments, calibrate_align_threshold,
                                         objective_weight)

from .helpers import synthetic_identities, tiny_hypernet

# 4 well-separated groups of 5 identities on a line: group g's nearest other group is g+1 (g-1 for the last).
GROUP_AT = np.array([0.0, 1.0, 3.0, 6.0])


def _grouped_centers(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(4), 5)
    centers = np.zeros((20, 8))
    centers[:, 0] = GROUP_AT[groups] * 10
    return centers + 0.01 * rng.normal(size=centers.shape), groups


def test_kcs_draws_negatives_from_the_scheduled_clusters():
    centers, groups = _grouped_centers()
    sampler = KMeansCenteredSampler(centers, n_clusters=4, hard_neighbor_clusters=1, hard_by=0.5)
    # K-means recovers the groups (cluster ids are a relabelling)
    assert all(len(set(sampler.cluster_of[groups == g])) == 1 for g in range(4))
    assert [sampler.clusters_at(t) for t in (0.0, 0.25, 0.5, 1.0)] == [4, 3, 2, 2]
    rng = np.random.default_rng(0)
    user = 0  # group 0: the nearest group is 1, then 2, then 3
    hard = sampler.negative_identities(user, 400, progress=0.9, rng=rng)
    assert user not in hard and set(groups[hard]) == {0, 1}
    middle = sampler.negative_identities(user, 400, progress=0.25, rng=rng)
    assert set(groups[middle]) == {0, 1, 2}
    easy = sampler.negative_identities(user, 400, progress=0.0, rng=rng)
    assert set(groups[easy]) == {0, 1, 2, 3} and min(np.bincount(groups[easy])) > 60  # random over every cluster
    last = 19  # group 3: its nearest is group 2
    assert set(groups[sampler.negative_identities(last, 200, 1.0, rng)]) == {2, 3}
    mixed = KMeansCenteredSampler(centers, 4, 0, hard_by=0.0, random_fraction=0.5)
    picks = mixed.negative_identities(user, 2000, 1.0, rng)
    assert 0.3 < np.mean(groups[picks] != 0) < 0.45  # half uniform over the 19 others (15 outside the group)
    with pytest.raises(ValueError, match="n_clusters"):
        KMeansCenteredSampler(centers, n_clusters=21)


def test_episodes_follow_the_schedule_and_kcs_off_is_random():
    _, groups = _grouped_centers()
    labels = np.repeat(np.arange(20), 3)
    rng = np.random.default_rng(0)
    embeddings = np.eye(8)[groups[labels]] + 0.01 * rng.normal(size=(60, 8))  # group g along axis g (unit centers)
    pixels = torch.zeros(60, 1, 8, 8)
    config = EpisodeConfig(max_enrol=2, num_positives=2, num_negatives=30, n_clusters=4, hard_neighbor_clusters=0,
                           hard_by=0.5, random_fraction=0.0, flip=False)
    data = EpisodeDataset(embeddings, pixels, labels, config, num_steps=10, episodes_per_step=4)
    assert len(data) == 40 and data.progress(0) == 0 and data.progress(39) == 0.9
    late = data[39]
    ids = late["probe_identities"].numpy()
    user = ids[0]
    assert (ids[:2] == user).all() and (late["labels"].numpy() == [1, 1] + [0] * 30).all()
    assert user not in ids[2:] and set(groups[ids[2:]]) == {groups[user]}  # own cluster only, at the end
    assert late["enrol_embeddings"].shape == (2, 8) and late["probe_pixel_values"].shape == (32, 1, 8, 8)
    assert torch.equal(data[5]["probe_pixel_values"], data[5]["probe_pixel_values"])  # deterministic
    random = EpisodeDataset(embeddings, pixels, labels, EpisodeConfig(num_negatives=400, kcs=False), 10, 4)
    assert random.sampler is None and len(set(groups[random[39]["probe_identities"].numpy()[4:]])) == 4


def test_objective_schedule_and_threshold_calibration():
    args = HyperNetTrainingArguments(output_dir="unused", align_fraction=0.2, transition_fraction=0.4, use_cpu=True)
    assert np.allclose([objective_weight(s, 100, args) for s in (0, 19, 20, 40, 60, 99)], [1, 1, 1, 0.5, 0, 0])
    off = HyperNetTrainingArguments(output_dir="unused", objective_schedule=False, use_cpu=True)
    assert objective_weight(0, 100, off) == 0.0
    _, labels, embeddings = synthetic_identities(10, 4)
    threshold = calibrate_align_threshold(embeddings, labels, n_pairs=2000)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    assert cos[~same].max() < threshold < cos[same].min()  # separable identities: the EER threshold splits them


@pytest.fixture
def one_thread():
    """Tiny ops: one thread avoids intra-op spinning on a shared machine (measured: 18 s vs minutes under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_on_synthetic_identities_makes_verifiers_work(tmp_path, one_thread):
    pixels, labels, embeddings = synthetic_identities(24, 10)
    index = np.arange(len(labels)) % 10
    train = index < 7  # images 7-9 of every identity are held out
    model = tiny_hypernet()
    steps = 150
    data = EpisodeDataset(embeddings[train], pixels[train], labels[train], EpisodeConfig(n_clusters=4), steps, 8)
    args = HyperNetTrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8,
                                     learning_rate=3e-3, logging_steps=50, use_cpu=True, disable_tqdm=True,
                                     objective_schedule=False, dataloader_num_workers=0, seed=0)
    history = HyperNetTrainer(model=model, args=args, train_dataset=data).train()
    assert np.isfinite(history.training_loss)
    model.eval()
    with torch.no_grad():
        enrolled = model.generate(model.pool(torch.as_tensor(embeddings[index == 0])[:, None]))[0]  # (24, P)
        probes = pixels[index >= 7]
        p = torch.sigmoid(batched_logits(model.target, enrolled, probes, model.shapes, shared_probes=True)).numpy()
    same = labels[index == 0][:, None] == labels[index >= 7][None, :]
    accepted, rejected = (p[same] > 0.5).mean(), (p[~same] < 0.5).mean()
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(same.ravel(), p.ravel())
    assert accepted > 0.65 and rejected > 0.65 and auc > 0.75, (accepted, rejected, auc)  # chance: 0.5
