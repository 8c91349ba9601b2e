"""Few-shot benchmark: metrics against hand-computed values, nested stratified subsets, and a whole run on a user
task of synthetic faces (every kind, every adaptation mode) with its JSON / markdown / PNG."""

import json

import numpy as np
import pytest
import torch
from transformers import ViTConfig

from hf_facerec.data.synthetic import make_synthetic_faces
from hf_facerec.representation.fewshot import (Pretraining, classification_scores, landmark_scores,
                                               mean_absolute_error, nested_label_subsets, run_fewshot)
from hf_facerec.representation.modeling import build_encoder
from hf_facerec.representation.tasks import TASKS, FewShotTask, TaskData, get_task, register_task

SIZE = 32


def test_nme_by_hand():
    true = np.zeros((2, 3, 2))
    true[:, 0], true[:, 1] = (0, 0), (10, 0)  # inter-ocular distance 10 (points 0 and 1 here)
    pred = true.copy()
    pred[0, 2] += (3, 4)  # face 0: errors 0, 0, 5 -> mean 5/3 -> NME 1/6
    pred[1] += (0.6, 0.8)  # face 1: every point off by 1 -> NME 0.1
    out = landmark_scores(pred, true, left=0, right=1)
    assert out["nme"] == pytest.approx((1 / 6 + 0.1) / 2)
    assert out["failure_rate_8"] == pytest.approx(1.0)  # 0.167 and 0.1 both > 0.08
    assert out["failure_rate_10"] == pytest.approx(0.5)  # only 0.167 > 0.10 (0.1 is not above)
    with pytest.raises(ValueError, match="landmarks"):
        landmark_scores(pred[:, :, :1], true[:, :, :1])


def test_mae_and_macro_f1_by_hand():
    assert mean_absolute_error([20, 30, 40], [22, 27, 40])["mae"] == pytest.approx(5 / 3)
    # class 0: tp 1, fp 1, fn 1 -> F1 1/2; class 1: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3; class 2: tp 1, fp 1,
    # fn 0 -> P 1/2, R 1, F1 2/3. macro = (1/2 + 2/3 + 2/3) / 3
    y, p = [0, 0, 1, 1, 2], [0, 2, 1, 0, 2]
    out = classification_scores(y, p)
    assert out["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_label_subsets_are_stratified_seeded_nested_and_clipped():
    strata = np.array([0] * 200 + [1] * 50 + [2] * 3)
    subsets = nested_label_subsets(strata, (0.01, 0.02, 0.05, 0.1, 0.2, 1.0), seed=3)
    assert nested_label_subsets(strata, (0.01, 0.1, 1.0), seed=3)[0.1].tolist() == subsets[0.1].tolist()
    assert nested_label_subsets(strata, (0.1,), seed=4)[0.1].tolist() != subsets[0.1].tolist()
    fractions = sorted(subsets)
    for small, large in zip(fractions, fractions[1:]):
        assert set(subsets[small]) <= set(subsets[large])  # nested: 1% inside 2% inside ... inside 100%
    assert np.bincount(strata[subsets[0.01]]).tolist() == [2, 1, 1]  # round(2) / clipped to 1 / clipped to 1
    assert np.bincount(strata[subsets[0.1]]).tolist() == [20, 5, 1]
    assert len(subsets[1.0]) == len(strata)
    with pytest.raises(ValueError, match="fractions"):
        nested_label_subsets(strata, (0.0,))


def _synthetic_task(root, max_train=None, max_test=None, seed=0, kind="classification"):
    train = make_synthetic_faces(num_identities=4, images_per_identity=6, image_size=SIZE, with_landmarks=True)
    test = make_synthetic_faces(num_identities=4, images_per_identity=3, image_size=SIZE, with_landmarks=True,
                                identity_offset=0, seed=1)
    images = lambda d: [np.asarray(im) for im in d["image"]]  # noqa: E731
    if kind == "landmarks":
        return TaskData(images(train), np.asarray(train["landmarks"]), images(test), np.asarray(test["landmarks"]),
                        strata=np.zeros(len(train)), image_size=(SIZE, SIZE), ocular=(0, 1))
    if kind == "regression":
        return TaskData(images(train), np.asarray(train["label"], np.float32) * 10, images(test),
                        np.asarray(test["label"], np.float32) * 10, strata=np.asarray(train["label"]))
    if kind == "verification":
        labels = np.asarray(test["label"])
        i, j = np.triu_indices(len(labels), 1)
        return TaskData(images(train), np.asarray(train["label"]), images(test), None, classes=list("abcd"),
                        pairs=np.stack([i, j], 1), is_same=labels[i] == labels[j], folds=np.arange(len(i)) % 2)
    return TaskData(images(train), np.asarray(train["label"]), images(test), np.asarray(test["label"]),
                    classes=list("abcd"))


@pytest.fixture
def backbone_dir(tmp_path):
    torch.manual_seed(0)
    config = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    build_encoder(config, SIZE).backbone.save_pretrained(tmp_path / "backbone")
    return str(tmp_path / "backbone")


def test_a_user_task_runs_every_kind_and_mode(tmp_path, backbone_dir):
    tasks = []
    for kind, metric, higher in (("classification", "accuracy", True), ("regression", "mae", False),
                                 ("landmarks", "nme", False), ("verification", "accuracy", True)):
        name = f"synthetic_{kind}"
        TASKS.pop(name, None)
        tasks.append(register_task(FewShotTask(name, kind, lambda root, k=kind, **o: _synthetic_task(root, kind=k, **o),
                                               metric, higher)))
    with pytest.raises(ValueError, match="already registered"):
        register_task(tasks[0])
    torch.set_num_threads(1)
    result = run_fewshot([Pretraining("ssl", backbone_dir), Pretraining("random", backbone_dir, random_init=True)],
                         [t.name for t in tasks], tmp_path, tmp_path / "out", fractions=(0.25, 1.0),
                         modes=("linear_probe", "lora", "full"), seeds=(0,), image_size=SIZE, epochs=1,
                         probe_steps=20, batch_size=8, min_steps=2, progress=False)
    assert len(result["results"]) == 2 * 4 * 3 * 1 * 2
    # 4 classes x round(6 x 0.25) = 8; landmarks has one stratum of 24 -> 6
    assert {r["task"]: r["n_train"] for r in result["results"] if r["fraction"] == 0.25} == {
        "synthetic_classification": 8, "synthetic_regression": 8, "synthetic_landmarks": 6,
        "synthetic_verification": 8}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["summary"]) == 2 * 4 * 3 * 2
    for row in saved["results"]:
        assert all(v is None or np.isfinite(v) for v in row["scores"].values()), row
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| synthetic_landmarks | nme | random | lora |" in table
    assert (tmp_path / "out" / "fewshot.png").read_bytes()[:4] == b"\x89PNG"
    for task in tasks:
        TASKS.pop(task.name)


def test_builtin_registry_and_missing_data(tmp_path):
    assert {"lfw_verification", "utkface_gender", "utkface_race", "utkface_age", "landmarks_300w",
            "jaffe_expression", "cmu_pose"} <= set(TASKS)
    with pytest.raises(ValueError, match="unknown few-shot task"):
        get_task("nope")
    with pytest.raises(FileNotFoundError, match="jaffe"):
        get_task("jaffe_expression").load(tmp_path)


def test_builtin_tasks_read_the_shared_sets(shared_data):
    jaffe = get_task("jaffe_expression").load(shared_data)
    assert len(jaffe.train_images) + len(jaffe.test_images) == 213 and len(jaffe.classes) == 7
    lm = get_task("landmarks_300w").load(shared_data)
    assert (len(lm.train_images), len(lm.test_images)) == (337, 554) and lm.train_targets.shape[1:] == (68, 2)
    age = get_task("utkface_age").load(shared_data, max_train=50, max_test=20)
    assert len(age.train_images) == 50 and age.test_targets.dtype == np.float32
