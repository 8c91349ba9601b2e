"""FaceRecImageProcessor: exact pixel arithmetic, resizing, flip TTA, grayscale input, save/load."""

import numpy as np
import pytest
from PIL import Image

from hf_facerec import FaceRecImageProcessor


def test_values_are_scaled_to_minus_one_one_exactly():
    array = np.array([[[0, 127, 255]]], dtype=np.uint8).repeat(112, 0).repeat(112, 1)
    out = FaceRecImageProcessor()(images=[Image.fromarray(array)], return_tensors="np")["pixel_values"]
    assert out.shape == (1, 3, 112, 112) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [-1.0, 127 / 127.5 - 1.0, 1.0], atol=1e-6)


def test_resizes_other_sizes_and_keeps_aligned_crops_untouched():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    photo = rng.integers(0, 256, (250, 180, 3), dtype=np.uint8)
    out = FaceRecImageProcessor()(images=[crop, photo], return_tensors="np")["pixel_values"]
    assert out.shape == (2, 3, 112, 112)
    np.testing.assert_allclose(out[0], (crop.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_rectangular_face_size():
    processor = FaceRecImageProcessor(size={"height": 112, "width": 96})
    out = processor(images=[np.zeros((112, 112, 3), np.uint8)], return_tensors="pt")["pixel_values"]
    assert tuple(out.shape) == (1, 3, 112, 96)


def test_flip_tta_returns_the_mirrored_batch():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(2)]
    out = FaceRecImageProcessor()(images=images, return_tensors="pt", flip_tta=True)
    assert (out["pixel_values_flipped"] == out["pixel_values"].flip(-1)).all()


def test_grayscale_and_rgba_become_three_channels():
    gray = Image.fromarray(np.full((112, 112), 200, np.uint8), mode="L")
    rgba = Image.fromarray(np.full((112, 112, 4), 200, np.uint8), mode="RGBA")
    out = FaceRecImageProcessor()(images=[gray, rgba], return_tensors="np")["pixel_values"]
    assert out.shape == (2, 3, 112, 112)
    np.testing.assert_allclose(out[0], 200 / 127.5 - 1.0, atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    processor = FaceRecImageProcessor(size={"height": 112, "width": 96}, flip_tta=True)
    processor.save_pretrained(tmp_path)
    loaded = FaceRecImageProcessor.from_pretrained(tmp_path)
    assert loaded.size.height == 112 and loaded.size.width == 96 and loaded.flip_tta is True


def test_mixed_sizes_without_resize_are_rejected():
    images = [np.zeros((112, 112, 3), np.uint8), np.zeros((100, 100, 3), np.uint8)]
    with pytest.raises(ValueError, match="share one size"):
        FaceRecImageProcessor(do_resize=False)(images=images, return_tensors="np")
