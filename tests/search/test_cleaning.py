"""Cleaning on synthetic embeddings with planted faults (and a tiny image dataset for the report and the CLI)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hf_facerec.search.cleaning import CleaningConfig, clean_dataset, clean_embeddings
from hf_facerec.search.report import write_cleaning_report

RULES_ON = CleaningConfig(duplicate_threshold=0.999, merge_threshold=0.8, noisy_margin=0.05, outlier_threshold=0.2)


def _clusters(num_ids=20, per_id=8, dim=32, noise=0.35, seed=0):
    """Identities as random unit centers in D=32 (pairwise cosine ~ N(0, 1/32)), images = center + noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_ids, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = np.repeat(np.arange(num_ids), per_id)
    x = centers[labels] + noise * rng.standard_normal((len(labels), dim)) / np.sqrt(dim)
    return x.astype(np.float32), labels


def test_clean_data_is_untouched():
    x, labels = _clusters()
    result = clean_embeddings(x, labels, RULES_ON)
    assert result.keep.all() and result.records == []
    assert np.array_equal(result.labels, labels)
    assert result.counts["identities_after"] == 20


def test_planted_mislabelled_images_are_removed_and_nothing_else():
    x, labels = _clusters()
    planted = np.array([3, 17, 50, 101])  # relabel to the next identity: their image shows someone else
    noisy = labels.copy()
    noisy[planted] = (labels[planted] + 1) % 20
    result = clean_embeddings(x, noisy, CleaningConfig(noisy_margin=0.05))
    assert sorted(r["index"] for r in result.records) == planted.tolist()
    assert {r["rule"] for r in result.records} == {"noisy"}
    assert result.counts["noisy"] == 4 and result.counts["images_after"] == len(x) - 4


def test_planted_duplicated_identity_is_merged():
    x, labels = _clusters()
    split = labels.copy()
    split[labels == 5] = np.where(np.arange(8) < 4, 5, 20)  # identity 5's last four images under a new label 20
    result = clean_embeddings(x, split, RULES_ON)
    merged = [r for r in result.records if r["rule"] == "merge"]
    assert sorted(r["index"] for r in merged) == np.flatnonzero(split == 20).tolist()
    assert {r["rule"] for r in result.records} == {"merge"} and result.keep.all()
    assert len(np.unique(result.labels[split == 5])) == 1
    assert np.array_equal(result.labels[split == 20], result.labels[split == 5][:4])
    assert result.counts["identities_before"] == 21 and result.counts["identities_after"] == 20


def test_duplicates_outliers_fraction_and_small():
    x, labels = _clusters()
    x = np.concatenate([x, x[[7]], x[[9]] * 1.0001])  # two exact copies of images of identity 0 and 1
    labels = np.concatenate([labels, [0, 1]])
    x[30] = -x[30]  # an image of identity 3 pointing the other way: an outlier, not nearer anyone else's center
    result = clean_embeddings(x, labels, CleaningConfig(duplicate_threshold=0.999, outlier_threshold=0.2))
    assert {(r["index"], r["rule"]) for r in result.records} == {(160, "duplicate"), (161, "duplicate"), (30, "outlier")}
    frac = clean_embeddings(x[:160], labels[:160], CleaningConfig(outlier_fraction=0.25))
    assert frac.counts["outlier"] == 20 * 2  # floor(0.25 * 8) per identity
    small = clean_embeddings(x[:160], labels[:160], CleaningConfig(outlier_fraction=0.25, min_images=7))
    assert small.counts["small"] == 120 and small.counts["identities_after"] == 0


def test_bad_inputs():
    x, labels = _clusters(num_ids=3)
    with pytest.raises(ValueError, match="merge_threshold"):
        CleaningConfig(merge_threshold=1.5)
    with pytest.raises(ValueError, match="outlier_fraction"):
        CleaningConfig(outlier_fraction=1.0)
    with pytest.raises(ValueError, match="labels"):
        clean_embeddings(x, labels[:-1])
    with pytest.raises(ValueError, match="embeddings"):
        clean_embeddings(np.full_like(x, np.nan), labels)


def _image_dataset(labels, seed=0):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in labels]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[f"p{i}" for i in range(max(labels) + 1)])})
    return datasets.Dataset.from_dict({"image": images, "label": list(labels)}, features=features)


def test_clean_dataset_and_report(tmp_path):
    x, labels = _clusters(num_ids=4, per_id=4)
    labels = labels.copy()
    labels[1] = 2  # one mislabelled image
    dataset = _image_dataset(labels)
    cleaned, result = clean_dataset(dataset, CleaningConfig(noisy_margin=0.05), embeddings=x)
    assert len(cleaned) == 15 and cleaned.features["label"].names == ["p0", "p1", "p2", "p3"]
    summary = write_cleaning_report(result, tmp_path, dataset)
    assert summary["counts"]["noisy"] == 1
    assert json.loads((tmp_path / "cleaning.json").read_text())["counts"]["images_after"] == 15
    rows = list(csv.DictReader((tmp_path / "cleaning.csv").open()))
    assert [(r["index"], r["rule"], r["label"]) for r in rows] == [("1", "noisy", "2")]
    assert (tmp_path / "cleaning.png").stat().st_size > 1000


def test_cli_clean_with_precomputed_embeddings(tmp_path, capsys):
    import datasets

    from hf_facerec.cli import main

    x, labels = _clusters(num_ids=4, per_id=4)
    split = labels.copy()
    split[labels == 3] = np.array([3, 3, 4, 4])  # identity 3 under two labels
    _image_dataset(split).save_to_disk(str(tmp_path / "data"))
    np.save(tmp_path / "emb.npy", x)
    code = main(["clean", "--data", str(tmp_path / "data"), "--embeddings", str(tmp_path / "emb.npy"),
                 "--merge-threshold", "0.8", "--output", str(tmp_path / "out")])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["merge"] == 2
    cleaned = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    assert len(cleaned) == 16 and cleaned.features["label"].num_classes == 4
    assert main(["clean", "--data", str(tmp_path / "data"), "--embeddings", str(tmp_path / "emb.npy"),
                 "--merge-threshold", "3", "--output", str(tmp_path / "out2")]) == 2


def test_clean_dataset_computes_reference_embeddings_with_an_embedder():
    import torch

    from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel
    from hf_facerec.search.cleaning import embed_dataset
    from tests.models.tiny_backbones import tiny_backbone_config

    torch.manual_seed(0)
    model = FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("vit", 16), image_size=16, embedding_size=8))
    dataset = _image_dataset([0, 0, 1, 1, 2, 2])
    embedder = FaceEmbedder(model, detector=None)
    embeddings = embed_dataset(dataset, embedder, batch_size=4)
    assert embeddings.shape == (6, 8)
    config = CleaningConfig(outlier_fraction=0.5)
    _, by_embedder = clean_dataset(dataset, config, embedder=embedder, batch_size=4)
    _, by_array = clean_dataset(dataset, config, embeddings=embeddings)
    assert by_embedder.records == by_array.records and by_embedder.counts["outlier"] == 3
    with pytest.raises(ValueError, match="exactly one"):
        clean_dataset(dataset, config)
