"""Model cards from the three results shapes (quickstart, runner, bare reports): metadata, sections, errors."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from hf_facerec.hub.card import build_model_card, normalise_results, training_summary, write_model_card
from hf_facerec.models import FaceRecImageProcessor
from hf_facerec.training import FaceRecTrainingArguments

from . import tiny_facerec

_REPORT = {"accuracy": 0.9, "accuracy_std": 0.01, "eer": 0.1, "auc": 0.95, "n_genuine": 100, "n_impostor": 100,
           "tar_at_far": {"1e-02": 0.5, "1e-03": None}}
_BIAS = {"far": 0.1, "threshold": 0.3, "groups": {"A": {"accuracy": 0.92, "accuracy_std": 0.02, "fmr": 0.1, "fnmr": 0.2,
                                                          "n_genuine": 50, "n_impostor": 50},
                                                    "B": {"accuracy": 0.88, "accuracy_std": 0.03, "fmr": 0.12,
                                                          "fnmr": 0.25, "n_genuine": 50, "n_impostor": 50}},
         "accuracy_summary": {"mean": 0.9, "std": 0.02, "ser": 1.5}, "fdr": 0.98, "garbe": 0.05,
         "fmr_max_min_ratio": 1.2, "fnmr_max_min_ratio": 1.25}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("card_model")
    tiny_facerec().save_pretrained(folder)
    FaceRecImageProcessor(size={"height": 112, "width": 96}).save_pretrained(folder)
    return folder


def test_quickstart_summary_gives_metadata_and_every_section(model_dir):
    summary = {"data": "synthetic identities", "training": {"finetune_mode": "scratch", "steps": 6},
               "results": {"verification": _REPORT, "bias": _BIAS}, "compute": "2 CPU cores, 1 min"}
    card = build_model_card(model_dir, summary, repo_id="org/qs")
    results = ModelCard(str(card)).data.eval_results  # huggingface_hub's own model-index parser
    assert {(r.dataset_type, r.metric_type, r.metric_value) for r in results} == {
        ("synthetic", "accuracy", 0.9), ("synthetic", "eer", 0.1), ("synthetic", "roc_auc", 0.95),
        ("synthetic", "tar_at_far_1e-02", 0.5)}
    text = card.text
    for section in ("## Model details", "## Training", "## Evaluation", "## Verification thresholds",
                    "## Demographic differentials", "## How to use", "## Intended use", "## Risks and limitations"):
        assert section in text, section
    for needle in ("- Mode: scratch", "steps 6", "Compute: 2 CPU cores, 1 min", "| A | 0.9200 | 0.0200 |",
                   "STD 0.0200", "SER 1.5000", "FDR 0.9800", "GARBE 0.0500", "No calibrated threshold",
                   'from_pretrained("org/qs", trust_remote_code=True)', "`96x112`", "mean [0.5, 0.5, 0.5]"):
        assert needle in text, needle
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "transformers" and {"hf_facerec", "mobilefacenet"} <= set(metadata["tags"])


def test_runner_results_and_bare_reports_normalise_to_one_shape():
    runner = {"benchmarks": {"lfw": {"verification": _REPORT, "bias": {"gender": _BIAS}, "n_pairs": 200}}}
    assert normalise_results(runner) == {"lfw": {"verification": _REPORT, "bias": {"gender": _BIAS}}}
    assert normalise_results({"benchmarks": {"cfp": _REPORT}}) == {"cfp": {"verification": _REPORT, "bias": {}}}
    assert normalise_results({"verification": _REPORT}, "syn") == {"syn": {"verification": _REPORT, "bias": {}}}
    assert normalise_results({}) == {}
    with pytest.raises(ValueError, match="unrecognised results"):
        normalise_results({"accuracy": 0.9})


def test_card_without_results_or_bias_says_so(model_dir, tmp_path):
    text = build_model_card(model_dir, {}).text
    assert "No evaluation results were recorded" in text and "## Demographic differentials" not in text
    assert "model-index" not in str(build_model_card(model_dir, {}))
    skipped = build_model_card(model_dir, {"results": {"verification": _REPORT, "bias": {"skipped": "FAR too low"}}})
    assert "Not computed: FAR too low" in skipped.text


def test_training_summary_keeps_lora_settings_only_in_lora_mode(tmp_path):
    lora = FaceRecTrainingArguments(output_dir=str(tmp_path), finetune_mode="lora", lora_rank=8, use_cpu=True,
                                    report_to="none")
    summary = training_summary(lora, steps=10)
    assert summary["lora_rank"] == 8 and summary["finetune_mode"] == "lora" and summary["steps"] == 10
    full = training_summary(FaceRecTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    assert "lora_rank" not in full and full["finetune_mode"] == "full"


def test_write_model_card_writes_readme(model_dir):
    path = write_model_card(model_dir, {"results": {"verification": _REPORT}})
    assert path.name == "README.md" and "model-index" in path.read_text()
