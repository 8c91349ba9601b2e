"""FaceEmbedder inputs decode through load_rgb (dtypes, NaN, EXIF) and no NaN embedding ever comes out."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel
from hf_facerec.data.images import InvalidImageError, load_rgb
from hf_facerec.data.synthetic import make_synthetic_faces
from hf_facerec.embedding import NonFiniteEmbeddingError
from hf_facerec.models import FaceRecImageProcessor

from .tiny_backbones import tiny_backbone_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=16)).eval()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.asarray(make_synthetic_faces(num_identities=1, images_per_identity=1, image_size=112, seed=0)[0]["image"])


def _identity(image):
    return image


@pytest.mark.parametrize("preprocess", [None, _identity], ids=["detect-or-crop", "own-preprocess"])
def test_float_and_uint16_arrays_embed_like_uint8(model, face, preprocess):
    embedder = FaceEmbedder(model, detector=None, preprocess=preprocess)
    reference = embedder([face])[0]
    for array in (face.astype(np.float32) / 255, face.astype(np.uint16) * 257, face.astype(np.int64)):
        assert float(embedder([array])[0] @ reference) > 0.999, array.dtype


def test_the_processor_alone_decodes_arrays_like_load_rgb(face):
    processor = FaceRecImageProcessor()
    reference = processor(images=[face], return_tensors="np")["pixel_values"]
    for array in (face.astype(np.float32) / 255, face.astype(np.uint16) * 257):  # no double rescale of [0, 1] floats
        np.testing.assert_allclose(processor(images=[array], return_tensors="np")["pixel_values"], reference, atol=1e-6)
    rgba = np.zeros((112, 112, 4), np.uint8)  # transparent black composites on white, as load_rgb does
    np.testing.assert_allclose(processor(images=[rgba], return_tensors="np")["pixel_values"], 1.0)


@pytest.mark.parametrize("preprocess", [None, _identity], ids=["detect-or-crop", "own-preprocess"])
def test_nan_pixel_and_0_255_floats_are_refused_naming_the_input(model, face, preprocess):
    embedder = FaceEmbedder(model, detector=None, preprocess=preprocess)
    nan = face.astype(np.float32) / 255
    nan[10, 20, 1] = np.nan
    with pytest.raises(InvalidImageError, match=r"images\[1\] \(ndarray\): image array has NaN"):
        embedder([face, nan])
    with pytest.raises(InvalidImageError, match=r"images\[0\].*float pixels must lie in \[0, 1\], got"):
        embedder([face.astype(np.float32)])


def test_pil_input_gets_its_exif_orientation_with_any_preprocess(model, face, tmp_path):
    raw = np.ascontiguousarray(face[:, ::-1].transpose(1, 0, 2))  # stored turned; EXIF says turn it back
    image = Image.fromarray(raw)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    image.save(path, exif=exif, quality=95)
    upright = np.asarray(load_rgb(path))
    assert upright.shape == face.shape
    for preprocess in (None, _identity):
        embedder = FaceEmbedder(model, detector=None, preprocess=preprocess)
        got = embedder([Image.open(path), upright])
        np.testing.assert_allclose(got[0], got[1], atol=1e-6)


def test_nan_weights_raise_instead_of_a_nan_embedding(model, face):
    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(p for name, p in broken.named_parameters() if "embeddings" in name).fill_(float("nan"))
    for flip in ("none", "sum", "concat"):
        with pytest.raises(NonFiniteEmbeddingError, match="NaN or infinite features for 2 of 2 images.*weights"):
            FaceEmbedder(broken, detector=None, flip=flip)([face, face])


def test_tiny_image_std_raises_naming_the_processor(model, face):
    processor = FaceRecImageProcessor(image_std=[1e-40] * 3)  # > 0, so accepted, but the pixels overflow to inf
    with pytest.raises(NonFiniteEmbeddingError, match="processed pixels already hold NaN/inf.*image_std"):
        FaceEmbedder(model, processor, detector=None)([face])
    processor.image_std = [0.0] * 3  # set after construction: refused when called, before dividing by it
    with pytest.raises(ValueError, match=r"image_std must be finite numbers > 0, got \[0.0, 0.0, 0.0\]"):
        FaceEmbedder(model, processor, detector=None)([face])


def test_evaluate_embedding_path_raises_too(model, face):
    from hf_facerec.benchmarks.pipeline import AlignSpec, embed_aligned

    broken = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in broken.parameters():
            parameter.fill_(float("inf"))
    embedder = FaceEmbedder(broken, detector=None, flip="sum")
    with pytest.raises(NonFiniteEmbeddingError):
        embed_aligned(embedder, [face, face], AlignSpec((112, 112)), num_workers=0, progress=False)
