"""Identity folders: filters, deterministic subsets, identity-disjoint split, streaming, Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets
from hf_facerec.data.convert import folder_to_parquet
from hf_facerec.data.folders import (
    identity_disjoint_split,
    load_identity_folder,
    select_identities,
    stream_identity_folder,
)

# identity -> image count; "zed" is an empty folder.
COUNTS = {"alice": 3, "bob": 1, "carol": 2, "dave": 4, "erin": 2, "zed": 0}


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for name, count in COUNTS.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (12, 10), dtype=np.uint8)
            # Mixed formats and extension case, like real folders (ORL is PGM, LFW JPEG).
            suffix = (".png", ".PGM", ".jpg")[index % 3]
            Image.fromarray(pixels).save(root / name / f"{index:02d}{suffix}", format={".PGM": "PPM"}.get(suffix))
    (root / "alice" / "notes.txt").write_text("not an image")
    (root / "alice" / ".hidden.png").write_bytes(b"")
    (root / "loose.jpg").write_bytes(b"")  # a file at the top level is not an identity
    return root


def _rows(dataset):
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    return [(row["image"]["path"], row["label"]) for row in dataset]


def test_load_all_identities(faces):
    dataset = load_identity_folder(faces)
    assert dataset.features["label"].names == ["alice", "bob", "carol", "dave", "erin"]
    assert len(dataset) == 12
    assert np.bincount(dataset["label"]).tolist() == [3, 1, 2, 4, 2]
    rows = _rows(dataset)
    assert rows[0][0].endswith("alice/00.png") and rows[2][0].endswith("alice/02.jpg")
    assert dataset[1]["image"].mode == "L" and dataset[1]["image"].size == (10, 12)


def test_min_images_and_first_k(faces):
    dataset = load_identity_folder(faces, min_images_per_identity=2)
    assert dataset.features["label"].names == ["alice", "carol", "dave", "erin"]
    first = load_identity_folder(faces, min_images_per_identity=2, max_identities=2)
    assert first.features["label"].names == ["alice", "carol"] and len(first) == 5


def test_random_k_is_seeded_and_deterministic(faces):
    eligible = ["alice", "carol", "dave", "erin"]
    for seed in range(5):
        names = load_identity_folder(faces, 2, 2, "random", seed).features["label"].names
        expected = sorted(eligible[i] for i in np.random.default_rng(seed).choice(4, 2, replace=False))
        assert names == expected
        assert names == load_identity_folder(faces, 2, 2, "random", seed).features["label"].names
    subsets = {tuple(select_identities(dict.fromkeys(eligible, 2), 1, 2, "random", s)) for s in range(10)}
    assert len(subsets) > 1  # the seed matters


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_identities": 6}, "max_identities"),
        ({"max_identities": 0}, "max_identities"),
        ({"identity_subset": "last"}, "identity_subset"),
        ({"min_images_per_identity": 0}, "min_images_per_identity"),
        ({"min_images_per_identity": 9}, "no identity"),
    ],
)
def test_bad_arguments(faces, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_identity_folder(faces, **kwargs)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_identity_folder(tmp_path / "nowhere")


def test_identity_disjoint_split(faces):
    dataset = load_identity_folder(faces)
    split = identity_disjoint_split(dataset, num_validation_identities=2, seed=3)
    train_names = set(split["train"].features["label"].names)
    validation_names = set(split["validation"].features["label"].names)
    assert len(validation_names) == 2 and not train_names & validation_names
    assert train_names | validation_names == set(dataset.features["label"].names)
    for part in split.values():
        # Contiguous labels 0..K-1, and each row keeps its identity (path folder == label name).
        assert sorted(set(part["label"])) == list(range(part.features["label"].num_classes))
        names = part.features["label"].names
        assert all(f"/{names[label]}/" in path for path, label in _rows(part))
    assert len(split["train"]) + len(split["validation"]) == len(dataset)
    again = identity_disjoint_split(dataset, num_validation_identities=2, seed=3)
    assert again["validation"].features["label"].names == split["validation"].features["label"].names
    by_fraction = identity_disjoint_split(dataset, validation_fraction=0.4)  # 0.4 * 5 identities = 2
    assert by_fraction["validation"].features["label"].num_classes == 2


def test_split_of_integer_labels_and_errors(faces):
    plain = datasets.Dataset.from_dict({"label": [7, 7, 3, 9, 9, 9]})
    split = identity_disjoint_split(plain, num_validation_identities=1, seed=0)
    assert sorted(split["train"].features["label"].names + split["validation"].features["label"].names) == ["3", "7", "9"]
    dataset = load_identity_folder(faces)
    with pytest.raises(ValueError, match="exactly one"):
        identity_disjoint_split(dataset)
    with pytest.raises(ValueError, match="exactly one"):
        identity_disjoint_split(dataset, 0.2, 1)
    with pytest.raises(ValueError, match="validation_fraction"):
        identity_disjoint_split(dataset, validation_fraction=1.0)
    with pytest.raises(ValueError, match="num_validation_identities"):
        identity_disjoint_split(dataset, num_validation_identities=5)
    with pytest.raises(ValueError, match=">= 2 identities"):
        identity_disjoint_split(load_identity_folder(faces, max_identities=1), validation_fraction=0.5)


def test_streaming_matches_in_memory(faces):
    for kwargs in ({}, {"min_images_per_identity": 2, "max_identities": 3, "identity_subset": "random", "seed": 1}):
        memory = load_identity_folder(faces, **kwargs)
        stream = stream_identity_folder(faces, **kwargs)
        assert stream.features == memory.features
        assert _rows(stream) == _rows(memory)
        shuffled = _rows(stream.shuffle(seed=0, buffer_size=4))
        assert sorted(shuffled) == sorted(_rows(memory))
    assert next(iter(stream))["image"].size == (10, 12)  # decoded lazily by the Image feature


def test_folder_to_parquet_skips_corrupt(faces, tmp_path):
    (faces / "dave" / "99.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    report = folder_to_parquet(faces, tmp_path / "out", min_images_per_identity=2, shard_size=4, progress=False)
    # the undecodable JPEG, and the fixture's notes.txt (not an image: counted, not dropped without a word)
    assert report.num_images == 11 and report.num_skipped == 2
    assert sorted(report.skipped) == ["alice/notes.txt", "dave/99.jpg"]
    assert len(report.shards) == 3 and report.num_classes == 4
    loaded = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out"), split="train")
    assert loaded.features["label"].names == ["alice", "carol", "dave", "erin"]
    raw = loaded.cast_column("image", datasets.Image(decode=False))
    assert raw[0]["image"]["path"] == "alice/00.png"
    assert raw[0]["image"]["bytes"] == (faces / "alice" / "00.png").read_bytes()
    assert loaded["label"] == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3]


def test_cli_convert_folder(faces, tmp_path, capsys):
    from hf_facerec.cli import main as cli_main

    args = ["convert", str(faces), str(tmp_path / "o"), "--quiet", "--min-images", "3", "--max-identities", "1"]
    assert cli_main(args) == 0
    assert '"format": "folder"' in capsys.readouterr().out
    loaded = datasets.load_dataset("parquet", data_dir=str(tmp_path / "o"), split="train")
    assert loaded.features["label"].names == ["alice"] and len(loaded) == 3
    assert cli_main(["convert", str(tmp_path / "nothing"), str(tmp_path / "o2")]) == 2
    assert "neither a .rec file nor a folder" in capsys.readouterr().err
    assert cli_main(["convert", str(faces), str(tmp_path / "o"), "--quiet"]) == 2  # o/ already holds shards
    assert "overwrite" in capsys.readouterr().err


def test_real_orl(shared_data):
    dataset = load_identity_folder(shared_data / "orl" / "orl_faces")
    assert len(dataset) == 400 and dataset.features["label"].num_classes == 40
    assert np.bincount(dataset["label"]).tolist() == [10] * 40
    image = dataset[0]["image"]
    assert image.mode == "L" and image.size == (92, 112)


def test_real_lfw_identities(shared_data):
    # LFW's documented statistics: 5,749 people, 1,680 of them with two or more images.
    root = shared_data / "lfw" / "images"
    assert load_identity_folder(root).features["label"].num_classes == 5749
    at_least_two = stream_identity_folder(root, min_images_per_identity=2)
    assert at_least_two.features["label"].num_classes == 1680


# ---- the lister: images by content, the symlink policy, the up-front decode check (issue 13) ----------------


def _jpeg_bytes(seed: int, size=(24, 20)) -> bytes:
    import io

    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_images_are_recognised_by_content_not_extension(tmp_path, caplog):
    from hf_facerec.data.folders import scan_identity_folder
    from hf_facerec.data.listing import NOT_AN_IMAGE

    root = tmp_path / "yale"
    (root / "subject01").mkdir(parents=True)
    for mood in ("happy", "sad"):  # the Yale faces: GIFs named subject01.happy, without an image extension
        Image.new("L", (16, 12), 90).save(root / "subject01" / f"subject01.{mood}", format="GIF")
    (root / "subject01" / "passwd.jpg").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with caplog.at_level("WARNING", logger="hf_facerec.data.folders"):
        dataset = load_identity_folder(root)
    assert [Path(p).name for p, _ in _rows(dataset)] == ["subject01.happy", "subject01.sad"]
    assert dataset[0]["image"].size == (16, 12)
    listing = scan_identity_folder(root)
    assert listing.skipped == [(str(root / "subject01" / "passwd.jpg"), NOT_AN_IMAGE)]
    assert "skipped 1 file(s)" in caplog.text and "passwd.jpg: not an image" in caplog.text


def test_links_leaving_the_root_are_refused_unless_followed(tmp_path):
    from hf_facerec.data.folders import scan_identity_folder

    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(_jpeg_bytes(1))  # a real image: the refusal is the policy, not content
    root = tmp_path / "faces"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "alice" / "00.jpg").write_bytes(_jpeg_bytes(2))
    (root / "alice" / "leak.jpg").symlink_to(outside / "secret.jpg")
    (root / "alice" / "passwd.jpg").symlink_to("/etc/passwd")
    (root / "alice" / "gone.jpg").symlink_to(tmp_path / "nothing.jpg")
    (root / "bob" / "same.jpg").symlink_to(root / "alice" / "00.jpg")  # inside the root: followed
    listing = scan_identity_folder(root)
    assert listing.images == {"alice": [str(root / "alice" / "00.jpg")], "bob": [str(root / "bob" / "same.jpg")]}
    reasons = dict(listing.skipped)
    assert set(reasons) == {str(root / "alice" / n) for n in ("leak.jpg", "passwd.jpg", "gone.jpg")}
    assert reasons[str(root / "alice" / "leak.jpg")].startswith(f"symbolic link to {outside / 'secret.jpg'}, outside")
    assert "follow_symlinks=True" in reasons[str(root / "alice" / "passwd.jpg")]
    assert reasons[str(root / "alice" / "gone.jpg")].startswith("broken symbolic link")
    followed = scan_identity_folder(root, follow_symlinks=True)
    assert str(root / "alice" / "leak.jpg") in followed.images["alice"]
    # /etc/passwd is followed on request, and then refused for what it is: not an image.
    assert str(root / "alice" / "passwd.jpg") in dict(followed.skipped)
    # A root of identity-folder links (link_identity_subset) is the user's selection: followed.
    view = tmp_path / "view"
    view.mkdir()
    (view / "alice").symlink_to(root / "alice", target_is_directory=True)
    assert scan_identity_folder(view).images == {"alice": [str(view / "alice" / "00.jpg")]}


def test_a_truncated_jpeg_is_skipped_up_front_and_named(tmp_path, caplog):
    root = tmp_path / "faces"
    for index in range(19):
        (root / f"id{index % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"id{index % 4}" / f"{index:02d}.jpg").write_bytes(_jpeg_bytes(index))
    bad = root / "id3" / "07.jpg"
    bad.write_bytes(bad.read_bytes()[:-200])  # "OSError: image file is truncated" on the first batch, before
    with caplog.at_level("WARNING", logger="hf_facerec.data.folders"):
        dataset = load_identity_folder(root)
        stream = stream_identity_folder(root)
    assert len(dataset) == 18 and str(bad) not in [p for p, _ in _rows(dataset)]
    assert all(row["image"].size == (20, 24) for row in dataset)  # every row decodes: a run cannot die on one
    assert [p for p, _ in _rows(dataset)] == [row["image"]["path"] for row in
                                             stream.cast_column("image", datasets.Image(decode=False))]
    assert f"{bad}: not a readable image (OSError: image file is truncated" in caplog.text
    assert len(load_identity_folder(root, check_images=False)) == 19  # the opt-out lists without decoding


def test_the_check_reselects_identities_that_fall_below_min_images(tmp_path):
    root = tmp_path / "faces"
    for name, count in (("a", 2), ("b", 2), ("c", 2)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            (root / name / f"{index}.jpg").write_bytes(_jpeg_bytes(index))
    (root / "a" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    dataset = load_identity_folder(root, min_images_per_identity=2, max_identities=2)
    assert dataset.features["label"].names == ["b", "c"] and len(dataset) == 4


def test_recursive_listing_lists_a_looping_folder_once(tmp_path):
    from hf_facerec.data.listing import list_folder_images

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jpg").write_bytes(_jpeg_bytes(0))
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    listing = list_folder_images(tmp_path, recursive=True)
    assert listing.images == [str(tmp_path / "a" / "b" / "x.jpg")]
    assert listing.skipped == [(str(tmp_path / "a" / "b" / "up"), f"the same folder as one listed already ({tmp_path / 'a'})")]
