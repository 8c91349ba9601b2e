"""Bias dashboard and Model tab content: results JSON in, bar charts and markdown tables out; what the Verify and
Model tabs say about the model's calibration (:func:`calibration_note`, :func:`model_tab`).

Accepts both results formats of the package: the benchmark runner's ``results.json``
(``benchmarks.<name>.bias.<grouping>``, see ``hf_facerec.benchmarks.runner``) and the quickstart / Space summary
(``results.bias``). Bars are drawn by ``hf_facerec.evaluation.plot_group_bars`` (the package's one bar plot) into a
temporary folder and loaded into memory, so no file outlives the request.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from hf_facerec.data.images import load_rgb
from hf_facerec.evaluation import plot_group_bars
from hf_facerec.demo.operating_points import UNCALIBRATED_THRESHOLD, SpaceInputError, far_flag, verification_reports

MAX_RESULTS_BYTES = 20 * 2**20
#: Nesting levels allowed in a results JSON (real ones have about 6).
MAX_RESULTS_DEPTH = 32
_LEGEND = ("STD: spread of per-group accuracy; SER: worst / best error; FDR: 1 = fair (de Freitas Pereira & Marcel "
           "2022); GARBE: 0 = fair (Howard et al. 2022); `n/a` = undefined (e.g. a zero rate in a ratio).")


def bias_reports(results: Mapping) -> dict[str, dict]:
    """``{"<benchmark> by <grouping>": bias report}`` of a results dict (reports with an ``error`` are left out)."""
    reports = {}
    for bench, report in verification_reports(results).items():
        for grouping, bias in (report.get("bias") or {}).items():
            if isinstance(bias, Mapping) and isinstance(bias.get("groups"), Mapping) and bias["groups"]:
                reports[f"{bench} by {grouping}"] = dict(bias)
    return reports


def _depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), walked with a stack (no recursion); stops past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_results(data: bytes) -> dict:
    """A results JSON upload -> dict.

    Raises:
        SpaceInputError: non-JSON, over :data:`MAX_RESULTS_BYTES`, nested deeper than :data:`MAX_RESULTS_DEPTH`
            (real results files are about 6 levels deep), or without a bias report.
    """
    if len(data) > MAX_RESULTS_BYTES:
        raise SpaceInputError(f"The results file is larger than {MAX_RESULTS_BYTES // 2**20} MB.")
    too_deep = SpaceInputError(f"The results file is nested more than {MAX_RESULTS_DEPTH} levels deep; that is not "
                               "a results file (from `hf-facerec evaluate` or `quickstart`).")
    try:
        results = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpaceInputError("That file is not a JSON results file (from `hf-facerec evaluate` or `quickstart`).") from err
    except RecursionError as err:  # json's parser recurses once per level: thousands of "[" exhaust the stack
        raise too_deep from err
    if _depth(results, MAX_RESULTS_DEPTH) > MAX_RESULTS_DEPTH:  # deep but parsed: would still break copies downstream
        raise too_deep
    if not isinstance(results, Mapping) or not bias_reports(results):
        raise SpaceInputError("No bias report in that results JSON: run the evaluation with groups (e.g. --group-file).")
    return dict(results)


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}%" if percent else f"{value:.4g}"


def _fmr_note(group: Mapping, far) -> str:
    """" (unmeasurable: n=9 < 100)" for a group whose impostor pairs cannot measure the FAR; "" otherwise."""
    from hf_facerec.evaluation.sample_size import unmeasurable_note

    if group.get("fmr_measurable") is not False or not far:
        return ""
    return f" (unmeasurable: {unmeasurable_note(group.get('n_impostor', 0), far)})"


def bias_tables(report: Mapping) -> str:
    """Markdown: per-group accuracy / FMR / FNMR at the global threshold, then STD, SER, FDR, GARBE and ratios."""
    far = report.get("far")
    lines = [f"Global threshold {_fmt(report.get('threshold'))}"
             + (f", set for FAR {far:g} over all pairs." if far is not None else "."), "",
             "| group | accuracy | ± STD | FMR | FNMR | genuine | impostor |", "|---|---|---|---|---|---|---|"]
    for group, r in report["groups"].items():
        lines.append(f"| {group} | {_fmt(r.get('accuracy'), True)} | {_fmt(r.get('accuracy_std'), True)} | {_fmt(r.get('fmr'))} "
                     f"{_fmr_note(r, far)} "
                     f"| {_fmt(r.get('fnmr'))} | {r.get('n_genuine', 'n/a')} | {r.get('n_impostor', 'n/a')} |")
    summary = report.get("accuracy_summary") or {}
    values = [_fmt(summary.get("std"), True), _fmt(summary.get("ser"))]
    values += [_fmt(report.get(key)) for key in ("fdr", "garbe", "fmr_max_min_ratio", "fnmr_max_min_ratio")]
    lines += ["", "| STD of accuracy | SER | FDR | GARBE | FMR max/min | FNMR max/min |", "|---|---|---|---|---|---|",
              "| " + " | ".join(values) + " |", "", _LEGEND]
    return "\n".join(lines)


def bias_charts(report: Mapping, title: str = "") -> list[Image.Image | None]:
    """Three bar charts (accuracy, FMR, FNMR per group) as in-memory images; None for a metric with no values. The bars
    are the runner's (:func:`hf_facerec.benchmarks.outputs.bias_bars`): n on each, intervals explained, too-small
    groups marked unmeasurable."""
    from hf_facerec.benchmarks.outputs import bias_bars

    bars = bias_bars(dict(report))
    charts = []
    with tempfile.TemporaryDirectory(prefix="facerec-bias-") as folder:
        for key in ("accuracy", "fmr", "fnmr"):
            if key not in bars:
                charts.append(None)
                continue
            path = plot_group_bars(path=Path(folder) / f"{key}.png", title=title, **bars[key])
            charts.append(load_rgb(path))  # the package's one decode path
    return charts


def benchmark_table(results: Mapping | None) -> str:
    """Markdown verification table (accuracy, EER, AUC, TAR@FAR) of every benchmark in a results dict."""
    reports = verification_reports(results or {})
    if not reports:
        return "No benchmark results were found for this model."
    fars = ("1e-03", "1e-02", "1e-01")
    lines = ["| benchmark | accuracy | ± STD | EER | AUC | " + " | ".join(f"TAR@FAR={f}" for f in fars) + " | pairs |",
             "|---|---|---|---|---|" + "---|" * len(fars) + "---|"]
    for name, report in reports.items():
        v = report.get("verification") or {}
        tar = v.get("tar_at_far") or {}
        pairs = (v.get("n_genuine") or 0) + (v.get("n_impostor") or 0)
        lines.append(f"| {name} | {_fmt(v.get('accuracy'), True)} | {_fmt(v.get('accuracy_std'), True)} | {_fmt(v.get('eer'), True)} "
                     f"| {_fmt(v.get('auc'))} | " + " | ".join(_fmt(tar.get(f)) + far_flag(v, f) for f in fars) + f" | {pairs} |")
    return "\n".join(lines)


def calibration_note(demo) -> str:
    """One paragraph for the Verify tab: where the thresholds were measured, or that there are none (uncalibrated)."""
    sources = sorted({p.source for p in demo.operating_points if p.calibrated})
    if sources:
        return f"Operating points measured for this model on: {', '.join(sources)}."
    return (f"**Uncalibrated model.** No threshold was measured for `{demo.model_source}` (no `verification_thresholds` "
            f"in its config, no results JSON), so decisions use the custom threshold, default "
            f"{UNCALIBRATED_THRESHOLD:.2f}: a typical value, NOT measured for this model, so no false accept rate is "
            "known. Calibrate it on real pairs with `hf_facerec.hub.calibration` (`hf-facerec push --calibrate-pairs`).")


def model_tab(demo) -> str:
    """Markdown of the Model tab: benchmarks (synthetic ones only for the synthetic model), operating points, card."""
    hidden = ""
    if demo.hidden_benchmarks:
        hidden = (f"\n\nNot shown: {', '.join(demo.hidden_benchmarks)} (figures on synthetic drawings say nothing about "
                  "a model for real photos).")
    if demo.calibrated:
        rows = "\n".join(f"| {p.name} | {p.threshold:.4f} | {p.source} |" for p in demo.operating_points)
        points = f"| point | threshold | measured on |\n|---|---|---|\n{rows}"
    else:
        points = calibration_note(demo)
    return (f"## Benchmarks\n{benchmark_table(demo.results)}{hidden}\n\n## Operating points\n{points}\n\n"
            f"## Model card\n{strip_front_matter(demo.card)}")


def strip_front_matter(card: str) -> str:
    """A model card without its YAML header (``---`` ... ``---``), which gr.Markdown would show as text."""
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4:].lstrip()
    return card
