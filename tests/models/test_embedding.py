"""FaceEmbedder: batching, flip TTA modes, paths and bytes in, agreement with a direct forward; photos detected and
aligned by default (real photos: skips without ../shared)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel
from hf_facerec.data.align import TEMPLATE_96x112, NoFaceDetectedError
from hf_facerec.data.detectors import Detection, FaceDetector

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


# ---- detection and alignment of photos (FaceInput) -------------------------------------------------------------


class _Stub(FaceDetector):
    """Finds one face whose landmarks are the 96x112 template scaled by 2 (a 192x224 face at the origin)."""

    name = "stub"

    def __init__(self, faces=True):
        self.faces, self.calls = faces, 0

    def _detect(self, rgb):
        self.calls += 1
        return [Detection([0, 0, 192, 224], 0.9, TEMPLATE_96x112 * 2)] if self.faces else []


def _mobile_model(face_size=(112, 96)):
    from hf_facerec.models import MobileFaceNetConfig

    torch.manual_seed(0)
    backbone = MobileFaceNetConfig(image_size=list(face_size), stem_size=8, feature_size=32, embedding_size=16,
                                   bottleneck_settings=[[2, 8, 1, 2], [2, 16, 1, 2]])
    return FaceRecModel(FaceRecConfig(backbone_config=backbone, embedding_size=16, image_size=list(face_size),
                                      embedding_head="linear")).eval()


def test_crops_of_the_face_size_skip_detection_and_photos_are_aligned_to_the_models_template():
    model = _mobile_model()  # face_size (112, 96): the 96x112 template, not the 112x112 one
    stub = _Stub()
    embedder = FaceEmbedder(model, detector=stub)
    rng = np.random.default_rng(1)
    crop = Image.fromarray(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8))
    embedder([crop, np.asarray(crop)])
    assert stub.calls == 0 and embedder.detector_name == "stub"
    # A 400x300 photo whose face fills the top-left 192x224: aligned, it is that region halved, i.e. the crop.
    photo = np.zeros((300, 400, 3), dtype=np.uint8)
    photo[:224, :192] = np.asarray(crop.resize((192, 224), Image.Resampling.NEAREST))
    aligned, info = embedder.faces.face(photo)
    assert stub.calls == 1 and aligned.size == (96, 112) and info["detector"] == "stub" and info["aligned"]
    assert np.abs(np.asarray(aligned, np.int16) - np.asarray(crop, np.int16)).mean() < 40  # not squashed/shifted
    np.testing.assert_allclose(embedder([photo]), embedder([aligned]), atol=1e-6)


def test_photo_without_a_face_names_the_input_and_detector_none_warns(model, tmp_path):
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    crop = Image.new("RGB", (112, 112))
    with pytest.raises(NoFaceDetectedError, match=r"images\[1\] \('.*blank.png'\): no face detected by the stub"):
        photo.save(tmp_path / "blank.png")
        FaceEmbedder(model, detector=_Stub(faces=False))([crop, str(tmp_path / "blank.png")])
    with pytest.warns(UserWarning, match="detector=None: the whole image is resized"):
        resized = FaceEmbedder(model, detector=None)([photo])
    assert resized.shape == (1, 16)
    # an explicit preprocess (the benchmark runner's path) replaces detection entirely
    stub = _Stub()
    FaceEmbedder(model, detector=stub, preprocess=lambda image: image)([photo])
    assert stub.calls == 0



def test_raw_photos_get_the_aligned_score_not_the_whole_photo_resized(shared_data, shared_models, mobilefacenet_dir,
                                                                      monkeypatch):
    """The README's notebook snippet on ordinary photos: obama vs biden scored 0.48-0.51 when the whole photo
    was resized; detected + aligned (the default) they are near 0 (YuNet + flip concat: 0.020, as measured
    with LFW-style alignment), while two photos of Obama stay high."""
    pytest.importorskip("dlib")
    monkeypatch.delenv("HF_FACEREC_YUNET", raising=False)
    folder = mobilefacenet_dir
    samples = shared_data / "samples"
    photos = [str(samples / name) for name in ("obama.jpg", "biden.jpg", "obama2.jpg")]
    embedder = FaceEmbedder.from_pretrained(folder)
    x = embedder(photos)
    assert embedder.detector_name == "dlib"
    assert float(x[0] @ x[1]) < 0.1 and float(x[0] @ x[2]) > 0.6, (x[0] @ x[1], x[0] @ x[2])
    with pytest.warns(UserWarning):
        resized = FaceEmbedder.from_pretrained(folder, detector=None)(photos[:2])
    assert float(resized[0] @ resized[1]) > 0.4  # the old behaviour, kept reachable and warned about
    yunet = sorted((shared_models / "yunet").glob("*.onnx"))
    if yunet:
        concat = FaceEmbedder.from_pretrained(folder, detector_model=yunet[0], flip="concat")(photos[:2])
        assert float(concat[0] @ concat[1]) == pytest.approx(0.020, abs=0.01)
