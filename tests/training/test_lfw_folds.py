"""The fold / identity split logic of scripts/train_lfw_folds.py (hf_facerec.data.protocols) on a fake pairs.txt."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from hf_facerec.data.folders import load_identity_folder
from hf_facerec.data.pairs import load_lfw_pairs
from hf_facerec.data.protocols import (
    IdentityLeakError,
    link_identity_subset,
    pair_identities,
    parse_fold_range,
    select_folds,
    split_identities_by_folds,
)

# 3 folds of 2 genuine + 2 impostor pairs; fold k (0-based) uses only its own identities.
PAIRS = """3 2
A 1 2
B 1 3
C 1 D 1
A 2 C 1
E 1 2
F 1 2
G 1 H 1
E 1 G 1
I 1 2
J 1 2
K 1 L 1
I 1 K 1
"""
# Image counts; M and N appear in no pair.
COUNTS = {"A": 2, "B": 3, "C": 1, "D": 1, "E": 2, "F": 2, "G": 1, "H": 1, "I": 2, "J": 2, "K": 1, "L": 1,
          "M": 3, "N": 1}


def _tiny_png() -> bytes:
    """A 2x2 PNG: identity folders recognise images by content and decode them, so fake photos must be images."""
    buffer = io.BytesIO()
    Image.new("L", (2, 2)).save(buffer, format="PNG")
    return buffer.getvalue()


TINY_IMAGE = _tiny_png()


def _fake_lfw(root: Path, pairs_text: str = PAIRS) -> tuple[Path, Path]:
    images = root / "images"
    for name, count in COUNTS.items():
        (images / name).mkdir(parents=True)
        for number in range(1, count + 1):
            (images / name / f"{name}_{number:04d}.jpg").write_bytes(TINY_IMAGE)
    (root / "pairs.txt").write_text(pairs_text)
    return root / "pairs.txt", images


@pytest.fixture
def lfw(tmp_path):
    pairs_txt, images = _fake_lfw(tmp_path)
    return load_lfw_pairs(pairs_txt, images), images


def test_parse_fold_range_is_one_based():
    assert parse_fold_range("1-5") == [0, 1, 2, 3, 4]
    assert parse_fold_range("6-8, 10") == [5, 6, 7, 9]
    assert parse_fold_range("3") == [2]
    for bad in ("0", "5-3", "a", "1-", ""):
        with pytest.raises(ValueError):
            parse_fold_range(bad)


def test_pair_identities_and_select_folds(lfw):
    pairs, _ = lfw
    assert pair_identities(pairs, [0]) == {"A", "B", "C", "D"}
    assert pair_identities(pairs) == set("ABCDEFGHIJKL")
    test = select_folds(pairs, [2])
    assert len(test) == 4 and set(test["fold"]) == {2} and sum(test["is_same"]) == 2
    with pytest.raises(ValueError, match="not in the pair set"):
        select_folds(pairs, [7])
    with pytest.raises(ValueError, match="empty"):
        select_folds(pairs, [])


def test_split_by_folds_hand_computed(lfw):
    pairs, _ = lfw
    split = split_identities_by_folds(pairs, [0, 1], [2], COUNTS, min_images=2)
    assert split.train == ("A", "B", "E", "F")  # C, D, G, H have one image
    assert split.dropped_few_images == ("C", "D", "G", "H")
    assert split.test == ("I", "J", "K", "L")
    assert split.unpaired == ("M", "N")
    assert split.num_train_images == 2 + 3 + 2 + 2
    assert split.summary()["train_test_overlap"] == 0
    with_unpaired = split_identities_by_folds(pairs, [0, 1], [2], COUNTS, min_images=2, include_unpaired=True)
    assert with_unpaired.train == ("A", "B", "E", "F", "M") and with_unpaired.num_train_images == 12
    no_counts = split_identities_by_folds(pairs, [0], [1, 2])
    assert no_counts.train == ("A", "B", "C", "D") and no_counts.images == {}


def test_split_rejects_leaks_and_bad_input(tmp_path, lfw):
    pairs, _ = lfw
    with pytest.raises(ValueError, match="share fold"):
        split_identities_by_folds(pairs, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="min_images"):
        split_identities_by_folds(pairs, [0], [2], COUNTS, min_images=0)
    with pytest.raises(ValueError, match="include_unpaired needs"):
        split_identities_by_folds(pairs, [0], [2], include_unpaired=True)
    with pytest.raises(ValueError, match="no images"):
        split_identities_by_folds(pairs, [0], [2], {"A": 2})
    with pytest.raises(ValueError, match="no training identity"):
        split_identities_by_folds(pairs, [0], [2], COUNTS, min_images=5)
    # A fold-3 impostor pair naming A (a fold-1 identity) breaks identity-disjointness.
    leaky_root = tmp_path / "leaky"
    leaky_root.mkdir()
    leaky = load_lfw_pairs(*_fake_lfw(leaky_root, PAIRS.replace("I 1 K 1", "A 1 K 1")))
    with pytest.raises(IdentityLeakError, match="1 identities"):
        split_identities_by_folds(leaky, [0], [2])


def test_link_identity_subset_feeds_load_identity_folder(tmp_path, lfw):
    _, images = lfw
    dst = link_identity_subset(images, tmp_path / "train_ids", ["B", "A", "M"])
    dataset = load_identity_folder(dst, min_images_per_identity=2)
    assert dataset.features["label"].names == ["A", "B", "M"]
    assert len(dataset) == 2 + 3 + 3
    # Re-linking with another list removes stale links only; the sources stay untouched.
    link_identity_subset(images, dst, ["A"])
    assert sorted(os.listdir(dst)) == ["A"] and (images / "B").is_dir()
    assert os.path.realpath(dst / "A") == str((images / "A").resolve())


def test_link_identity_subset_errors(tmp_path, lfw):
    _, images = lfw
    with pytest.raises(FileNotFoundError, match="no folder"):
        link_identity_subset(images, tmp_path / "x", ["A", "Zed"])
    with pytest.raises(ValueError, match="plain folder names"):
        link_identity_subset(images, tmp_path / "x", ["../A"])
    with pytest.raises(ValueError, match="empty"):
        link_identity_subset(images, tmp_path / "x", [])
    with pytest.raises(FileNotFoundError, match="root not found"):
        link_identity_subset(tmp_path / "nope", tmp_path / "x", ["A"])
    foreign = tmp_path / "foreign"
    (foreign / "real_dir").mkdir(parents=True)
    with pytest.raises(ValueError, match="not identity links"):
        link_identity_subset(images, foreign, ["A"])
