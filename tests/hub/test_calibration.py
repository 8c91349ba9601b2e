"""Threshold calibration: hand-computed thresholds, all-pairs cross-checked with a loop, storage in the config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_facerec.hub.calibration import (
    all_pairs,
    calibrate_embeddings,
    calibrate_pairs,
    calibrate_thresholds,
    store_thresholds,
    stored_threshold,
)
from hf_facerec.models import FaceRecConfig, FaceRecModel

from . import tiny_facerec


def _toy():
    # 1,000 impostors at 0.000, 0.001, ..., 0.999 (shuffled) and 10 genuine pairs at 0.5, 0.55, ..., 0.95.
    rng = np.random.default_rng(0)
    impostor = rng.permutation(np.arange(1000) / 1000)
    genuine = 0.5 + 0.05 * np.arange(10)
    return np.r_[impostor, genuine], np.r_[np.zeros(1000), np.ones(10)]


def test_thresholds_by_hand():
    scores, labels = _toy()
    calibration = calibrate_thresholds(scores, labels, "toy", fars=(1e-2, 1e-3, 1e-4), flip="concat")
    # FAR 1e-2 allows 10 impostors: reject 0.989 and below, so the threshold is the next score up, 0.990;
    # FAR 1e-3 allows 1: threshold 0.999. FAR 1e-4 < 1/1000: not measurable -> None.
    assert calibration.thresholds == {"1e-02": pytest.approx(0.990), "1e-03": pytest.approx(0.999), "1e-04": None}
    # Genuine scores >= 0.99: none (max 0.95); TAR 0 at both, None where unmeasurable.
    assert calibration.tar == {"1e-02": 0.0, "1e-03": 0.0, "1e-04": None}
    assert (calibration.n_genuine, calibration.n_impostor, calibration.flip) == (10, 1000, "concat")
    loose = calibrate_thresholds(scores, labels, "toy", fars=(0.1,))
    assert loose.thresholds == {"1e-01": pytest.approx(0.9)} and loose.tar == {"1e-01": pytest.approx(0.2)}


def test_all_pairs_matches_a_loop():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(7, 5))
    identities = np.array(["a", "b", "a", "c", "b", "a", "c"])
    scores, labels = all_pairs(embeddings, identities)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    expected = [(unit[i] @ unit[j], identities[i] == identities[j]) for i in range(7) for j in range(i + 1, 7)]
    np.testing.assert_allclose(scores, [s for s, _ in expected], atol=1e-6)
    assert labels.tolist() == [same for _, same in expected] and labels.sum() == 3 + 1 + 1
    calibration = calibrate_embeddings(embeddings, identities, "seven", fars=(0.1,))
    assert calibration.n_genuine == 5 and calibration.n_impostor == 16


def test_store_and_read_back_through_save_pretrained(tmp_path):
    model = tiny_facerec()
    scores, labels = _toy()
    store_thresholds(model, calibrate_thresholds(scores, labels, "toy", flip="sum"))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["threshold_pair_set"] == "toy" and saved["threshold_flip"] == "sum"
    config = FaceRecModel.from_pretrained(tmp_path).config
    assert stored_threshold(config) == ("1e-03", pytest.approx(0.999))
    assert stored_threshold(config, 0.01) == ("1e-02", pytest.approx(0.99))
    with pytest.raises(ValueError, match="no threshold measured at FAR 1e-04"):
        stored_threshold(config, 1e-4)
    config.verification_thresholds = {"1e-02": 0.4, "1e-03": None}
    assert stored_threshold(config) == ("1e-02", 0.4)  # 1e-3 unmeasured: the strictest measured one


def test_calibrate_pairs_embeds_each_image_once(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8)).save(paths[-1])
    calls = []

    def embedder(sources):
        calls.append(len(sources))
        return rng.normal(size=(len(sources), 8))

    calibration = calibrate_pairs(embedder, [paths[0], paths[0], paths[1]] * 40, [paths[1], paths[2], paths[3]] * 40,
                                  [1, 0, 0] * 40, "four images", fars=(0.1,))
    assert calls == [4] and calibration.n_genuine == 40 and calibration.n_impostor == 80


def test_bad_inputs_are_clear_errors():
    scores, labels = _toy()
    with pytest.raises(ValueError, match="pair_set"):
        calibrate_thresholds(scores, labels, " ")
    with pytest.raises(ValueError, match="both genuine and impostor"):
        calibrate_thresholds(scores, np.zeros_like(labels), "toy")
    with pytest.raises(ValueError, match="FAR targets"):
        calibrate_thresholds(scores, labels, "toy", fars=(0.0,))
    with pytest.raises(ValueError, match="flip"):
        calibrate_thresholds(scores, labels, "toy", flip="mirror")
    with pytest.raises(ValueError, match="identities"):
        all_pairs(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="non-zero"):
        all_pairs(np.zeros((3, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="no calibrated"):
        stored_threshold(FaceRecConfig())
    with pytest.raises(ValueError, match="FaceRec"):
        store_thresholds(object(), calibrate_thresholds(scores, labels, "toy"))


@pytest.mark.parametrize(
    "thresholds, message",
    [
        ({"1e-03": "NaN"}, r"config.verification_thresholds\['1e-03'\] = 'NaN' is not a number"),
        ({"1e-03": float("nan")}, r"\['1e-03'\] = nan is not a cosine similarity threshold"),  # json writes/reads NaN
        ({"1e-03": float("inf")}, r"\['1e-03'\] = inf is not a cosine"),
        ({"1e-03": 7.0}, r"\['1e-03'\] = 7.0 is not a cosine similarity threshold \(finite, in \[-1, 1\]\)"),
        ({"1e-03": True}, r"\['1e-03'\] = True is not a number"),
        ({"far": 0.3}, r"key 'far' is not a FAR"),
        ({"0": 0.3}, r"key '0' is not a FAR"),
        ({"2": 0.3}, r"key '2' is not a FAR"),
        ({"NaN": 0.3}, r"key 'NaN' is not a FAR"),
        ({"1e-03": 0.3, "0.001": 0.4}, r"keys '1e-03' and '0.001' name the same FAR"),
        ([0.3], r"config.verification_thresholds must be a mapping"),
    ],
)
def test_hostile_stored_thresholds_fail_on_load_naming_the_key(tmp_path, thresholds, message):
    # Issue 13: {"1e-03": "NaN"} in config.json gave is_same=False, threshold=nan for every pair.
    from transformers import AutoConfig

    tiny_facerec().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "verification_thresholds": thresholds}))
    for load in (FaceRecModel.from_pretrained, FaceRecConfig.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(ValueError, match=message):
            load(tmp_path)
    config = FaceRecConfig()
    config.verification_thresholds = thresholds  # set after loading: the reader checks again
    with pytest.raises(ValueError, match=message):
        stored_threshold(config)


def test_valid_stored_thresholds_load_and_any_spelling_of_a_far_is_found(tmp_path):
    model = tiny_facerec()
    model.config.verification_thresholds = {"0.001": 0.31, "1e-04": None, "1e-02": -0.05, "0.1": 1.00001}
    model.save_pretrained(tmp_path)
    config = FaceRecModel.from_pretrained(tmp_path).config
    assert config.verification_thresholds == {"0.001": 0.31, "1e-04": None, "1e-02": -0.05, "0.1": 1.00001}
    assert stored_threshold(config) == ("0.001", 0.31)  # the default FAR 1e-3, written another way
    assert stored_threshold(config, "1e-03") == stored_threshold(config, 0.001) == ("0.001", 0.31)
    with pytest.raises(ValueError, match="far must be a number, got 'often'"):
        stored_threshold(config, "often")
    scores, labels = _toy()
    calibration = calibrate_thresholds(scores, labels, "toy")
    with pytest.raises(ValueError, match=r"calibration.thresholds\['1e-03'\] = 'NaN' is not a number"):
        store_thresholds(model, type(calibration)(**{**calibration.to_dict(), "thresholds": {"1e-03": "NaN"}}))
