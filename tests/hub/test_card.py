"""Model cards from the three results shapes (quickstart, runner, bare reports): metadata, sections, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_facerec.hub.card import build_model_card, normalise_results, training_summary, write_model_card
from hf_facerec.models import FaceRecImageProcessor
from hf_facerec.training import FaceRecTrainingArguments

from . import tiny_facerec

REPO_ROOT = Path(__file__).resolve().parents[2]

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


def test_license_other_carries_license_name_in_the_yaml(model_dir):
    card = build_model_card(model_dir, {"license": "other", "license_name": "casia-research-only",
                                        "license_link": "LICENSE"})
    metadata = card.data.to_dict()
    assert (metadata["license"], metadata["license_name"], metadata["license_link"]) == (
        "other", "casia-research-only", "LICENSE")
    assert "license_name" not in build_model_card(model_dir, {}).data.to_dict()
    with pytest.raises(ValueError, match="license 'other' needs a license_name"):
        build_model_card(model_dir, {"license": "other"})


def test_identities_come_from_the_model_config(tmp_path):
    model = tiny_facerec()
    model.config.num_identities = 7
    model.save_pretrained(tmp_path / "seven")
    text = build_model_card(tmp_path / "seven", {"identities": 300}).text  # a summary's count does not override
    assert "arcface (scale 64.0), 7 identities" in text and "- Identities: 7" in text and "300" not in text
    tiny_facerec().save_pretrained(tmp_path / "none")  # a converted checkpoint: 0 in the config = not recorded
    text = build_model_card(tmp_path / "none", {}).text
    assert "number of identities not recorded" in text and "0 identities" not in text
    assert "300 identities" in build_model_card(tmp_path / "none", {"identities": 300}).text


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of a card."""
    return re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)


def test_card_snippets_run_against_the_saved_folder(tmp_path, shared_models_or_none, shared_data_or_none):
    """Every code block of the card, run as written (repo id = the saved folder) in a fresh interpreter, in a
    folder holding the files the snippets name: two aligned crops, two photos and the YuNet file."""
    from hf_facerec.hub.onnx import export_onnx, synthetic_face_crops

    folder = tmp_path / "model"
    tiny_facerec().save_pretrained(folder)
    FaceRecImageProcessor(size={"height": 112, "width": 96}).save_pretrained(folder)
    work = tmp_path / "work"
    work.mkdir()
    for i, crop in enumerate(synthetic_face_crops((112, 96), count=2), start=1):
        crop.save(work / f"face{i}.jpg")
    yunet = sorted((shared_models_or_none / "yunet").glob("*.onnx")) if shared_models_or_none else []
    photos = sorted((shared_data_or_none / "samples").glob("obama*.jpg")) if shared_data_or_none else []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_MODULES_CACHE": str(tmp_path / "modules")}
    ran = []
    for with_onnx in (False, True):
        if with_onnx:
            export_onnx(folder, folder / "onnx" / "model.onnx")
        blocks = _code_blocks(build_model_card(folder, {}, repo_id=str(folder)).text)
        onnx_blocks = ["python"] if with_onnx else ["bash", "python"]
        assert [lang for lang, _ in blocks] == ["python", "python", *onnx_blocks]
        python = []
        for lang, code in blocks:
            if "face-verification" in code:
                if not yunet or len(photos) < 2:
                    continue  # needs ../shared: the YuNet file and two photos
                (work / "face_detection_yunet.onnx").write_bytes(yunet[0].read_bytes())
                for name, photo in zip(("photo1.jpg", "photo2.jpg"), photos):
                    (work / name).write_bytes(photo.read_bytes())
                code += "\nassert 0.0 < result['score'] <= 1.0 and len(features[0]) == 16, (result, features)\n"
            if lang == "bash":  # before the python blocks that use its output
                command = code.strip().replace("hf-facerec", f"{sys.executable} -m hf_facerec.cli", 1)
                result = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True,
                                        timeout=300)
                assert result.returncode == 0, f"bash block failed:\n{code}\n{result.stderr[-3000:]}"
            else:
                python.append(code)
            ran.append(code)
        # one interpreter per card, each block in fresh globals: a block may not lean on another's names
        runner = ("import sys\nfor code in sys.argv[1:]:\n"
                  "    exec(compile(code, 'card', 'exec'), {'__name__': '__main__'})")
        result = subprocess.run([sys.executable, "-c", runner, *python], cwd=work, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"a python block failed:\n{result.stderr[-3000:]}"
    assert len(ran) == (7 if yunet and len(photos) >= 2 else 5)


@pytest.fixture
def shared_models_or_none():
    from tests.conftest import SHARED_MODELS

    return SHARED_MODELS if SHARED_MODELS.is_dir() else None


@pytest.fixture
def shared_data_or_none():
    from tests.conftest import SHARED_DATA

    return SHARED_DATA if SHARED_DATA.is_dir() else None


def test_cli_push_license_other_needs_and_writes_license_name(tmp_path, capsys):
    from hf_facerec.cli import main

    tiny_facerec().save_pretrained(tmp_path / "model")
    base = ["push", "--model", str(tmp_path / "model"), "--repo-id", "org/x", "--license", "other"]
    assert main(base + ["--dry-run", str(tmp_path / "bad")]) == 2
    assert "license 'other' needs a license_name" in capsys.readouterr().err
    assert main(base + ["--license-name", "research-only", "--license-link", "LICENSE",
                        "--dry-run", str(tmp_path / "up")]) == 0
    metadata = ModelCard((tmp_path / "up" / "README.md").read_text()).data.to_dict()
    assert (metadata["license"], metadata["license_name"], metadata["license_link"]) == ("other", "research-only",
                                                                                         "LICENSE")
