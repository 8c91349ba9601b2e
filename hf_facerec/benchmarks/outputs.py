"""What the benchmark runner writes: ``results.json``, a markdown summary and PNG plots.

Plots (matplotlib, via :mod:`~hf_facerec.evaluation.plots`): ``roc.png`` and ``det.png`` with one
curve per benchmark; ``scores_<benchmark>.png`` (genuine vs impostor histogram); per grouping
``bias_<benchmark>_<grouping>_{accuracy,fmr,fnmr}.png`` bars with error bars (k-fold STD for
accuracy, binomial standard error ``sqrt(p (1 - p) / n)`` for the rates).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from hf_facerec.evaluation.plots import plot_det, plot_group_bars, plot_roc, plot_score_histogram
from hf_facerec.evaluation.verification import det_curve, roc_curve

__all__ = ["markdown_report", "write_outputs"]

_CURVE_POINTS = 2000  # curves of 15.6M IJB-C pairs are thinned to this many points for plotting
_TABLE_FARS = ("1e-04", "1e-03")


def _json_safe(value):
    """NaN/inf -> None, numpy scalars -> Python, recursively (``results.json`` is strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _thin(x: np.ndarray, y: np.ndarray, n: int = _CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Keep about ``n`` points of a curve whose ``x`` (rates) is non-decreasing, log-spaced in x
    (what a log axis shows), plus both ends."""
    if x.size <= n:
        return x, y
    positive = x[x > 0]
    low = positive[0] if positive.size else 1e-12
    grid = np.geomspace(low, max(float(x[-1]), low), n)
    index = np.unique(np.r_[0, np.clip(np.searchsorted(x, grid), 0, x.size - 1), x.size - 1])
    return x[index], y[index]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _binomial_se(rate, n) -> float:
    return float(np.sqrt(rate * (1.0 - rate) / n)) if n else 0.0


def _bias_bars(report: dict) -> dict[str, tuple[dict, dict, str]]:
    """``{metric: (values, errors, ylabel)}`` of one bias report (metrics without values left out)."""
    groups = report.get("groups", {})
    bars = {}
    if report.get("kind") == "pairs":
        accuracy = {g: r["accuracy"] for g, r in groups.items() if r.get("accuracy") is not None}
        bars["accuracy"] = (accuracy, {g: groups[g].get("accuracy_std") or 0.0 for g in accuracy}, "k-fold accuracy")
        fnmr = {g: r["fnmr"] for g, r in groups.items()}
        bars["fnmr"] = (fnmr, {g: _binomial_se(r["fnmr"], r["n_genuine"]) for g, r in groups.items()}, "FNMR")
        fmr = {g: r["fmr"] for g, r in groups.items()}
        fmr_n = {g: r["n_impostor"] for g, r in groups.items()}
        for g, r in report.get("other_groups", {}).items():  # e.g. "mixed" impostor pairs
            if "fmr" in r:
                fmr[g], fmr_n[g] = r["fmr"], r["n_impostor"]
        bars["fmr"] = (fmr, {g: _binomial_se(fmr[g], fmr_n[g]) for g in fmr}, "FMR")
    elif report.get("kind") == "impostor_only":
        fmr = {g: r["fmr"] for g, r in groups.items()}
        errors = {g: r["fmr_std_error"] for g, r in groups.items()}
        for g, r in report.get("other_groups", {}).items():
            fmr[g], errors[g] = r["fmr"], _binomial_se(r["fmr"], r["n_impostor"])
        bars["fmr"] = (fmr, errors, "FMR")
    return {metric: bar for metric, bar in bars.items() if bar[0]}


def _plot_all(results: dict, curves: dict, output_dir: Path) -> list[str]:
    written = []
    if curves:
        rocs = {name: _thin(*roc_curve(c["scores"], c["labels"])[:2]) for name, c in curves.items()}
        written.append(plot_roc(rocs, output_dir / "roc.png", title="ROC"))
        dets = {name: _thin(*det_curve(c["scores"], c["labels"])[:2]) for name, c in curves.items()}
        written.append(plot_det(dets, output_dir / "det.png", title="DET"))
    for name, c in curves.items():
        threshold = results["benchmarks"][name]["verification"].get("best_threshold")
        written.append(plot_score_histogram(c["scores"], c["labels"], output_dir / f"scores_{_safe_name(name)}.png",
                                            threshold=threshold, title=f"{name}: genuine vs impostor scores"))
    for name, result in results["benchmarks"].items():
        for grouping, report in result.get("bias", {}).items():
            at_far = f" (threshold at FAR {report['far']:g})" if report.get("far") else ""
            for metric, (values, errors, ylabel) in _bias_bars(report).items():
                title = f"{name} by {grouping}" + ("" if metric == "accuracy" else at_far)  # k-fold: own thresholds
                path = output_dir / f"bias_{_safe_name(name)}_{_safe_name(grouping)}_{metric}.png"
                written.append(plot_group_bars(values, errors, path, ylabel=ylabel, title=title))
    return [str(p) for p in written]


def _fmt(value, percent: bool = False, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.{digits}g}"


def _bias_markdown(name: str, grouping: str, report: dict) -> list[str]:
    if "error" in report:
        return [f"### Bias: {name} by {grouping}", "", f"Not computed: {report['error']}", ""]
    scope = " over the pairs of the groups having both classes" if report.get("other_groups") else ""
    threshold = f"Global threshold {_fmt(report['threshold'])} at FAR {report['far']:g}{scope}."
    lines = [f"### Bias: {name} by {grouping}", "", threshold, ""]
    if report["kind"] == "impostor_only":
        lines += ["| group | FMR | ± SE | false matches | impostor pairs |", "|---|---|---|---|---|"]
        lines += [f"| {g} | {_fmt(r['fmr'])} | {_fmt(r['fmr_std_error'])} | {r['false_matches']} | {r['n_impostor']} |"
                  for g, r in report["groups"].items()]
        lines += [f"| {g} | {_fmt(r['fmr'])} | – | – | {r['n_impostor']} |" for g, r in report.get("other_groups", {}).items()]
        lines += ["", f"FMR max/min ratio {_fmt(report['fmr_max_min_ratio'])}, Gini(FMR) {_fmt(report['fmr_gini'])}.", ""]
        return lines
    lines += ["| group | accuracy (%) | ± STD | FMR | FNMR | genuine | impostor |", "|---|---|---|---|---|---|---|"]
    for g, r in report["groups"].items():
        lines.append(f"| {g} | {_fmt(r['accuracy'], True)} | {_fmt(r['accuracy_std'], True)} | {_fmt(r['fmr'])} "
                     f"| {_fmt(r['fnmr'])} | {r['n_genuine']} | {r['n_impostor']} |")
    for g, r in report.get("other_groups", {}).items():
        lines.append(f"| {g} | – | – | {_fmt(r.get('fmr'))} | {_fmt(r.get('fnmr'))} | {r['n_genuine']} | {r['n_impostor']} |")
    s = report["accuracy_summary"]
    lines += ["", f"Accuracy mean {_fmt(s['mean'], True)}%, STD {_fmt(s['std'], True)}, SER {_fmt(s['ser'])}; "
              f"FDR {_fmt(report['fdr'])}, GARBE {_fmt(report['garbe'])}, FMR max/min {_fmt(report['fmr_max_min_ratio'])}, "
              f"FNMR max/min {_fmt(report['fnmr_max_min_ratio'])} (alpha {report['alpha']}).", ""]
    return lines


def markdown_report(results: dict) -> str:
    """A markdown summary of a runner results dict: verification, identification, bias, skipped."""
    settings = results["settings"]
    lines = ["# Face recognition evaluation", "",
             f"Model `{results['model']}` (fingerprint `{results['model_fingerprint'][:12]}`), flip TTA `{settings['flip']}`, "
             f"alignment `{settings['align']}`, input {settings['face_size'][0]}x{settings['face_size'][1]} (HxW).", ""]
    if results["benchmarks"]:
        lines += ["## Verification", "", "| benchmark | pairs | images | accuracy (%) | ± STD | "
                  + " | ".join(f"TAR@FAR={f}" for f in _TABLE_FARS) + " | EER (%) | AUC | no face |",
                  "|---|---|---|---|---|" + "---|" * len(_TABLE_FARS) + "---|---|---|"]
        for name, r in results["benchmarks"].items():
            v = r["verification"]
            tars = " | ".join(_fmt(v["tar_at_far"].get(f)) for f in _TABLE_FARS)
            lines.append(f"| {name} | {r['n_pairs']} | {r['n_images']} | {_fmt(v['accuracy'], True)} | {_fmt(v['accuracy_std'], True)} "
                         f"| {tars} | {_fmt(v['eer'], True)} | {_fmt(v['auc'])} | {r.get('n_no_face', 0)} |")
        lines.append("")
    ident = [(n, k, rep) for n, r in results["benchmarks"].items() for k, rep in r.get("identification", {}).items()]
    if ident:
        lines += ["## Identification", "", "| benchmark | probe vs gallery | rank-1 | rank-5 | TPIR@FPIR=1e-2 | TPIR@FPIR=1e-1 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {k} | {_fmt(rep.get('rank_1'))} | {_fmt(rep.get('rank_5'))} | {_fmt(rep['tpir_at_fpir'].get('1e-02'))} "
                  f"| {_fmt(rep['tpir_at_fpir'].get('1e-01'))} |" for n, k, rep in ident]
        lines.append("")
    for name, r in results["benchmarks"].items():
        for grouping, report in r.get("bias", {}).items():
            lines += _bias_markdown(name, grouping, report)
    if results["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {n}: {s['reason']}; expected one of {', '.join(s['expected'])}" for n, s in results["skipped"].items()]
        lines.append("")
    return "\n".join(lines)


def write_outputs(results: dict, curves: dict, output_dir, plots: bool = True) -> list[str]:
    """Write ``results.json``, ``results.md`` and (with ``plots``) the PNGs into ``output_dir``.

    Args:
        results: the runner's results dict (made JSON-safe here).
        curves: ``{benchmark: {"scores": (P,), "labels": (P,)}}`` for the ROC/DET/histogram plots.
    Returns:
        The paths written, JSON and markdown first.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = [str(output_dir / "results.json"), str(output_dir / "results.md")]
    if plots:
        files += _plot_all(results, curves, output_dir)
    results.update(_json_safe({k: v for k, v in results.items() if k != "files"}))
    results["files"] = files
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False))
    (output_dir / "results.md").write_text(markdown_report(results))
    return files
