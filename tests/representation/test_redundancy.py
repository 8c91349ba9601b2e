"""Redundancy analysis: planted near-copies (flipped, re-encoded JPEG, slightly cropped) of synthetic faces are
found and distinct faces are not; subsets; statistics."""

import io

import numpy as np
import pytest
from PIL import Image

from hf_facerec.data.synthetic import make_synthetic_faces
from hf_facerec.representation.redundancy import (dataset_statistics, deduplicated_subset, embed_images,
                                                  redundancy_controlled_subset, redundancy_report,
                                                  size_controlled_subset, thumbnail_embeddings)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _crop(image: Image.Image, border: int) -> Image.Image:
    w, h = image.size
    return image.crop((border, border, w - border, h - border)).resize((w, h), Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def planted():
    """30 distinct synthetic faces (one per identity) + 3 copies of faces 0, 1, 2 (flip, JPEG q40, 3 px crop)."""
    faces = list(make_synthetic_faces(num_identities=30, images_per_identity=1, image_size=112, seed=7)["image"])
    faces = [f.convert("RGB") for f in faces]
    copies = [faces[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT), _jpeg(faces[1], 40), _crop(faces[2], 3)]
    truth = {(0, 30), (1, 31), (2, 32)}
    return faces + copies, truth


def _found(images, embeddings, threshold):
    report = redundancy_report(embeddings, threshold=threshold, k=5, labels=list(range(30)) + [0, 1, 2])
    return report, {tuple(p) for p in report["pairs"].tolist()}


def test_thumbnails_find_the_planted_copies_and_nothing_else(planted):
    images, truth = planted
    report, found = _found(images, thumbnail_embeddings(images), threshold=0.95)
    assert found == truth
    assert report["near_duplicate_fraction"] == pytest.approx(6 / 33)
    assert report["clusters"] == 3 and report["largest_cluster"] == 2 and report["deduplicated_images"] == 30
    assert report["cross_identity_pairs"] == 0
    keep = deduplicated_subset(report["cluster_of"])
    assert keep.tolist() == list(range(30))  # the originals are kept, the copies dropped
    assert len(size_controlled_subset(keep, 10, seed=1)) == 10
    group = redundancy_controlled_subset(report["cluster_of"], size=6, copies=1, seed=0)
    assert len(group) == 6 and set(report["cluster_of"][group].tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="clusters"):
        redundancy_controlled_subset(report["cluster_of"], size=8, copies=1)


def test_exact_and_approximate_indexes_agree_on_the_planted_pairs(planted):
    images, truth = planted
    vectors = thumbnail_embeddings(images)
    for method in ("exact", "hnsw"):
        report = redundancy_report(vectors, threshold=0.95, k=5, method=method)
        assert {tuple(p) for p in report["pairs"].tolist()} == truth and report["method"] == method


def test_mobilefacenet_finds_the_planted_copies(planted, mobilefacenet_dir):
    images, truth = planted
    embeddings = embed_images(str(mobilefacenet_dir), images, batch_size=33)
    found = _found(images, embeddings, threshold=0.85)[1]  # measured: copies >= 0.868, distinct <= 0.811
    assert truth <= found and not [p for p in found if p[1] < 30]  # no pair among the 30 distinct faces


def test_statistics():
    stats = dataset_statistics(6, ["a", "a", "b", "c", "c", "c"])
    assert stats["identities"] == 3 and stats["singleton_identities"] == 1
    assert stats["images_per_identity"] == {"min": 1, "median": 2.0, "mean": 2.0, "max": 3}
    with pytest.raises(ValueError, match="labels"):
        dataset_statistics(5, ["a"])
