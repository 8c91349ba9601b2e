"""FaceEmbedder: batching, flip TTA modes, paths and bytes in, agreement with a direct forward."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel

from .tiny_backbones import tiny_backbone_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=16)).eval()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(5)]


def test_batches_agree_with_one_forward(model, images):
    embeddings = FaceEmbedder(model, batch_size=2)(images)
    assert embeddings.shape == (5, 16) and embeddings.dtype == np.float32
    pixel_values = torch.stack(
        [torch.from_numpy((np.asarray(im, np.float32).transpose(2, 0, 1) / 255 - 0.5) / 0.5) for im in images]
    )
    with torch.no_grad():
        direct = model(pixel_values).embeddings.numpy()
    np.testing.assert_allclose(embeddings, direct, atol=1e-5)


def test_flip_modes(model, images):
    plain = FaceEmbedder(model)(images, return_tensors="pt")
    summed = FaceEmbedder(model, flip="sum")(images, return_tensors="pt")
    concat = FaceEmbedder(model, flip="concat")(images, return_tensors="pt")
    assert summed.shape == (5, 16) and concat.shape == (5, 32)
    torch.testing.assert_close(concat.norm(dim=-1), torch.ones(5))
    assert not torch.allclose(plain, summed)
    # An image and its mirror get the same flip-summed embedding.
    mirrored = [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images]
    torch.testing.assert_close(FaceEmbedder(model, flip="sum")(mirrored, return_tensors="pt"), summed, atol=1e-5, rtol=0)


def test_paths_and_bytes(model, images, tmp_path):
    path = tmp_path / "face.png"
    images[0].save(path)
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG")
    embeddings = FaceEmbedder(model)([str(path), buffer.getvalue(), images[0]])
    np.testing.assert_allclose(embeddings[0], embeddings[2], atol=1e-6)
    np.testing.assert_allclose(embeddings[1], embeddings[2], atol=1e-6)


def test_from_pretrained_and_bad_arguments(model, images, tmp_path):
    model.save_pretrained(tmp_path)
    embedder = FaceEmbedder.from_pretrained(tmp_path)
    np.testing.assert_allclose(embedder(images), FaceEmbedder(model)(images), atol=1e-6)
    with pytest.raises(ValueError, match="flip"):
        FaceEmbedder(model, flip="both")
    with pytest.raises(ValueError, match="No images"):
        FaceEmbedder(model)([])
