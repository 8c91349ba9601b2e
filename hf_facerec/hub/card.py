"""Model cards with real results: YAML metadata (incl. a `model-index`) + the sections people need.

The template is `hf_facerec/templates/modelcard_template.md`, rendered with `huggingface_hub.ModelCard.from_template`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "templates" / "modelcard_template.md"

# (metric key in a verification report, model-index metric type, human name)
_CARD_METRICS = (
    ("accuracy", "accuracy", "10-fold accuracy"),
    ("eer", "eer", "EER"),
    ("auc", "roc_auc", "ROC AUC"),
)


def _eval_results(benchmark: str, report: dict) -> list[EvalResult]:
    results = [
        EvalResult(task_type="face-verification", task_name="Face verification", dataset_type=benchmark,
                   dataset_name=benchmark, metric_type=metric_type, metric_name=name, metric_value=report[key])
        for key, metric_type, name in _CARD_METRICS
        if report.get(key) is not None
    ]
    for far, tar in (report.get("tar_at_far") or {}).items():
        if tar is not None:
            results.append(EvalResult(
                task_type="face-verification", task_name="Face verification", dataset_type=benchmark,
                dataset_name=benchmark, metric_type=f"tar_at_far_{far}", metric_name=f"TAR@FAR={far}",
                metric_value=tar))
    return results


def _table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else ("n/a" if value is None else str(value))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _verification_section(benchmarks: dict[str, dict]) -> str:
    rows = []
    for name, report in benchmarks.items():
        tar = report.get("tar_at_far") or {}
        rows.append([name, report.get("accuracy"), report.get("accuracy_std"), report.get("eer"), report.get("auc"),
                     tar.get("1e-03"), tar.get("1e-02"), report.get("n_genuine"), report.get("n_impostor")])
    header = ["benchmark", "accuracy", "std", "EER", "AUC", "TAR@FAR=1e-3", "TAR@FAR=1e-2", "genuine", "impostor"]
    return _table(rows, header)


def _bias_section(bias: dict) -> str:
    rows = [[group, r.get("accuracy"), r.get("fmr"), r.get("fnmr"), r.get("n_genuine"), r.get("n_impostor")]
            for group, r in bias["groups"].items()]
    summary = bias["accuracy_summary"]
    return (
        f"Per group, at one global threshold set for FAR {bias['far']:g} on all pairs:\n\n"
        + _table(rows, ["group", "accuracy", "FMR", "FNMR", "genuine", "impostor"])
        + f"\n\nAccuracy mean {summary['mean']:.4f}, STD {summary['std']:.4f}, SER {summary['ser']}; "
        f"FDR {bias['fdr']:.4f}; GARBE {bias['garbe']:.4f}; FMR max/min {bias['fmr_max_min_ratio']}; "
        f"FNMR max/min {bias['fnmr_max_min_ratio']}."
    )


def build_model_card(model_dir: str | Path, summary: dict, repo_id: str | None = None) -> ModelCard:
    """A card for the saved model in `model_dir` from a results summary.

    `summary` holds ``results`` (``{"verification": report}`` or ``{"benchmarks": {name: report}}``, optional
    ``bias``), ``training`` (a dict of settings) and ``data`` (a description).
    """
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    processor_path = model_dir / "preprocessor_config.json"
    processor = json.loads(processor_path.read_text()) if processor_path.exists() else {}
    results = summary.get("results", {})
    benchmarks = results.get("benchmarks") or {summary.get("benchmark_name", "synthetic"): results["verification"]}
    eval_results = [r for name, report in benchmarks.items() for r in _eval_results(name, report)]
    model_name = repo_id.split("/")[-1] if repo_id else model_dir.name
    backbone = config["backbone_config"]["model_type"]
    card_data = ModelCardData(
        library_name="hf_facerec",
        pipeline_tag="image-feature-extraction",
        license="apache-2.0",
        tags=["face-recognition", "face-verification", backbone, config.get("margin_type", "arcface")],
        base_model=summary.get("base_model"),
        model_name=model_name,
        eval_results=eval_results or None,
    )
    training = summary.get("training", {})
    training_lines = [f"- Data: {summary.get('data', 'not recorded')}"]
    training_lines += [f"- {key.replace('_', ' ')}: {value}" for key, value in training.items()]
    face_size = config.get("image_size", [112, 112])
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id=repo_id or str(model_dir),
        backbone=backbone,
        base_model=summary.get("base_model"),
        pooling=config.get("pooling"),
        embedding_head=config.get("embedding_head"),
        embedding_size=config.get("embedding_size"),
        face_size=f"{face_size[0]}x{face_size[1]}",
        image_mean=processor.get("image_mean", "n/a"),
        image_std=processor.get("image_std", "n/a"),
        margin_type=config.get("margin_type"),
        margin_scale=config.get("margin_scale"),
        margin_kwargs=config.get("margin_kwargs"),
        num_identities=config.get("num_identities"),
        training_section="\n".join(training_lines),
        evaluation_section=_verification_section(benchmarks),
        bias_section=_bias_section(results["bias"]) if "groups" in results.get("bias", {}) else "",
    )


def write_model_card(model_dir: str | Path, summary: dict, repo_id: str | None = None) -> Path:
    """Render the card of `model_dir` and write it as `model_dir/README.md`."""
    path = Path(model_dir) / "README.md"
    build_model_card(model_dir, summary, repo_id).save(path)
    return path
