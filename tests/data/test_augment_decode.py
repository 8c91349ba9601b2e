"""The training transform decodes with load_rgb's conversions (16-bit, alpha, palette, EXIF), as inference does."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec.data import augment as A
from hf_facerec.data.images import InvalidImageError, load_rgb


def _raw_processor(images, return_tensors="pt"):
    """Stand-in processor: the (B, H, W, 3) uint8 pixels it was handed, untouched."""
    return {"pixel_values": torch.from_numpy(np.stack([np.asarray(im) for im in images]))}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Files whose decoding differs between a plain ``.convert("RGB")`` and load_rgb."""
    folder = tmp_path_factory.mktemp("hostile")
    sixteen = Image.fromarray(np.full((8, 8), 32896, np.uint16))  # mid grey in 16 bits: 128, not white
    sixteen.save(folder / "sixteen.png")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (200, 40, 40, 255)  # right half transparent black: white once composited
    Image.fromarray(rgba).save(folder / "rgba.png")
    palette = Image.new("P", (8, 8))
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    palette.putdata([0, 1] * 32)
    palette.info["transparency"] = 1
    palette.save(folder / "palette.png")
    turned = np.zeros((4, 8, 3), np.uint8)
    turned[0, 0] = 255
    image = Image.fromarray(turned)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    image.save(folder / "turned.jpg", exif=exif, quality=100)
    return folder


NAMES = ["sixteen.png", "rgba.png", "palette.png", "turned.jpg"]


def test_datasets_rows_dicts_and_paths_decode_as_load_rgb(hostile):
    paths = [str(hostile / name) for name in NAMES]
    expected = [np.asarray(load_rgb(path)) for path in paths]
    assert expected[0].mean() == 128 and expected[1][:, 4:].mean() == 255  # the known answers
    transform = A.make_train_transform(_raw_processor, label_column=None)
    decoded = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    raw = decoded.cast_column("image", datasets.Image(decode=False))
    for rows in (decoded, raw, [{"image": paths}]):
        for i, path in enumerate(paths):
            batch = rows[i : i + 1] if isinstance(rows, datasets.Dataset) else {"image": [path]}
            np.testing.assert_array_equal(transform(batch)["pixel_values"][0].numpy(), expected[i], err_msg=path)
    # the augmentations themselves take a PIL image of any mode the same way
    flip = A.RandomHorizontalFlip(p=1)
    np.testing.assert_array_equal(flip(Image.open(paths[0]), np.random.default_rng(0)), expected[0][:, ::-1])


def test_bad_training_image_names_the_file(hostile, tmp_path):
    cut = tmp_path / "cut.png"
    cut.write_bytes((hostile / "rgba.png").read_bytes()[:40])
    transform = A.make_train_transform(_raw_processor, label_column=None)
    row = {"bytes": cut.read_bytes(), "path": str(cut)}
    with pytest.raises(InvalidImageError, match="cut.png"):
        transform({"image": [row]})
    with pytest.raises(InvalidImageError, match="float pixels must lie in"):
        transform({"image": [np.full((4, 4, 3), 200.0, np.float32)]})  # 0-255 floats are not clipped to white


def test_conversion_checks_images_with_the_training_decoder(tmp_path):
    """A 56 MP 1-bit PNG (a few KB) decodes with plain PIL but not within load_rgb's max_pixels: conversion skips
    it instead of writing a row training would refuse; a good image still passes."""
    from hf_facerec.data.convert import _decodes

    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 7000)).save(bomb)
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    assert _decodes(good.read_bytes()) and not _decodes(bomb.read_bytes())


def test_with_train_transform_decodes_a_decoding_column_itself(hostile, tmp_path):
    """A user's decoding Image column (map-style or streaming): the transform, not datasets, decodes each row, so
    the pixels are load_rgb's and a truncated file or a decompression bomb is refused naming the file."""
    cut = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), (9, 99, 199)).save(cut)
    cut.write_bytes(cut.read_bytes()[:-200])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 10_000)).save(bomb)  # 200 MP in a few KB: past PIL's bomb limit
    paths = [str(hostile / "sixteen.png"), str(cut), str(bomb)]
    transform = A.make_train_transform(_raw_processor, label_column=None)
    rows = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    stream = rows.to_iterable_dataset()
    rows = A.with_train_transform(rows, transform)
    assert rows[0]["pixel_values"].float().mean() == 128
    for i, name in ((1, "cut.jpg"), (2, "bomb.png")):
        with pytest.raises(InvalidImageError, match=name):
            rows[i]
    good = next(iter(A.with_train_transform(stream.take(1), transform)))
    assert set(good) == {"pixel_values"} and good["pixel_values"].float().mean() == 128
    with pytest.raises(InvalidImageError, match="cut.jpg"):  # a batched map: the first batch holds all three
        next(iter(A.with_train_transform(stream, transform)))
