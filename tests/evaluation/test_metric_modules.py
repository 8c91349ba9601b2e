"""The bundled evaluate modules load offline and return exactly the numpy core's numbers."""

from __future__ import annotations

import ast

import numpy as np
import pytest
import yaml

evaluate = pytest.importorskip("evaluate")

from hf_facerec.evaluation import bias_report, identification_report, verification_report  # noqa: E402
from hf_facerec.metrics import METRIC_NAMES, build_gradio_widget, load_metric, metric_path  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _pairs(seed=0, n=200):
    rng = np.random.default_rng(seed)
    labels = np.tile([1, 0], n // 2)
    scores = np.where(labels == 1, rng.normal(0.6, 0.2, n), rng.normal(0.1, 0.15, n)).astype(np.float32)
    return scores, labels


def test_verification_module_matches_core_both_loaders():
    scores, labels = _pairs()
    expected = verification_report(scores, labels, fars=(1e-2, 1e-1))
    by_path = evaluate.load(str(metric_path("face_verification")))
    assert by_path.compute(predictions=scores, references=labels, fars=(1e-2, 1e-1)) == expected
    module = load_metric("face_verification")
    for start in range(0, 200, 50):  # batched accumulation gives the same result
        module.add_batch(predictions=scores[start : start + 50], references=labels[start : start + 50])
    assert module.compute(fars=(1e-2, 1e-1)) == expected
    folds = np.repeat(np.arange(4), 50)
    assert load_metric("face_verification").compute(predictions=scores, references=labels, folds=folds)["accuracy"] == (
        verification_report(scores, labels, folds=folds)["accuracy"]
    )


def test_bias_module_matches_core():
    scores, labels = _pairs(1, n=400)
    groups = np.repeat(np.array(["a", "b"]), 200)
    module = load_metric("face_bias")
    got = module.compute(predictions=scores, references=labels, groups=groups, far=0.02, alpha=0.4)
    assert got == bias_report(scores, labels, groups, far=0.02, alpha=0.4)


def test_identification_module_matches_core():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(30, 8)).astype(np.float32)
    gallery_labels = np.arange(30)
    probe = np.r_[gallery[:20] + 0.5 * rng.normal(size=(20, 8)), rng.normal(size=(10, 8))].astype(np.float32)
    probe_labels = np.r_[np.arange(20), 100 + np.arange(10)]
    module = load_metric("face_identification")
    got = module.compute(
        predictions=probe, references=probe_labels, gallery_embeddings=gallery, gallery_labels=gallery_labels, fpirs=(0.1, 0.5)
    )
    assert got == identification_report(probe, probe_labels, gallery, gallery_labels, fpirs=(0.1, 0.5))
    with pytest.raises(ValueError, match="gallery_embeddings"):
        load_metric("face_identification").compute(predictions=probe, references=probe_labels)


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("accuracy")


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_module_folder_is_a_complete_space(name):
    folder = metric_path(name)
    assert (folder / f"{name}.py").is_file()  # folder name == file name: evaluate.load(folder) works
    header = (folder / "README.md").read_text(encoding="utf-8").split("---")[1]
    card = yaml.safe_load(header)
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py"
    assert {"evaluate", "metric"} <= set(card["tags"]) and card["title"] and card["description"]
    assert {"emoji", "colorFrom", "colorTo"} <= set(card)
    app = (folder / "app.py").read_text()
    ast.parse(app)
    assert f'launch_gradio_widget("{name}")' in app
    assert "hf_facerec" in (folder / "requirements.txt").read_text()


def test_gradio_widget_computes_from_a_table():
    pytest.importorskip("gradio")
    module = load_metric("face_verification")
    interface = build_gradio_widget(module)
    table = [["0.9", "1"], ["0.2", "0"], ["0.8", "1"], ["0.1", "0"], ["", ""]]  # blank row ignored
    got = interface.fn(table, '{"n_folds": 2, "fars": [0.5]}')
    assert got == verification_report([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0], n_folds=2, fars=[0.5])  # JSON cells: float64


def test_verification_module_flags_177_impostors_at_far_1e3():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, int), np.zeros(177, int)]
    scores = np.where(labels == 1, rng.normal(0.7, 0.1, labels.size), rng.normal(0.1, 0.1, labels.size))
    got = load_metric("face_verification").compute(predictions=scores, references=labels, fars=(1e-3, 1e-2))
    assert got["tar_at_far_measurable"] == {"1e-03": False, "1e-02": True} and got["unmeasurable"] == ["tar_at_far.1e-03"]


# Issue 13: the modules' declared types used to change the data before the core saw it.
_VERIFY = {"n_folds": None, "fars": (0.5,)}


def _both(module_name, core_function, module: dict, core: dict):
    """(module result or error text, core result or error text) for the same inputs."""
    out = []
    for run in (lambda: evaluate.load(str(metric_path(module_name))).compute(**module), lambda: core_function(**core)):
        try:
            out.append(run())
        except ValueError as err:
            out.append(f"ValueError: {err}")
    return out


@pytest.mark.parametrize(
    "references, message",
    [([0.7, 1, 0, 1], "found non-integer values"), ([1.5, 0, 1, 0], "outside [0, 1]"), ([1, None, 0, 1], "NaN")],
)
def test_verification_module_refuses_references_the_core_refuses(references, message):
    scores = [0.9, 0.2, 0.8, 0.1]
    got, expected = _both(
        "face_verification",
        verification_report,
        module={"predictions": scores, "references": references, **_VERIFY},
        core={"scores": scores, "labels": np.array(references, dtype=float), **_VERIFY},
    )
    assert isinstance(got, str) and got == expected and message in got  # was: 0.7 -> 0 (auc 0.0), 1.5 -> 1


def test_verification_module_keeps_float64_scores_distinct():
    # Distinct in float64, one value in float32: the core's AUC is 0.75; float32 storage gave 0.5.
    scores = 0.3 + np.arange(4) * 1e-9
    labels = np.array([0, 1, 0, 1])
    expected = verification_report(scores, labels, **_VERIFY)
    assert expected["auc"] == 0.75
    assert evaluate.load(str(metric_path("face_verification"))).compute(predictions=scores, references=labels, **_VERIFY) == expected
    assert load_metric("face_verification").compute(predictions=scores.tolist(), references=labels.tolist(), **_VERIFY) == expected


def test_verification_module_hands_float32_scores_over_as_float32():
    # float32 scores have other values than their float64 originals, so the thresholds (midpoints of scores)
    # differ in the last digits: the module must give the core's float32 answer, not a float64 one.
    scores = np.array([0.1, 0.73, 0.31, 0.9], dtype=np.float32)
    labels, folds = np.array([0, 1, 0, 1], dtype=np.int8), np.array([0, 0, 1, 1])
    expected = verification_report(scores, labels, folds=folds, fars=(0.5,))
    as_float64 = verification_report(scores.astype(np.float64).round(2), labels, folds=folds, fars=(0.5,))
    assert expected["best_threshold"] != as_float64["best_threshold"]
    module = load_metric("face_verification")
    module.add_batch(predictions=scores[:2], references=labels[:2])
    module.add_batch(predictions=scores[2:], references=labels[2:])
    assert module.compute(folds=folds, fars=(0.5,)) == expected
    assert "_caller_dtypes" not in module.__dict__  # forgotten with the batches


def test_bias_module_groups_with_none_get_a_clear_message():
    scores, labels = _pairs(1, n=40)
    groups = ["a", None, "b", "a"] * 10
    got, expected = _both(
        "face_bias",
        bias_report,
        module={"predictions": scores, "references": labels, "groups": groups, "far": 0.1, "n_folds": 2},
        core={"scores": scores, "labels": labels, "groups": np.array(groups, dtype=object), "far": 0.1, "n_folds": 2},
    )
    assert got == expected == "ValueError: groups contains None (a pair without a group) at index 1: name its group or leave the pair out"


def test_bias_module_keeps_float64_scores():
    rng = np.random.default_rng(5)
    labels = np.tile([1, 0], 200)
    scores = 0.5 + np.where(labels == 1, rng.normal(2e-9, 1e-9, 400), rng.normal(0, 1e-9, 400))  # one float32 value
    groups = np.repeat(np.array(["a", "b"]), 200)
    expected = bias_report(scores, labels, groups, far=0.02)
    assert expected["groups"]["a"]["auc"] > 0.8
    assert load_metric("face_bias").compute(predictions=scores, references=labels, groups=groups, far=0.02) == expected


def test_identification_module_keeps_float64_embeddings_and_refuses_lossy_ids():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(30, 8))
    probe = gallery[:20] + 1e-9 * rng.normal(size=(20, 8))  # float64 probes: no float32 round trip
    got = load_metric("face_identification").compute(
        predictions=probe, references=np.arange(20), gallery_embeddings=gallery, gallery_labels=np.arange(30)
    )
    assert got == identification_report(probe, np.arange(20), gallery, np.arange(30))
    for ids, shown in (([0, 1, 2.5], "2.5 at index 2"), ([0, None, 2], "None at index 1"), (["a", "b", "c"], "'a' at index 0")):
        with pytest.raises(ValueError, match=f"references must be integer ids .*got {shown}"):
            load_metric("face_identification").compute(
                predictions=probe[:3], references=ids, gallery_embeddings=gallery, gallery_labels=np.arange(30)
            )
