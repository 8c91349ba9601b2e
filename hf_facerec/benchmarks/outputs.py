"""What the benchmark runner writes: ``results.json``, a markdown summary and PNG plots.

Plots (matplotlib, via :mod:`~hf_facerec.evaluation.plots`): ``roc.png`` (AUC in the legend) and
``det.png`` with one curve per benchmark; ``scores_<benchmark>.png`` (genuine vs impostor histogram,
the best-accuracy threshold named); per grouping ``bias_<benchmark>_<grouping>_{accuracy,fmr,fnmr}.png``
bars with n on each bar and error bars clipped to [0, 1] (k-fold STD for accuracy, the Wilson
95% interval for the rates), unmeasurable values hatched "n/a".

Small samples (:mod:`~hf_facerec.evaluation.sample_size`): the markdown writes "n/a (n=177 < 1000)"
for an operating point the data cannot measure and marks k-fold accuracies from tiny folds with a
footnote; ``results.json`` keeps the core's flags and adds ``unmeasurable`` (every flagged value,
``"<benchmark>/<section>/<key>"``) and ``sample_size_rules`` (the rules in words).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from hf_facerec._files import atomic_write, check_output_dir
from hf_facerec.evaluation.plots import plot_det, plot_group_bars, plot_roc, plot_score_histogram
from hf_facerec.evaluation.sample_size import (
    CI_LABEL,
    MEASURABLE_FAR_FACTOR,
    MIN_PAIRS_PER_FOLD,
    far_measurable,
    unmeasurable_note,
    wilson_interval,
)
from hf_facerec.evaluation.verification import det_curve, roc_curve

__all__ = ["markdown_report", "write_outputs"]

_CURVE_POINTS = 2000  # curves of 15.6M IJB-C pairs are thinned to this many points for plotting
_TABLE_FARS = ("1e-04", "1e-03")
_RULES = {
    "far": f"a value at FAR f from n impostor pairs is measurable only when n >= ceil({MEASURABLE_FAR_FACTOR:g}/f): "
           "with fewer, one false match already exceeds f and the data can only show FAR 0",
    "kfold": f"a k-fold accuracy is measurable only when every test fold holds >= {MIN_PAIRS_PER_FOLD} pairs "
             "(a fold of m pairs moves in steps of 1/m)",
    "error_bars": f"rates (FMR, FNMR): {CI_LABEL}; k-fold accuracy: +- 1 STD over folds; both clipped to [0, 1]",
}


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


def _rate_cis(rates: dict, values: dict, key: str, n_key: str) -> dict | None:
    """Each group's Wilson interval of ``key`` (the core's, or rebuilt from the rate and n for older results.json);
    None (no error bars) when a group's count is missing (a hand-made results file)."""
    if any(rates[g].get(f"{key}_ci") is None and not isinstance(rates[g].get(n_key), int) for g in values):
        return None
    return {g: tuple(rates[g][f"{key}_ci"]) if rates[g].get(f"{key}_ci") is not None
            else wilson_interval(round(rates[g][key] * rates[g][n_key]), rates[g][n_key]) for g in values}


def _counts(rates: dict, values: dict, *n_keys: str) -> dict:
    return {g: sum(rates[g][k] for k in n_keys) for g in values if all(isinstance(rates[g].get(k), int) for k in n_keys)}


def _fmr_flag(r: dict, far) -> str | None:
    """The "n=9 < 1000" note of an unmeasurable group FMR, else None (flag from the core, or the rule)."""
    measurable = r.get("fmr_measurable")
    if measurable is None and far and isinstance(r.get("n_impostor"), int):
        measurable = bool(far_measurable(r["n_impostor"], far))
    return unmeasurable_note(r["n_impostor"], far) if measurable is False else None


def bias_bars(report: dict) -> dict[str, dict]:
    """``{metric: plot_group_bars keyword arguments}`` of one bias report (metrics without values left out): values,
    error bars (Wilson intervals for rates, +-1 STD for accuracy), n per bar and the unmeasurable bars. The Space
    draws its charts from it too."""
    groups, far = report.get("groups", {}), report.get("far")
    rates = {g: r for g, r in groups.items()}
    rates.update({g: r for g, r in report.get("other_groups", {}).items()})  # e.g. "mixed" impostor pairs
    bars, kind = {}, report.get("kind", "pairs")  # evaluation.bias_report's own reports carry no kind: pairs
    if kind == "pairs":
        accuracy = {g: r["accuracy"] for g, r in groups.items() if r.get("accuracy") is not None}
        bars["accuracy"] = dict(
            values=accuracy, errors={g: groups[g].get("accuracy_std") or 0.0 for g in accuracy}, ylabel="k-fold accuracy",
            counts=_counts(groups, accuracy, "n_genuine", "n_impostor"), error_label="+- 1 STD over folds",
            unmeasurable={g: f"folds of {groups[g].get('min_fold_pairs')} < {MIN_PAIRS_PER_FOLD} pairs"
                          for g in accuracy if groups[g].get("accuracy_measurable") is False})
        fnmr = {g: r["fnmr"] for g, r in groups.items() if r.get("fnmr") is not None}
        bars["fnmr"] = dict(values=fnmr, errors=_rate_cis(groups, fnmr, "fnmr", "n_genuine"), ylabel="FNMR",
                            counts=_counts(groups, fnmr, "n_genuine"), error_label=CI_LABEL)
    if kind in ("pairs", "impostor_only"):
        fmr = {g: r["fmr"] for g, r in rates.items() if r.get("fmr") is not None}
        flags = {g: _fmr_flag(rates[g], far) for g in fmr}
        bars["fmr"] = dict(values=fmr, errors=_rate_cis(rates, fmr, "fmr", "n_impostor"), ylabel="FMR",
                           counts=_counts(rates, fmr, "n_impostor"), error_label=CI_LABEL,
                           unmeasurable={g: note for g, note in flags.items() if note})
    return {metric: bar for metric, bar in bars.items() if bar["values"]}


def _plot_all(results: dict, curves: dict, output_dir: Path) -> list[str]:
    written = []
    if curves:
        rocs = {name: _thin(*roc_curve(c["scores"], c["labels"])[:2]) for name, c in curves.items()}
        aucs = {name: results["benchmarks"][name]["verification"].get("auc") for name in curves}
        written.append(plot_roc(rocs, output_dir / "roc.png", title="ROC", aucs=aucs))
        dets = {name: _thin(*det_curve(c["scores"], c["labels"])[:2]) for name, c in curves.items()}
        written.append(plot_det(dets, output_dir / "det.png", title="DET"))
    for name, c in curves.items():
        threshold = results["benchmarks"][name]["verification"].get("best_threshold")
        written.append(plot_score_histogram(c["scores"], c["labels"], output_dir / f"scores_{_safe_name(name)}.png",
                                            threshold=threshold, title=f"{name}: genuine vs impostor scores",
                                            threshold_label="best-accuracy threshold (all pairs)"))
    for name, result in results["benchmarks"].items():
        for grouping, report in result.get("bias", {}).items():
            at_far = f" (threshold at FAR {report['far']:g})" if report.get("far") else ""
            for metric, bar in bias_bars(report).items():
                title = f"{name} by {grouping}" + ("" if metric == "accuracy" else at_far)  # k-fold: own thresholds
                path = output_dir / f"bias_{_safe_name(name)}_{_safe_name(grouping)}_{metric}.png"
                written.append(plot_group_bars(path=path, title=title, **bar))
    return [str(p) for p in written]


def _fmt(value, percent: bool = False, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.{digits}g}"


def _ci_cell(r: dict, key: str, n_key: str, far=None) -> str:
    """A rate with its 95% interval, ``"0.0012 [0.0004, 0.0031]"``; ``"n/a (n=9 < 1000)"`` for an unmeasurable FMR."""
    if r.get(key) is None:
        return "–"
    note = _fmr_flag(r, far) if key == "fmr" else None
    if note:
        return f"n/a ({note})"
    intervals = _rate_cis({0: r}, {0: r[key]}, key, n_key)
    if intervals is None:
        return _fmt(r[key])
    low, high = intervals[0]
    return f"{_fmt(r[key])} [{_fmt(low, digits=2)}, {_fmt(high, digits=2)}]"


def _accuracy_cell(r: dict, notes: list[str]) -> str:
    """k-fold accuracy (%), with a footnote mark when its folds are too small to measure it."""
    cell = _fmt(r.get("accuracy"), True)
    if r.get("accuracy_measurable") is False:
        note = (f"† k-fold accuracy with a smallest test fold of {r.get('min_fold_pairs')} pair(s), fewer than "
                f"{MIN_PAIRS_PER_FOLD}: fold accuracies move in steps of 1/(fold size), not a measurement.")
        if note not in notes:
            notes.append(note)
        cell += " †"
    return cell


def _bias_markdown(name: str, grouping: str, report: dict) -> list[str]:
    if "error" in report:
        return [f"### Bias: {name} by {grouping}", "", f"Not computed: {report['error']}", ""]
    scope = " over the pairs of the groups having both classes" if report.get("other_groups") else ""
    threshold = f"Global threshold {_fmt(report['threshold'])} at FAR {report['far']:g}{scope}."
    lines, far, notes = [f"### Bias: {name} by {grouping}", "", threshold, ""], report.get("far"), []
    flagged = set(report.get("unmeasurable", []))
    if report["kind"] == "impostor_only":
        lines += ["| group | FMR [95% CI] | ± SE | false matches | impostor pairs |", "|---|---|---|---|---|"]
        lines += [f"| {g} | {_ci_cell(r, 'fmr', 'n_impostor', far)} | {_fmt(r['fmr_std_error'])} | {r['false_matches']} "
                  f"| {r['n_impostor']} |" for g, r in report["groups"].items()]
        lines += [f"| {g} | {_ci_cell(r, 'fmr', 'n_impostor', far)} | – | {r.get('false_matches', '–')} | {r['n_impostor']} |"
                  for g, r in report.get("other_groups", {}).items()]
        mark = " (over unmeasurable group FMRs: not measurements)" if "fmr_gini" in flagged else ""
        lines += ["", f"FMR max/min ratio {_fmt(report['fmr_max_min_ratio'])}, Gini(FMR) {_fmt(report['fmr_gini'])}{mark}.", ""]
        return lines + _rates_footer(report)
    lines += ["| group | accuracy (%) | ± STD | FMR [95% CI] | FNMR [95% CI] | genuine | impostor |",
              "|---|---|---|---|---|---|---|"]
    for g, r in report["groups"].items():
        lines.append(f"| {g} | {_accuracy_cell(r, notes)} | {_fmt(r['accuracy_std'], True)} "
                     f"| {_ci_cell(r, 'fmr', 'n_impostor', far)} | {_ci_cell(r, 'fnmr', 'n_genuine')} "
                     f"| {r['n_genuine']} | {r['n_impostor']} |")
    for g, r in report.get("other_groups", {}).items():
        lines.append(f"| {g} | – | – | {_ci_cell(r, 'fmr', 'n_impostor', far)} | {_ci_cell(r, 'fnmr', 'n_genuine')} "
                     f"| {r['n_genuine']} | {r['n_impostor']} |")
    s = report["accuracy_summary"]
    mark = " (FDR, GARBE and FMR max/min use unmeasurable group FMRs: not measurements)" if "fdr" in flagged else ""
    lines += ["", f"Accuracy mean {_fmt(s['mean'], True)}%, STD {_fmt(s['std'], True)}, SER {_fmt(s['ser'])}; "
              f"FDR {_fmt(report['fdr'])}, GARBE {_fmt(report['garbe'])}, FMR max/min {_fmt(report['fmr_max_min_ratio'])}, "
              f"FNMR max/min {_fmt(report['fnmr_max_min_ratio'])} (alpha {report['alpha']}){mark}.", ""]
    return lines + ([*notes, ""] if notes else []) + _rates_footer(report)


def _rates_footer(report: dict) -> list[str]:
    return [f"Intervals: {report.get('ci', CI_LABEL)}. n/a: fewer than ceil(1/FAR) impostor pairs, "
            "so the FMR at that threshold cannot be measured.", ""]


def _tar_cell(v: dict, far_key: str) -> str:
    """TAR@FAR, or ``"n/a (n=177 < 1000)"`` where the impostors cannot measure that FAR (never a bare 0 or dash)."""
    measurable = (v.get("tar_at_far_measurable") or {}).get(far_key)
    if measurable is None and v.get("n_impostor"):
        measurable = bool(far_measurable(v["n_impostor"], float(far_key)))
    if measurable is False:
        return f"n/a ({unmeasurable_note(v['n_impostor'], float(far_key))})"
    return _fmt(v["tar_at_far"].get(far_key))


def _tpir_cell(rep: dict, key: str) -> str:
    if (rep.get("tpir_at_fpir_measurable") or {}).get(key) is False:
        return f"n/a ({unmeasurable_note(rep['n_non_mated'], float(key))} non-mated)"
    return _fmt(rep["tpir_at_fpir"].get(key))


def markdown_report(results: dict) -> str:
    """A markdown summary of a runner results dict: verification, identification, bias, skipped."""
    settings = results["settings"]
    lines = ["# Face recognition evaluation", "",
             f"Model `{results['model']}` (fingerprint `{results['model_fingerprint'][:12]}`), flip TTA `{settings['flip']}`, "
             f"alignment `{settings['align']}`, input {settings['face_size'][0]}x{settings['face_size'][1]} (HxW).", ""]
    if results["benchmarks"]:
        notes: list[str] = []
        lines += ["## Verification", "", "| benchmark | pairs | images | accuracy (%) | ± STD | "
                  + " | ".join(f"TAR@FAR={f}" for f in _TABLE_FARS) + " | EER (%) | AUC | no face |",
                  "|---|---|---|---|---|" + "---|" * len(_TABLE_FARS) + "---|---|---|"]
        for name, r in results["benchmarks"].items():
            v = r["verification"]
            tars = " | ".join(_tar_cell(v, f) for f in _TABLE_FARS)
            lines.append(f"| {name} | {r['n_pairs']} | {r['n_images']} | {_accuracy_cell(v, notes)} "
                         f"| {_fmt(v['accuracy_std'], True)} | {tars} | {_fmt(v['eer'], True)} | {_fmt(v['auc'])} | {r.get('n_no_face', 0)} |")
        lines += ["", *notes, "n/a: " + _RULES["far"] + ".", ""]
    ident = [(n, k, rep) for n, r in results["benchmarks"].items() for k, rep in r.get("identification", {}).items()]
    if ident:
        lines += ["## Identification", "", "| benchmark | probe vs gallery | rank-1 | rank-5 | TPIR@FPIR=1e-2 | TPIR@FPIR=1e-1 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {k} | {_fmt(rep.get('rank_1'))} | {_fmt(rep.get('rank_5'))} | {_tpir_cell(rep, '1e-02')} "
                  f"| {_tpir_cell(rep, '1e-01')} |" for n, k, rep in ident]
        lines.append("")
    for name, r in results["benchmarks"].items():
        for grouping, report in r.get("bias", {}).items():
            lines += _bias_markdown(name, grouping, report)
    if results["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {n}: {s['reason']}; expected one of {', '.join(s['expected'])}" for n, s in results["skipped"].items()]
        lines.append("")
    return "\n".join(lines)


def _unmeasurable_paths(results: dict) -> list[str]:
    """Every value the core flagged, as ``"<benchmark>/<section>[/<name>]/<key>"`` (one list for the Space)."""
    paths = []
    for name, r in results.get("benchmarks", {}).items():
        paths += [f"{name}/verification/{key}" for key in r.get("verification", {}).get("unmeasurable", [])]
        for section in ("bias", "identification"):
            for sub, report in (r.get(section) or {}).items():
                paths += [f"{name}/{section}/{sub}/{key}" for key in (report.get("unmeasurable") or [])]
    return paths


def write_outputs(results: dict, curves: dict, output_dir, plots: bool = True) -> list[str]:
    """Write ``results.json``, ``results.md`` and (with ``plots``) the PNGs into ``output_dir``.

    Args:
        results: the runner's results dict (made JSON-safe here).
        curves: ``{benchmark: {"scores": (P,), "labels": (P,)}}`` for the ROC/DET/histogram plots.
    Returns:
        The paths written, JSON and markdown first. ``results`` gains ``unmeasurable`` and
        ``sample_size_rules`` (see the module docstring) and ``files``.
    """
    output_dir = check_output_dir(output_dir)
    files = [str(output_dir / "results.json"), str(output_dir / "results.md")]
    if plots:
        files += _plot_all(results, curves, output_dir)
    results.update(_json_safe({k: v for k, v in results.items() if k != "files"}))
    results.update(unmeasurable=_unmeasurable_paths(results), sample_size_rules=dict(_RULES), files=files)
    # Atomic: a full disk or a lost permission is one OutputPathError naming the file, never a partial report.
    with atomic_write(output_dir / "results.json") as handle:
        handle.write(json.dumps(results, indent=2, allow_nan=False))
    with atomic_write(output_dir / "results.md") as handle:
        handle.write(markdown_report(results))
    return files
