"""face-verification / face-feature-extraction pipelines on tiny models (cross-checked with FaceEmbedder) and,
skipping without ../shared, on the sample photos with the converted MobileFaceNet (see test_real_samples)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import hf_facerec.hub  # noqa: F401  (registers the pipelines)
from hf_facerec import FaceEmbedder
from hf_facerec.data.align import ARCFACE_TEMPLATE, FaceAligner, NoFaceDetectedError
from hf_facerec.data.detectors import Detection, FaceDetector
from hf_facerec.hub.calibration import ThresholdCalibration, store_thresholds
from hf_facerec.hub.pipeline import FaceFeatureExtractionPipeline, FaceVerificationPipeline
from hf_facerec.models import FaceRecImageProcessor

from . import tiny_facerec


class _TwoFaces(FaceDetector):
    """A stand-in detector: a small face at the top-left and a 2x larger one at the bottom-right."""

    name = "stub"

    def _detect(self, rgb):
        small = ARCFACE_TEMPLATE * 0.5 + 5
        large = ARCFACE_TEMPLATE + 80
        return [Detection([0, 0, 60, 60], 0.9, small), Detection([80, 80, 192, 192], 0.8, large)]


class _NoFace(FaceDetector):
    name = "none"

    def _detect(self, rgb):
        return []


def _crops(n, seed=0, size=(96, 112)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_pipeline_model")
    model = tiny_facerec(seed=4)
    store_thresholds(model, ThresholdCalibration({"1e-02": 0.2, "1e-03": 0.5, "1e-04": None}, {}, "toy set", 10, 1000,
                                                 flip="sum"))
    model.save_pretrained(folder)
    FaceRecImageProcessor(size={"height": 112, "width": 96}).save_pretrained(folder)
    return folder


def test_verification_scores_like_face_embedder_and_decides_at_the_stored_threshold(model_dir):
    verify = pipeline("face-verification", model=str(model_dir))
    assert isinstance(verify, FaceVerificationPipeline)
    a, b = _crops(2)
    expected = FaceEmbedder.from_pretrained(model_dir, flip="sum")([a, b])  # the calibration's flip by default
    result = verify(a, b)
    assert result["score"] == pytest.approx(float(expected[0] @ expected[1]), abs=1e-5)
    assert (result["far"], result["threshold"], result["pair_set"], result["flip"]) == ("1e-03", 0.5, "toy set", "sum")
    assert result["is_same"] == (result["score"] >= 0.5)
    assert verify(a, a)["score"] == pytest.approx(1.0, abs=1e-5) and verify(a, a)["is_same"] is True
    assert verify({"image1": a, "image2": b}, far=1e-2)["threshold"] == 0.2
    assert verify(a, b, threshold=2.0)["is_same"] is False
    batch = verify([{"image1": a, "image2": b}, {"image1": b, "image2": b}])
    assert len(batch) == 2 and batch[1]["is_same"] is True
    with pytest.raises(ValueError, match="1e-04"):
        verify(a, b, far=1e-4)  # stored as None: not measurable on the calibration pairs


def test_uncalibrated_model_gives_a_score_without_a_decision(tmp_path):
    tiny_facerec(seed=5).save_pretrained(tmp_path)
    # No preprocessor_config.json saved: pipeline() needs the processor passed in.
    processor = FaceRecImageProcessor(size={"height": 112, "width": 96})
    result = pipeline("face-verification", model=str(tmp_path), image_processor=processor)(*_crops(2))
    assert result["is_same"] is None and result["threshold"] is None and -1.0 <= result["score"] <= 1.0


def test_photos_are_detected_and_aligned_with_the_largest_face(model_dir):
    photo = _crops(1, seed=1, size=(200, 200))[0]
    aligner = FaceAligner(_TwoFaces(), template="96x112", output_size=(96, 112), policy="largest")
    verify = pipeline("face-verification", model=str(model_dir), detector=aligner)
    crop = _crops(1, seed=2)[0]
    result = verify(photo, crop)
    expected = FaceEmbedder.from_pretrained(model_dir, flip="sum")([aligner(photo), crop])
    assert result["score"] == pytest.approx(float(expected[0] @ expected[1]), abs=1e-5)
    first, second = result["faces"]
    assert first["aligned"] and first["num_faces"] == 2 and first["box"] == [80.0, 80.0, 192.0, 192.0]
    assert second == {"aligned": False, "num_faces": None}  # already a 96x112 crop


def test_photo_without_a_face_is_a_clear_error_naming_the_input_and_the_detector(model_dir, monkeypatch):
    pytest.importorskip("dlib")
    monkeypatch.delenv("HF_FACEREC_YUNET", raising=False)
    photo = _crops(1, size=(200, 150))[0]
    verify = pipeline("face-verification", model=str(model_dir))  # no detector given: the package default
    with pytest.raises(NoFaceDetectedError, match=r"image1 \(Image\): no face detected by the dlib detector"):
        verify(photo, photo)
    with pytest.raises(NoFaceDetectedError):
        pipeline("face-verification", model=str(model_dir), detector=FaceAligner(_NoFace()))(photo, photo)
    with pytest.raises(ValueError, match="align must be"):
        pipeline("face-verification", model=str(model_dir), align="sometimes")
    with pytest.raises(ValueError, match="two images"):
        verify(photo)
    resized = pipeline("face-verification", model=str(model_dir), align="never")(photo, photo)
    assert resized["score"] == pytest.approx(1.0, abs=1e-5)


def test_urls_and_base64_strings_score_like_the_image_itself(model_dir, tmp_path):
    import base64
    import functools
    import http.server
    import threading

    a, b = _crops(2, seed=7)
    a.save(tmp_path / "a.png")
    encoded = base64.b64encode((tmp_path / "a.png").read_bytes()).decode()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verify = pipeline("face-verification", model=str(model_dir))
        expected = verify(a, b)["score"]
        url = f"http://127.0.0.1:{server.server_address[1]}/a.png"
        for source in (url, encoded, "data:image/png;base64," + encoded):
            assert verify(source, b)["score"] == pytest.approx(expected, abs=1e-6)
        with pytest.raises(ValueError, match="cannot download"):
            verify(url.replace("a.png", "missing.png"), b)
    finally:
        server.shutdown()


_NO_PACKAGE_CHECK = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_facerec" or name.startswith("hf_facerec."):
            raise ImportError("hf_facerec is blocked in this interpreter")
sys.meta_path.insert(0, _Block())
import json
from transformers import pipeline
folder, a, b = sys.argv[1:4]
verify = pipeline("face-verification", model=folder, trust_remote_code=True)
features = pipeline("image-feature-extraction", model=folder, trust_remote_code=True, flip="none")
result = {"score": verify(a, b)["score"], "classes": [type(verify).__name__, type(features).__name__],
          "modules": [type(verify).__module__, type(features).__module__], "embedding": features(a)}
if len(sys.argv) > 4:  # real photos: the default detector of the remote copy (dlib) aligns them
    photos = verify(sys.argv[4], sys.argv[5])
    result.update(photo_score=photos["score"], photo_detector=photos["faces"][0]["detector"])
assert not any(name.startswith("hf_facerec") for name in sys.modules), "hf_facerec was imported"
print("RESULT", json.dumps(result))
"""


def test_saved_pipeline_runs_with_trust_remote_code_where_the_package_cannot_be_imported(model_dir, tmp_path,
                                                                                          monkeypatch):
    import json
    import os
    import subprocess
    import sys

    from ..conftest import SHARED_DATA

    folder = tmp_path / "saved"
    verify = pipeline("face-verification", model=str(model_dir))  # the stored thresholds' flip ("sum")
    verify.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["face-verification"]["impl"] == "pipeline_facerec.FaceVerificationPipeline"
    assert {"pipeline_facerec.py", "align.py", "images.py", "dlib_hog.py"} <= {p.name for p in folder.glob("*.py")}
    a, b = _crops(2, seed=11)
    a.save(tmp_path / "a.png")
    b.save(tmp_path / "b.png")
    expected = verify(a, b)["score"]
    embedding = pipeline("face-feature-extraction", model=str(model_dir), flip="none")(a)
    args = [str(folder), str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    samples = SHARED_DATA / "samples"
    if (samples / "obama.jpg").is_file():
        args += [str(samples / "obama.jpg"), str(samples / "obama2.jpg")]
        photo_expected = pipeline("face-verification", model=str(model_dir), detector="dlib")(*args[3:])["score"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_FACEREC_YUNET")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    run = subprocess.run([sys.executable, "-c", _NO_PACKAGE_CHECK, *args], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    assert result["classes"] == ["FaceVerificationPipeline", "FaceFeatureExtractionPipeline"]
    assert not any(module.startswith("hf_facerec") for module in result["modules"]), result["modules"]
    assert result["score"] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(result["embedding"], embedding, atol=1e-5)
    if len(args) > 3:
        assert result["photo_detector"] == "dlib" and result["photo_score"] == pytest.approx(photo_expected, abs=1e-5)
    # Where the package is imported, the same folder needs no trust_remote_code: the registered classes serve it.
    local = pipeline("face-verification", model=str(folder))
    assert type(local) is FaceVerificationPipeline and local(a, b)["score"] == pytest.approx(expected, abs=1e-5)
    assert json.loads((folder / "config.json").read_text())["custom_pipelines"]  # and saving keeps them


def test_image_feature_extraction_returns_the_face_embedding(model_dir):
    crop = _crops(1, seed=3)[0]
    model = tiny_facerec(seed=4)
    with torch.no_grad():
        pixel_values = FaceRecImageProcessor(size={"height": 112, "width": 96})(images=[crop], return_tensors="pt")
        expected = model(**pixel_values).embeddings[0]
    builtin = pipeline("image-feature-extraction", model=str(model_dir))
    np.testing.assert_allclose(np.asarray(builtin(crop))[0], expected.numpy(), atol=1e-5)
    faces = pipeline("image-feature-extraction", model=str(model_dir), pipeline_class=FaceFeatureExtractionPipeline,
                     flip="none")
    assert isinstance(faces, FaceFeatureExtractionPipeline)
    np.testing.assert_allclose(faces(crop), expected.numpy(), atol=1e-5)
    summed = pipeline("face-feature-extraction", model=str(model_dir))(crop, return_tensors=True)
    assert summed.shape == (16,) and torch.allclose(
        summed, torch.from_numpy(FaceEmbedder.from_pretrained(model_dir, flip="sum")([crop])[0]), atol=1e-5)


# ---- real photos (skips without ../shared) ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_samples_same_people_above_different_people_below_the_stored_threshold(
        shared_data, shared_models, mobilefacenet_dir, tmp_path):
    """Calibrate the converted MobileFaceNet on every pair of the images of LFW View 2 fold 1 (YuNet-aligned,
    flip-concatenated, as the LFW evaluation does), store the thresholds, then verify the sample photos."""
    from hf_facerec.data.pairs import load_lfw_pairs
    from hf_facerec.data.pairs import pair_columns as _pair_sources
    from hf_facerec.data.preprocess import build_preprocess
    from hf_facerec.hub.calibration import calibrate_embeddings
    from hf_facerec.models import FaceRecModel

    yunet = next((shared_models / "yunet").glob("*.onnx"))
    lfw = shared_data / "lfw"
    model_dir = Path(shutil.copytree(mobilefacenet_dir, tmp_path / "mobilefacenet"))  # thresholds are saved into it
    pairs = load_lfw_pairs(lfw / "pairs.txt", lfw / "images")
    fold = pairs.filter(lambda row: row["fold"] == pairs[0]["fold"])
    first, second = _pair_sources(fold)
    identities = dict(zip(first + second, list(fold["identity1"]) + list(fold["identity2"])))
    embedder = FaceEmbedder.from_pretrained(model_dir, flip="concat", batch_size=64)
    embedder.preprocess, _ = build_preprocess(embedder.model.config.face_size, "yunet", yunet)
    embeddings = embedder(list(identities))
    name = f"LFW View 2 fold 1: all pairs of its {len(identities)} images (YuNet 96x112, flip concat)"
    calibration = calibrate_embeddings(embeddings, list(identities.values()), name, flip="concat")
    assert calibration.n_impostor > 20_000 and all(v is not None for v in calibration.thresholds.values())
    model = FaceRecModel.from_pretrained(model_dir)
    store_thresholds(model, calibration)
    model.save_pretrained(model_dir)

    verify = pipeline("face-verification", model=str(model_dir), detector="yunet", detector_model=str(yunet))
    samples = shared_data / "samples"
    obama = [samples / f for f in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    biden = [samples / f for f in ("biden.jpg", "biden2.jpg")]
    same = [(obama[0], obama[1]), (obama[0], obama[2]), (obama[1], obama[2]), (biden[0], biden[1])]
    different = [(o, b) for o in obama for b in biden]
    results = {(a.name, b.name): verify(str(a), str(b)) for a, b in same + different}
    threshold = calibration.thresholds["1e-03"]
    lines = [f"{a} vs {b}: {r['score']:.3f}" for (a, b), r in results.items()]
    print(f"{name}: {calibration.n_genuine} genuine / {calibration.n_impostor} impostor pairs; thresholds "
          f"{calibration.thresholds}, TAR {calibration.tar}\n" + "\n".join(lines))
    for a, b in same:
        result = results[(a.name, b.name)]
        assert result["far"] == "1e-03" and result["threshold"] == pytest.approx(threshold), result
        assert result["is_same"] and result["score"] >= threshold, (a.name, b.name, result)
    for a, b in different:
        assert results[(a.name, b.name)]["is_same"] is False, (a.name, b.name, results[(a.name, b.name)])
    # two_people.jpg holds Obama (left) and Biden (right), boxes of nearly equal area: the policy picks one face and
    # the output says which box and how many faces there were. "largest" takes Biden's box (by 2 px^2 here),
    # "central" Obama's (his box centre is nearer the image centre).
    two = str(samples / "two_people.jpg")
    largest = verify(two, str(biden[1]))
    assert largest["faces"][0]["num_faces"] == 2 and largest["faces"][0]["policy"] == "largest"
    assert largest["faces"][0]["box"][0] > 700 and largest["is_same"], largest
    central = pipeline("face-verification", model=str(model_dir), detector="yunet", detector_model=str(yunet),
                       policy="central")(two, str(obama[0]))
    assert central["faces"][0]["box"][0] < 400 and central["is_same"], central
    print(f"two_people.jpg: largest face vs biden2 {largest['score']:.3f}, central face vs obama {central['score']:.3f}")
