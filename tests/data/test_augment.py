"""Augmentations: known answers, cross-checks against PIL's ImageEnhance, determinism, the batch transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Image
from PIL import Image as PILImage
from PIL import ImageEnhance

from hf_facerec.data import augment as A
from hf_facerec.data.synthetic import make_synthetic_faces


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    rng = np.random.default_rng(0)
    # A smooth colourful image plus texture: not constant, so every transform has something to change.
    yy, xx = np.mgrid[0:48, 0:40]
    base = np.stack([xx * 5, yy * 4, (xx + yy) * 2], axis=2) + rng.integers(0, 40, (48, 40, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


ALL = [A.RandomHorizontalFlip(p=1), A.RandomResizedCropSmall(p=1), A.ColorJitter(p=1), A.RandomBlur(p=1),
       A.RandomLowResolution(p=1), A.RandomErasing(p=1)]


@pytest.mark.parametrize("aug", ALL, ids=lambda a: type(a).__name__)
def test_shape_dtype_inputs_probability_and_determinism(aug, face):
    out = aug(face, np.random.default_rng(1))
    assert out.shape == face.shape and out.dtype == np.uint8 and not np.array_equal(out, face)
    assert np.array_equal(out, aug(face, np.random.default_rng(1)))  # same generator state, same output
    assert np.array_equal(aug(PILImage.fromarray(face), np.random.default_rng(1)), out)  # PIL in, array out
    assert aug(face[:, :, 0], np.random.default_rng(1)).shape == face.shape  # grayscale becomes RGB
    skipped = type(aug)(**{**{k: v for k, v in vars(aug).items() if not k.startswith("_")}, "p": 0.0})
    assert np.array_equal(skipped(face, np.random.default_rng(1)), face)
    with pytest.raises(ValueError, match="uint8"):
        aug(face.astype(np.float32))


def test_held_generator_is_seeded(face):
    a, b = A.RandomErasing(p=1, seed=5), A.RandomErasing(p=1, seed=5)
    assert np.array_equal(a(face), b(face)) and not np.array_equal(a(face), A.RandomErasing(p=1, seed=6)(face))


def test_flip_is_a_mirror(face):
    assert np.array_equal(A.RandomHorizontalFlip(p=1)(face), face[:, ::-1])


def test_full_box_crop_is_identity(face):
    assert np.array_equal(A.RandomResizedCropSmall(scale=(1, 1), ratio=(1, 1), p=1)(face), face)


@pytest.mark.parametrize("knob, enhancer, factor", [("brightness", ImageEnhance.Brightness, 1.4),
                                                    ("contrast", ImageEnhance.Contrast, 0.6),
                                                    ("saturation", ImageEnhance.Color, 0.3)])
def test_color_jitter_matches_pil_image_enhance(face, knob, enhancer, factor):
    """Each knob alone is the same blend PIL's ImageEnhance implements (independent code), up to rounding."""
    kwargs = {"brightness": (1, 1), "contrast": (1, 1), "saturation": (1, 1), knob: (factor, factor)}
    ours = A.ColorJitter(**kwargs, p=1)(face).astype(int)
    theirs = np.asarray(enhancer(PILImage.fromarray(face)).enhance(factor)).astype(int)
    assert np.abs(ours - theirs).max() <= 2


def test_color_jitter_known_answers():
    flat = np.full((4, 4, 3), 100, np.uint8)
    assert np.all(A.ColorJitter((1.5, 1.5), (1, 1), (1, 1), p=1)(flat) == 150)
    assert np.all(A.ColorJitter((3, 3), (1, 1), (1, 1), p=1)(flat) == 255)  # clipped
    two = np.array([[[0, 0, 0], [200, 200, 200]]], np.uint8)
    assert np.all(A.ColorJitter((1, 1), (0, 0), (1, 1), p=1)(two) == 100)  # contrast 0: the mean gray
    with pytest.raises(ValueError):
        A.ColorJitter(brightness=2.0)  # factor range (-1, 3) has a negative minimum
    with pytest.raises(ValueError):
        A.ColorJitter(contrast=(0.5, 0.2))


def test_blur_impulse_response_has_the_requested_std():
    impulse = np.zeros((41, 41, 3), np.uint8)
    impulse[20, 20] = 255
    out = A.RandomBlur(radius=(2.0, 2.0), p=1)(impulse)[:, :, 0].astype(float)
    weights = out / out.sum()
    offsets = np.arange(41) - 20
    std_x = np.sqrt((weights.sum(0) * offsets**2).sum())
    std_y = np.sqrt((weights.sum(1) * offsets**2).sum())
    assert abs(std_x - 2.0) < 0.35 and abs(std_y - 2.0) < 0.35
    assert np.array_equal(A.RandomBlur(p=1)(np.full((9, 9, 3), 77, np.uint8)), np.full((9, 9, 3), 77, np.uint8))


def test_low_resolution_removes_fine_detail():
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)
    out = A.RandomLowResolution(scale=(0.5, 0.5), p=1)(checker, np.random.default_rng(0))[:, :, 0].astype(float)
    assert np.abs(np.diff(out, axis=1)).mean() < 0.5 * 255
    with pytest.raises(ValueError):
        A.RandomLowResolution(scale=(0, 0.5))


def test_erasing_fills_one_box_of_the_requested_area():
    white = np.full((40, 50, 3), 255, np.uint8)
    for seed in range(5):
        out = A.RandomErasing(scale=(0.1, 0.1), ratio=(0.5, 2.0), value=0, p=1)(white, np.random.default_rng(seed))
        ys, xs = np.nonzero(out[:, :, 0] == 0)
        box = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert np.all(box == 0) and abs(len(ys) - 200) <= 25
    with pytest.raises(ValueError):
        A.RandomErasing(value="zeros")


def test_compose_shares_one_generator_and_default_recipes(face):
    pipeline = A.default_train_augmentation("medium")
    outs = [pipeline(face, np.random.default_rng(3)) for _ in range(2)]
    assert np.array_equal(*outs) and outs[0].shape == face.shape
    assert np.array_equal(A.Compose([])(face), face)
    assert np.array_equal(A.Compose([lambda im: im[::-1]])(face), face[::-1])  # plain callables work too
    assert len(A.default_train_augmentation("light").transforms) == 3
    with pytest.raises(ValueError, match="strength"):
        A.default_train_augmentation("heavy")
    with pytest.raises(ValueError):
        A.RandomHorizontalFlip(p=1.5)


class _StandInProcessor:
    """The call signature of FaceRecImageProcessor: images -> {"pixel_values": (B, 3, H, W)} in [-1, 1]."""

    def __call__(self, images, return_tensors="pt"):
        arrays = np.stack([np.asarray(im, np.float32) for im in images])
        return {"pixel_values": torch.from_numpy(arrays / 127.5 - 1).permute(0, 3, 1, 2)}


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(num_identities=3, images_per_identity=2, image_size=40, seed=0)


def test_train_transform_with_set_transform(faces):
    plain = faces.with_transform(A.make_train_transform(_StandInProcessor()))
    batch = plain[:4]
    assert batch["pixel_values"].shape == (4, 3, 40, 40) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 0, 1, 1]
    expected = np.asarray(faces[1]["image"], np.float32) / 127.5 - 1
    np.testing.assert_allclose(batch["pixel_values"][1].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    augmented = faces.with_transform(A.make_train_transform(_StandInProcessor(), A.RandomHorizontalFlip(p=1)))
    np.testing.assert_allclose(augmented[:4]["pixel_values"].numpy(), batch["pixel_values"].flip(-1).numpy())
    loader = torch.utils.data.DataLoader(augmented, batch_size=3)
    assert next(iter(loader))["pixel_values"].shape == (3, 3, 40, 40)


def test_train_transform_undecoded_images_no_labels_and_errors(faces):
    raw = faces.cast_column("image", Image(decode=False))
    out = raw.with_transform(A.make_train_transform(_StandInProcessor(), label_column=None))[:2]
    assert set(out) == {"pixel_values"} and out["pixel_values"].shape == (2, 3, 40, 40)
    with pytest.raises(ValueError, match="column 'face'"):
        faces.with_transform(A.make_train_transform(_StandInProcessor(), image_column="face"))[:2]
    with pytest.raises(ValueError):
        A.make_train_transform("not a processor")


def test_transform_generator_follows_torch_seed(faces):
    """DataLoader workers get a fresh torch seed per worker and epoch: the augmentation stream follows it."""
    transform = A.make_train_transform(_StandInProcessor(), A.default_train_augmentation("medium"))
    batch = {"image": [faces[0]["image"]] * 4, "label": [0] * 4}
    torch.manual_seed(0)
    first = transform(batch)["pixel_values"]
    torch.manual_seed(0)
    fresh = A.make_train_transform(_StandInProcessor(), A.default_train_augmentation("medium"))
    assert torch.equal(fresh(batch)["pixel_values"], first)
    torch.manual_seed(1)
    assert not torch.equal(transform(batch)["pixel_values"], first)


def test_with_the_real_face_rec_image_processor(faces):
    try:
        from hf_facerec.models.image_processing_facerec import FaceRecImageProcessor
    except ImportError:
        try:
            from hf_facerec.models.facerec.image_processing_facerec import FaceRecImageProcessor
        except ImportError:
            pytest.skip("FaceRecImageProcessor not written yet")
    transform = A.make_train_transform(FaceRecImageProcessor(), A.default_train_augmentation("light"))
    out = faces.with_transform(transform)[:2]
    assert out["pixel_values"].ndim == 4 and out["pixel_values"].shape[:2] == (2, 3)
    assert out["pixel_values"].dtype == torch.float32 and out["labels"].tolist() == [0, 0]
