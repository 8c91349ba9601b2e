"""ONNX export: onnxruntime matches torch (< 1e-4) on batches of other sizes than traced; the ORT embedder matches
FaceEmbedder for every flip mode; CLI; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec import FaceEmbedder
from hf_facerec.cli import main
from hf_facerec.hub.onnx import OnnxExportError, OnnxFaceEmbedder, export_onnx

from . import tiny_facerec

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_model")
    model = tiny_facerec(seed=1)
    model.save_pretrained(folder)
    path = export_onnx(model, folder / "onnx" / "model.onnx")
    return model, folder, path


def test_dynamic_batch_matches_torch(exported):
    model, _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch" and session.get_inputs()[0].shape[1:] == [3, 112, 96]
    for batch in (1, 5):
        pixel_values = torch.randn(batch, 3, 112, 96)
        with torch.no_grad():
            expected = model(pixel_values).embeddings.numpy()
        got = session.run(["embeddings"], {"pixel_values": pixel_values.numpy()})[0]
        assert got.shape == (batch, 16) and np.max(np.abs(got - expected)) < 1e-4
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("flip", ["none", "sum", "concat"])
def test_onnx_embedder_matches_face_embedder(exported, flip):
    model, folder, _ = exported
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8)) for _ in range(5)]
    expected = FaceEmbedder(model, flip=flip, batch_size=2)(images)
    got = OnnxFaceEmbedder.from_pretrained(folder, flip=flip, batch_size=3)(images)
    assert got.shape == expected.shape == (5, 32 if flip == "concat" else 16)
    assert np.max(np.abs(got - expected)) < 1e-4
    assert isinstance(OnnxFaceEmbedder.from_pretrained(folder)(images[:1], return_tensors="pt"), torch.Tensor)


def test_cli_export_writes_a_checked_file(tmp_path):
    tiny_facerec(seed=2).save_pretrained(tmp_path)
    assert main(["export", "onnx", "--model", str(tmp_path)]) == 0
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size > 1000


def test_check_failure_and_bad_inputs_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="FaceRecModel"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="does not exist"):
        OnnxFaceEmbedder(tmp_path / "missing.onnx")
    model = tiny_facerec(seed=3)
    with pytest.raises(OnnxExportError, match="differs from torch"):
        export_onnx(model, tmp_path / "m.onnx", atol=0.0)  # nothing is exactly equal: the check must fire
