"""Model cards with real results: YAML metadata (incl. a `model-index`) + the sections people need.

The template is `hf_facerec/templates/modelcard_template.md`, rendered with `huggingface_hub.ModelCard.from_template`.
Everything measured comes from a results summary (a dict), so a card never states a number nobody measured:

``summary`` keys (all optional except the results):
    results: quickstart's ``{"verification": report, "bias": bias_report}``, or ``{"benchmarks": {name: report}}``,
        or the benchmark runner's ``results.json`` (``{"benchmarks": {name: {"verification", "bias": {grouping:
        report}}}, "settings": ...}``) - :func:`normalise_results` maps all three onto one shape.
    training: a dict of settings (:func:`training_summary` builds it from `FaceRecTrainingArguments`).
    data: a description of the training data; compute: hardware / time; identities: the count of training
        identities when the config does not hold it (the model config's ``num_identities`` wins: it is the margin
        head's real row count).
    calibration: a `ThresholdCalibration.to_dict()` (its TARs go into the thresholds table).
    base_model, datasets, plots (paths inside the repo; default: ``plots/*.png`` of the model folder).
    license (default apache-2.0); with ``license: other`` also ``license_name`` (a short id) and optionally
        ``license_link``, as the Hub asks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["TEMPLATE_PATH", "build_model_card", "normalise_results", "training_summary", "write_model_card"]

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "templates" / "modelcard_template.md"

# (metric key in a verification report, model-index metric type, human name)
_CARD_METRICS = (
    ("accuracy", "accuracy", "10-fold accuracy"),
    ("eer", "eer", "EER"),
    ("auc", "roc_auc", "ROC AUC"),
)
_TABLE_FARS = ("1e-04", "1e-03", "1e-02")
_LORA_KEYS = ("peft_method", "lora_rank", "lora_alpha", "lora_dropout", "use_rslora", "lora_target_modules")
_TRAINING_KEYS = (
    "finetune_mode", "margin_type", "margin_scale", "margin_kwargs", "partial_fc_sample_rate", "learning_rate",
    "backbone_learning_rate", "head_learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps",
    "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
) + _LORA_KEYS


def normalise_results(results: dict, default_name: str = "synthetic") -> dict[str, dict]:
    """``{benchmark: {"verification": report, "bias": {grouping: bias report}}}`` from any results shape
    (see the module docstring); an empty dict when there are none."""
    if not results:
        return {}
    if "benchmarks" in results:
        out = {}
        for name, entry in results["benchmarks"].items():
            if "verification" in entry:  # runner entry
                out[name] = {"verification": entry["verification"], "bias": dict(entry.get("bias") or {})}
            else:  # a bare verification report
                out[name] = {"verification": entry, "bias": {}}
        return out
    if "verification" in results:
        bias = results.get("bias") or {}
        return {default_name: {"verification": results["verification"], "bias": {"group": bias} if bias else {}}}
    raise ValueError(f"unrecognised results: expected 'benchmarks' or 'verification' keys, got {sorted(results)}")


def _eval_results(benchmark: str, report: dict) -> list[EvalResult]:
    """One model-index result per measured metric: accuracy, EER, AUC and TAR at each measured FAR."""
    common = dict(task_type="face-verification", task_name="Face verification", dataset_type=benchmark,
                  dataset_name=benchmark)
    results = [EvalResult(**common, metric_type=metric_type, metric_name=name, metric_value=float(report[key]))
               for key, metric_type, name in _CARD_METRICS if report.get(key) is not None]
    for far, tar in sorted((report.get("tar_at_far") or {}).items(), key=lambda item: float(item[0])):
        if tar is not None:
            results.append(EvalResult(**common, metric_type=f"tar_at_far_{far}", metric_name=f"TAR@FAR={far}",
                                      metric_value=float(tar)))
    return results


def _cell(value) -> str:
    if isinstance(value, float):  # small rates (FMR 6e-4) keep their significant digits
        return f"{value:.4f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2e}"
    return "n/a" if value is None else str(value)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _verification_section(benchmarks: dict[str, dict]) -> str:
    if not benchmarks:
        return "No evaluation results were recorded for this checkpoint."
    rows = []
    for name, entry in benchmarks.items():
        report = entry["verification"]
        tar = report.get("tar_at_far") or {}
        rows.append([name, report.get("accuracy"), report.get("accuracy_std"), report.get("eer"), report.get("auc"),
                     *(tar.get(f) for f in _TABLE_FARS), report.get("n_genuine"), report.get("n_impostor")])
    header = ["benchmark", "accuracy", "± std", "EER", "AUC", *(f"TAR@FAR={f}" for f in _TABLE_FARS),
              "genuine", "impostor"]
    return (_table(rows, header) + "\n\nTAR@FAR is `n/a` where the pair set has too few impostor pairs to measure "
            "that FAR (below 1 / #impostors).")


def _one_bias_table(name: str, grouping: str, bias: dict, plots: list[str]) -> str:
    title = f"### {name} by {grouping}\n\n"
    if "error" in bias or "skipped" in bias:
        return title + f"Not computed: {bias.get('error') or bias.get('skipped')}"
    if bias.get("kind") == "impostor_only":
        rows = [[g, r["fmr"], r["fmr_std_error"], r["n_impostor"]] for g, r in bias["groups"].items()]
        return (title + f"Impostor pairs only, threshold at FAR {bias['far']:g}:\n\n"
                + _table(rows, ["group", "FMR", "± SE", "impostor pairs"])
                + f"\n\nFMR max/min {_cell(bias.get('fmr_max_min_ratio'))}.")
    rows = [[g, r.get("accuracy"), r.get("accuracy_std"), r.get("fmr"), r.get("fnmr"), r.get("n_genuine"),
             r.get("n_impostor")] for g, r in bias["groups"].items()]
    rows += [[g, None, None, r.get("fmr"), r.get("fnmr"), r.get("n_genuine"), r.get("n_impostor")]
             for g, r in (bias.get("other_groups") or {}).items()]
    summary = bias["accuracy_summary"]
    figures = [f"![{Path(p).stem}]({p})" for p in plots if f"_{grouping}_" in Path(p).name or
               (grouping == "group" and Path(p).name.startswith("bias"))]
    return (
        title + f"One global threshold ({_cell(bias.get('threshold'))}) set at FAR {bias['far']:g} on all pairs:\n\n"
        + _table(rows, ["group", "accuracy", "± std", "FMR", "FNMR", "genuine", "impostor"])
        + f"\n\n- accuracy over groups: mean {_cell(summary['mean'])}, **STD {_cell(summary['std'])}**, "
        f"**SER {_cell(summary.get('ser'))}** (skewed error ratio, worst/best error)\n"
        f"- **FDR {_cell(bias['fdr'])}** (fairness discrepancy rate, 1 = fair), **GARBE {_cell(bias['garbe'])}** "
        f"(Gini aggregation rate for biometric equitability, 0 = fair)\n"
        f"- FMR max/min {_cell(bias.get('fmr_max_min_ratio'))}, FNMR max/min {_cell(bias.get('fnmr_max_min_ratio'))}"
        + ("\n\n" + "\n".join(figures) if figures else "")
    )


def _bias_section(benchmarks: dict[str, dict], plots: list[str]) -> str:
    tables = [_one_bias_table(name, grouping, bias, plots)
              for name, entry in benchmarks.items() for grouping, bias in entry["bias"].items()]
    return "\n\n".join(tables)


def _thresholds_section(config: dict, calibration: dict | None) -> str:
    thresholds = config.get("verification_thresholds") or {}
    if not thresholds:
        return ("No calibrated threshold is stored: measure one on pairs like your deployment data "
                "(`hf_facerec.hub.calibration`) before deciding anything with this model.")
    tar = (calibration or {}).get("tar") or {}
    rows = [[far, thresholds[far], tar.get(far)] for far in sorted(thresholds, key=float, reverse=True)]
    return (
        f"Cosine-similarity thresholds measured on **{config.get('threshold_pair_set')}** with flip TTA "
        f"`{config.get('threshold_flip') or 'none'}`; stored in `config.verification_thresholds` and used by the "
        "`face-verification` pipeline (default FAR 1e-3):\n\n"
        + _table(rows, ["FAR", "threshold", "TAR on that pair set"])
        + "\n\n`n/a`: the pair set has too few impostor pairs to measure that FAR. A threshold carries over only to "
        "data like the pair set: recalibrate on your own population."
    )


def training_summary(args, **extra) -> dict:
    """The card's training settings from a `FaceRecTrainingArguments` (LoRA keys only in lora mode) + `extra`."""
    keys = [k for k in _TRAINING_KEYS if not (k in _LORA_KEYS and getattr(args, "finetune_mode", None) != "lora")]
    summary = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    return {**summary, **extra}


def _num_identities(summary: dict, config: dict) -> int | None:
    """Training identities: the config's margin-head size (0 there means not recorded), else the summary's."""
    return config.get("num_identities") or summary.get("identities") or None


def _license(summary: dict) -> dict:
    """The card's licence fields; ``other`` needs a ``license_name`` (the Hub rejects it without one)."""
    fields = {"license": summary.get("license", "apache-2.0")}
    if fields["license"] == "other":
        if not summary.get("license_name"):
            raise ValueError("license 'other' needs a license_name (a short id such as 'my-research-license') and "
                             "preferably a license_link")
        fields.update(license_name=summary["license_name"], license_link=summary.get("license_link"))
    return fields


def _training_section(summary: dict, config: dict) -> str:
    training = dict(summary.get("training") or {})
    lines = [f"- Data: {summary.get('data', 'not recorded')}"]
    identities = _num_identities(summary, config)
    if identities:
        lines.append(f"- Identities: {identities}")
    lines.append(f"- Mode: {training.pop('finetune_mode', 'not recorded')}")
    lora = {k: training.pop(k) for k in _LORA_KEYS if k in training}
    if lora:
        lines.append("- LoRA: " + ", ".join(f"{k.replace('lora_', '')} {v}" for k, v in lora.items()))
    if training:
        lines.append("- Hyper-parameters: " + ", ".join(f"{k.replace('_', ' ')} {_cell(v)}" for k, v in training.items()))
    lines.append(f"- Compute: {summary.get('compute', 'not recorded')}")
    return "\n".join(lines)


def _plots(model_dir: Path, summary: dict) -> list[str]:
    if summary.get("plots") is not None:
        return [str(p) for p in summary["plots"]]
    return sorted(p.relative_to(model_dir).as_posix() for p in (model_dir / "plots").glob("*.png"))


def build_model_card(model_dir: str | Path, summary: dict, repo_id: str | None = None) -> ModelCard:
    """A card for the saved model in `model_dir` (``config.json`` [+ ``preprocessor_config.json``]) from a results
    `summary` (see the module docstring); `repo_id` names it in the usage snippets (default: the folder)."""
    from ..data.align import face_template

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    processor_path = model_dir / "preprocessor_config.json"
    processor = json.loads(processor_path.read_text()) if processor_path.exists() else {}
    benchmarks = normalise_results(summary.get("results") or {}, summary.get("benchmark_name", "synthetic"))
    eval_results = [r for name, e in benchmarks.items() for r in _eval_results(name, e["verification"])]
    model_name = repo_id.split("/")[-1] if repo_id else model_dir.name
    backbone = config["backbone_config"]["model_type"]
    height, width = (config.get("image_size") or [112, 112])[:2]
    template, _ = face_template((height, width))
    datasets = summary.get("datasets")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        **_license(summary),
        tags=["hf_facerec", "face-recognition", "face-verification", "custom_code", backbone,
              config.get("margin_type", "arcface")],
        datasets=[datasets] if isinstance(datasets, str) else datasets,
        base_model=summary.get("base_model"),
        model_name=model_name,
        eval_results=eval_results or None,
    )
    plots = _plots(model_dir, summary)
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
        face_size=f"{height}x{width}",
        template=template,
        image_mean=processor.get("image_mean", "n/a"),
        image_std=processor.get("image_std", "n/a"),
        margin_type=config.get("margin_type"),
        margin_scale=config.get("margin_scale"),
        margin_kwargs=config.get("margin_kwargs"),
        num_identities=_num_identities(summary, config),
        training_section=_training_section(summary, config),
        evaluation_section=_verification_section(benchmarks),
        bias_section=_bias_section(benchmarks, plots),
        thresholds_section=_thresholds_section(config, summary.get("calibration")),
        other_plots=[p for p in plots if not Path(p).name.startswith("bias")],
        has_onnx=(model_dir / "onnx" / "model.onnx").exists() or bool(summary.get("onnx")),
    )


def write_model_card(model_dir: str | Path, summary: dict, repo_id: str | None = None) -> Path:
    """Render the card of `model_dir` and write it as `model_dir/README.md`."""
    path = Path(model_dir) / "README.md"
    build_model_card(model_dir, summary, repo_id).save(path)
    return path
