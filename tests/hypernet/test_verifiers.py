"""Verifiers: safetensors and ONNX round trips, batched = looped evaluation, the gallery store, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec.data.align import NoFaceDetectedError, get_template
from hf_facerec.data.detectors.base import Detection, FaceDetector
from hf_facerec.data.images import InvalidImageError
from hf_facerec.data.preprocess import FaceInput
from hf_facerec.hypernet.gallery import Gallery, GalleryError, calibrate_threshold
from hf_facerec.hypernet.target import TargetConfig
from hf_facerec.hypernet.verifiers import (HyperNetEnroller, MultipleFacesError, UnknownUserError, Verifier,
                                           VerifierFileError, target_pixels, verifier_logits, verify)

from .helpers import tiny_hypernet


class _Stub(FaceDetector):
    """`faces` faces in every image, at the template positions of a 32x32 crop scaled x2 (64x64 photos)."""

    name = "stub"

    def __init__(self, faces=1):
        self.faces = faces

    def _detect(self, rgb):
        points = get_template("arcface", (32, 32)) * 2
        return [Detection([4 + i, 4, 60, 60], 0.9 - 0.1 * i, points) for i in range(self.faces)]


def _photos(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def enroller():
    return HyperNetEnroller(tiny_hypernet(target_num_channels=1), detector=_Stub())


def test_enroll_verify_and_safetensors_round_trip(enroller, tmp_path):
    verifier = enroller.enroll("alice", _photos(2))
    assert verifier.weights.shape == (enroller.model.num_target_params,) and verifier.face_size == (32, 32)
    probe = _photos(1, seed=5)[0]
    p = enroller.verify(verifier, probe)
    assert 0.0 < p < 1.0
    # the same as f run by hand on the aligned, downsampled crop
    crop = enroller.crops([probe])[0]
    expected = torch.sigmoid(verifier.module()(target_pixels([crop], verifier.target)))[0]
    assert p == pytest.approx(float(expected), abs=1e-7)
    path = verifier.save(tmp_path / "alice.safetensors")
    loaded = Verifier.load(path)
    assert loaded.user_id == "alice" and torch.equal(loaded.weights, verifier.weights)
    assert loaded.target == verifier.target and loaded.face_size == verifier.face_size
    assert verify(loaded, probe, FaceInput((32, 32), detector=_Stub())) == p
    from hf_facerec.hypernet import enroll

    assert torch.equal(enroll(enroller.model, "alice", _photos(2), detector=_Stub()).weights, verifier.weights)
    # enrolment pools the images' embeddings: two photos differ from either one alone
    assert not torch.equal(enroller.enroll("alice", _photos(1)).weights, verifier.weights)


def test_exported_verifier_matches_onnxruntime(enroller, tmp_path):
    import onnxruntime

    verifier = enroller.enroll("bob", _photos(1))
    diff = verifier.export_onnx(tmp_path / "bob.onnx")
    assert diff <= 1e-5
    session = onnxruntime.InferenceSession(str(tmp_path / "bob.onnx"), providers=["CPUExecutionProvider"])
    probes = target_pixels(enroller.crops(_photos(5, seed=3)), verifier.target)
    got = session.run(["logits"], {"pixel_values": probes.numpy()})[0]
    np.testing.assert_allclose(got, verifier.logits(probes).numpy(), atol=1e-5, rtol=0)


def test_batched_verifiers_equal_the_one_at_a_time_loop(enroller):
    model = enroller.model
    with torch.no_grad():
        weights = model.generate(model.pool(torch.randn(7, 1, 32)))[0]
    target = model.config.target_config
    probes = torch.rand(4, 1, 32, 32) * 2 - 1
    batched = verifier_logits(weights, target, probes, users_per_chunk=3)  # chunks of 3, 3, 1 users
    loop = torch.stack([Verifier(str(u), weights[u], target, (32, 32)).logits(probes) for u in range(7)], dim=1)
    assert batched.shape == (4, 7)
    torch.testing.assert_close(batched, loop, atol=1e-5, rtol=1e-5)


def test_gallery_round_trips_and_changes_one_user_at_a_time(enroller, tmp_path):
    gallery = Gallery(tmp_path / "g", create=True)
    verifiers = {name: enroller.enroll(name, _photos(1, seed=i)) for i, name in enumerate(["ann", "b/ob", "ann "])}
    for verifier in verifiers.values():
        gallery.add(verifier)
    gallery.set_threshold(0.7, far=0.01, pairs=100)
    reloaded = Gallery(tmp_path / "g")
    assert reloaded.users == ["ann", "b/ob", "ann "] and reloaded.threshold == {"value": 0.7, "far": 0.01, "pairs": 100}
    for name, verifier in verifiers.items():
        assert torch.equal(reloaded[name].weights, verifier.weights) and reloaded[name].user_id == name
    files = {name: reloaded.path_of(name) for name in verifiers}
    before = {name: (p.read_bytes(), p.stat().st_mtime_ns) for name, p in files.items()}
    reloaded.remove("b/ob")
    assert not files["b/ob"].exists() and "b/ob" not in Gallery(tmp_path / "g")
    reloaded.add(enroller.enroll("carol", _photos(1, seed=9)))
    for name in ("ann", "ann "):
        assert (files[name].read_bytes(), files[name].stat().st_mtime_ns) == before[name]
    assert Gallery(tmp_path / "g").users == ["ann", "ann ", "carol"]
    # identification: each enrolment photo is identified as its own user by a closed-set gallery
    probes = target_pixels(enroller.crops(_photos(1, seed=0)), gallery.target)
    users, probs = reloaded.probabilities(probes)
    result = reloaded.identify_pixels(probes, threshold=0.0)[0]
    assert result["user"] == users[int(probs[0].argmax())] and result["probability"] == pytest.approx(float(probs.max()))
    assert reloaded.identify_pixels(probes, threshold=1.01)[0]["user"] is None  # open set: rejected
    assert reloaded.identify(_photos(2), faces=FaceInput((32, 32), detector=_Stub()), top_k=2)[0]["candidates"][1]


def test_calibrated_threshold_is_the_package_threshold_at_far():
    from hf_facerec.evaluation.roc import threshold_at_far

    rng = np.random.default_rng(0)
    scores, labels = rng.random(400), rng.integers(0, 2, 400)
    assert calibrate_threshold(scores, labels, 0.01) == threshold_at_far(scores, labels, 0.01)
    impostor_scores = scores[labels == 0]
    assert np.mean(impostor_scores >= calibrate_threshold(scores, labels, 0.05)) <= 0.05


def test_bad_input_gets_clear_errors(enroller, tmp_path):
    with pytest.raises(NoFaceDetectedError, match=r"images\[0\]"):
        HyperNetEnroller(enroller.model, detector=_Stub(faces=0)).enroll("x", _photos(1))
    with pytest.raises(MultipleFacesError, match=r"images\[1\].*2 faces"):
        HyperNetEnroller(enroller.model, detector=_Stub(faces=2)).enroll("x", [np.zeros((32, 32, 3), np.uint8),
                                                                                 *_photos(1)])
    with pytest.raises(InvalidImageError):
        enroller.enroll("x", [b"not an image"])
    with pytest.raises(ValueError, match="no images"):
        enroller.enroll("x", [])
    with pytest.raises(ValueError, match="user_id"):
        enroller.enroll("", _photos(1))
    gallery = Gallery(tmp_path / "g", create=True)
    gallery.add(enroller.enroll("ann", _photos(1)))
    with pytest.raises(UnknownUserError, match="'zed' is not enrolled"):
        gallery.remove("zed")
    with pytest.raises(FileNotFoundError, match="no gallery"):
        Gallery(tmp_path / "none")
    # a verifier file of the wrong shape: another layout's tensors under this layout's metadata
    verifier = gallery["ann"]
    from safetensors.torch import save_file

    wrong = {k: torch.zeros(2, 2) if k == "classifier.weight" else v for k, v in verifier.state_dict().items()}
    save_file(wrong, gallery.path_of("ann"), metadata=verifier.metadata())
    with pytest.raises(VerifierFileError, match=r"'classifier.weight' has shape \(2, 2\)"):
        gallery["ann"]
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(VerifierFileError, match="not a safetensors verifier"):
        Verifier.load(tmp_path / "junk.safetensors")
    small = Verifier("s", torch.zeros(1), TargetConfig(channels=[4, 8]), (32, 32))
    with pytest.raises(GalleryError, match="layout"):
        gallery.add(small)
    (tmp_path / "g" / "index.json").write_text(json.dumps({"format": "else"}))
    with pytest.raises(GalleryError, match="not a gallery index"):
        Gallery(tmp_path / "g")


def test_identification_from_scores_equals_the_core_on_cosines():
    from hf_facerec.evaluation.identification import identification_report, similarity_matrix
    from hf_facerec.hypernet.evaluate import identification_from_scores, pair_scores

    rng = np.random.default_rng(0)
    gallery, probe = rng.normal(size=(6, 8)), rng.normal(size=(30, 8))
    gallery_labels, probe_labels = np.arange(6), rng.integers(0, 9, 30)  # labels 6-8: non-mated probes
    expected = identification_report(probe, probe_labels, gallery, gallery_labels, fpirs=(0.1, 0.5))
    got = identification_from_scores(similarity_matrix(probe, gallery), probe_labels, gallery_labels, fpirs=(0.1, 0.5))
    assert got == expected
    model = tiny_hypernet(target_num_channels=1)
    emb, pix = torch.randn(4, 32), torch.rand(4, 1, 32, 32)
    s = pair_scores(model, emb, pix, [0, 1], [2, 3])
    w = [Verifier(str(i), w, model.config.target_config, (32, 32))
         for i, w in enumerate(model.generate(model.pool(emb[:, None]))[0].detach())]
    p = lambda i, j: float(torch.sigmoid(w[i].logits(pix[j:j + 1]))[0])  # noqa: E731
    np.testing.assert_allclose(s, [(p(0, 2) + p(2, 0)) / 2, (p(1, 3) + p(3, 1)) / 2], atol=1e-6)
