"""Both pipelines refuse what FaceEmbedder refuses: NaN pixels, a model giving NaN features, a hostile processor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

import hf_facerec.hub  # noqa: F401  (registers the pipelines)
from hf_facerec.data.images import InvalidImageError
from hf_facerec.embedding import NonFiniteEmbeddingError
from hf_facerec.models import FaceRecImageProcessor

from . import tiny_facerec


def _crop(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (112, 96, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory):
    """A saved model whose weights hold NaN (as a corrupt or diverged checkpoint would)."""
    folder = tmp_path_factory.mktemp("nan_model")
    model = tiny_facerec(seed=1)
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    model.save_pretrained(folder)
    FaceRecImageProcessor(size={"height": 112, "width": 96}).save_pretrained(folder)
    return folder


def test_nan_model_raises_in_both_pipelines(broken_dir):
    """Saved: refused when the pipeline loads it, naming the weight. Given as a model object (weights broken in
    memory): each pipeline raises instead of returning a NaN embedding or score."""
    for task in ("face-feature-extraction", "face-verification"):
        with pytest.raises(ValueError, match="backbone.*holds NaN or infinite values"):
            pipeline(task, model=str(broken_dir), align="never")
    model = tiny_facerec(seed=1)
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    processor = FaceRecImageProcessor(size={"height": 112, "width": 96})
    extract = pipeline("face-feature-extraction", model=model, image_processor=processor, align="never")
    with pytest.raises(NonFiniteEmbeddingError, match="NaN or infinite features"):
        extract(_crop())
    verify = pipeline("face-verification", model=model, image_processor=processor, align="never", flip="sum")
    with pytest.raises(NonFiniteEmbeddingError, match="NaN or infinite features"):
        verify(_crop(0), _crop(1))


def test_float_arrays_score_like_uint8_and_nan_pixels_are_refused(tmp_path):
    model = tiny_facerec(seed=2)
    model.save_pretrained(tmp_path)
    FaceRecImageProcessor(size={"height": 112, "width": 96}).save_pretrained(tmp_path)
    extract = pipeline("face-feature-extraction", model=str(tmp_path), align="never")
    reference = np.asarray(extract(_crop()))
    np.testing.assert_allclose(np.asarray(extract(_crop().astype(np.float32) / 255)), reference, atol=1e-5)
    nan = _crop().astype(np.float32) / 255
    nan[0, 0, 0] = np.nan
    with pytest.raises(InvalidImageError, match=r"image \(ndarray\): image array has NaN"):
        extract(nan)


def test_hostile_preprocessor_size_is_refused_when_the_pipeline_loads(tmp_path):
    tiny_facerec(seed=3).save_pretrained(tmp_path)
    FaceRecImageProcessor(size={"height": 112, "width": 96}).save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    config = json.loads(path.read_text())
    config["size"] = {"height": 100000, "width": 100000}  # a 3 TB batch if it were believed
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"size\['height'\] must be a positive int of at most 4096 pixels, got 100000"):
        pipeline("face-feature-extraction", model=str(tmp_path))
