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


def test_a_photo_not_a_crop_is_resized_with_a_warning_once(monkeypatch):
    """The built-in image-feature-extraction pipeline (and any direct call) hands photos to the processor: it
    must say it resized without finding the face, once; crops of the face size or a close aspect stay quiet."""
    from hf_facerec.models import image_processing_facerec as module

    said = []
    monkeypatch.setattr(module.logger, "warning", lambda message: said.append(message))
    processor = FaceRecImageProcessor(size={"height": 112, "width": 96})
    processor(images=[np.zeros((112, 96, 3), np.uint8), np.zeros((120, 100, 3), np.uint8)], return_tensors="np")
    assert said == []  # the crop itself, and a near-crop of the same aspect
    photo = np.zeros((300, 400, 3), np.uint8)
    out = processor(images=[photo, photo], return_tensors="np")["pixel_values"]
    assert out.shape == (2, 3, 112, 96) and len(said) == 1
    assert "400x300" in said[0] and "face-feature-extraction" in said[0]
    processor(images=[photo], return_tensors="np")
    assert len(said) == 1  # once per processor
    FaceRecImageProcessor()(images=[np.zeros((250, 250, 3), np.uint8)], return_tensors="np")
    assert len(said) == 2 and "250x250" in said[1]  # same aspect, but a whole LFW photo (> 2x the crop)
