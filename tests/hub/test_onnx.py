"""ONNX export: onnxruntime matches torch on batches of other sizes than traced; the check runs on face-like crops
(synthetic faces, the user's folder, real photos when ../shared is there) and reports what it measured; the ORT
embedder matches FaceEmbedder for every flip mode; CLI; a folder that is not a FaceRec model is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec import FaceEmbedder
from hf_facerec.cli import main
from hf_facerec.models import FaceRecImageProcessor
from hf_facerec.hub.onnx import (DEFAULT_ATOL, OnnxExportError, OnnxFaceEmbedder, check_onnx, export_onnx,
                                 synthetic_face_crops)

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


def test_cli_export_reports_what_it_measured_on_faces(tmp_path, capsys):
    tiny_facerec(seed=2).save_pretrained(tmp_path)
    assert main(["export", "onnx", "--model", str(tmp_path)]) == 0
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "max |torch - onnxruntime| = " in out and "min cosine" in out and "on 24 synthetic faces" in out
    assert "within" not in out  # no claim: the measured figures


def test_check_on_synthetic_faces_measures_diff_and_cosine(exported):
    model, folder, path = exported
    crops = synthetic_face_crops((112, 96), count=3)
    assert [c.size for c in crops] == [(96, 112)] * 3 and np.asarray(crops[0]).std() > 20  # a face, not a blank
    result = check_onnx(model, path)
    assert result.num_images == 24 and result.source == "synthetic faces" and result.passed
    assert 0 < result.max_abs_diff < DEFAULT_ATOL and 0.99999 < result.min_cosine <= 1.0 + 1e-6
    # by hand on the same crops, in the check's batches of 8: torch vs onnxruntime
    processor = FaceRecImageProcessor(size={"height": 112, "width": 96})
    crops, session, diffs = synthetic_face_crops((112, 96)), ort.InferenceSession(str(path)), []
    for start in range(0, 24, 8):
        pixels = processor(images=crops[start:start + 8], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            expected = model(pixels).embeddings.numpy()
        diffs.append(np.abs(session.run(["embeddings"], {"pixel_values": pixels.numpy()})[0] - expected).max())
    assert result.max_abs_diff == pytest.approx(float(max(diffs)), rel=1e-6)


def test_cli_checks_on_the_users_aligned_crops(tmp_path, capsys):
    tiny_facerec(seed=2).save_pretrained(tmp_path / "model")
    (tmp_path / "crops" / "a").mkdir(parents=True)
    for i, crop in enumerate(synthetic_face_crops((112, 96), count=5, seed=7)):
        crop.save(tmp_path / "crops" / ("a" if i % 2 else "") / f"{i}.png")
    assert main(["export", "onnx", "--model", str(tmp_path / "model"), "--check-images", str(tmp_path / "crops")]) == 0
    assert f"on 5 images of {tmp_path / 'crops'}" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["export", "onnx", "--model", str(tmp_path / "model"), "--check-images", str(tmp_path / "empty")]) == 2
    assert "holds no images" in capsys.readouterr().err


def test_a_folder_that_is_not_a_facerec_model_is_refused_in_one_line(tmp_path, capsys):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=16)).save_pretrained(tmp_path / "vit")
    capsys.readouterr()  # the save's progress bars
    with pytest.raises(ValueError, match=r"holds a 'vit' model, not a FaceRec model"):
        export_onnx(tmp_path / "vit", tmp_path / "x.onnx")
    assert main(["export", "onnx", "--model", str(tmp_path / "vit"), "--output", str(tmp_path / "x.onnx")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "not a FaceRec model" in lines[0] and str(tmp_path / "vit") in lines[0]
    assert "UNEXPECTED" not in captured.out + captured.err and "nan" not in captured.err
    assert not (tmp_path / "x.onnx").exists()
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="PEFT adapter"):
        export_onnx(tmp_path / "adapter", tmp_path / "x.onnx")


def test_real_photos_aligned_pass_the_check(shared_data, shared_models, mobilefacenet_dir, tmp_path):
    """What the user did: the converted MobileFaceNet checkpoint, real photos aligned with YuNet."""
    from hf_facerec.data.align import FaceAligner

    yunet = sorted((shared_models / "yunet").glob("*.onnx"))
    checkpoint = shared_models / "mobilefacenet_casia" / "068.ckpt"
    if not yunet or not checkpoint.is_file():
        pytest.skip("needs the MobileFaceNet checkpoint and YuNet in ../shared/models")
    pytest.importorskip("cv2")
    aligner = FaceAligner.for_face_size((112, 96), detector_model=yunet[0])
    (tmp_path / "crops").mkdir()
    for photo in sorted((shared_data / "samples").glob("*.jpg")):
        aligner(photo).save(tmp_path / "crops" / f"{photo.stem}.png")
    path = export_onnx(mobilefacenet_dir, tmp_path / "model.onnx", check=False)
    result = check_onnx(mobilefacenet_dir, path, tmp_path / "crops")
    assert result.num_images == 6 and result.passed and result.min_cosine > 0.99999, str(result)


def test_check_failure_and_bad_inputs_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="FaceRecModel"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="does not exist"):
        OnnxFaceEmbedder(tmp_path / "missing.onnx")
    model = tiny_facerec(seed=3)
    with pytest.raises(OnnxExportError, match=r"differs from torch: max \|torch - onnxruntime\| = .* min cosine"):
        export_onnx(model, tmp_path / "m.onnx", atol=0.0)  # nothing is exactly equal: the check must fire
    assert main(["export", "onnx", "--model", str(_saved(model, tmp_path / "saved")), "--atol", "0"]) == 2


def _saved(model, folder):
    model.save_pretrained(folder)
    return folder
