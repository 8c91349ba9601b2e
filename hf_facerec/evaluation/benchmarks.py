"""Benchmark registry: where each face benchmark lives under a data folder, and how to read it.

``hf-facerec evaluate --benchmarks lfw,cfp_fp,... --data-dir DIR`` looks for each benchmark at the
paths below (first match wins) and reads it with the pair readers of :mod:`hf_facerec.data.pairs`
or :func:`hf_facerec.data.ijb.load_ijb`:

==========  ==========================================================================  ===========
name        expected under DIR                                                           images
==========  ==========================================================================  ===========
lfw         ``lfw.bin`` | ``lfw/lfw.bin`` | ``lfw/pairs.txt`` + ``lfw/{images,lfw,.}``  .bin: aligned
cfp_fp      ``cfp_fp.bin`` | ``cfp_fp/cfp_fp.bin``   (same pattern: agedb_30, calfw,      aligned
            cplfw; InsightFace's verification files, 112x112 ArcFace crops)
rfw         ``rfw/`` | ``RFW/`` with ``txts/<race>/<race>_pairs.txt`` and ``data/<race>/``  raw
ijbb, ijbc  ``IJBB/`` | ``IJB_release/IJBB/`` (``meta/`` + ``loose_crop/``)               landmarks
==========  ==========================================================================  ===========

A benchmark that is not there raises :class:`BenchmarkNotFoundError` carrying the expected
paths, so the runner can list it as skipped instead of failing. Groupings for bias reports come
from the pairs' ``group`` column (RFW: race; a CSV's ``group`` column) and from an optional
identity -> group file (e.g. LFW's ``gender_per_identity.csv``), see :func:`identity_pair_groups`;
:func:`grouped_bias_report` turns one grouping into the bias report (numpy only, like the metric core).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import _as_rates, _as_scores, _json_float
from .bias import bias_report, gini_coefficient, max_min_ratio
from .verification import _threshold_at_far_sorted

__all__ = [
    "BENCHMARKS",
    "MIXED_GROUP",
    "BenchmarkNotFoundError",
    "BenchmarkSpec",
    "IJBBenchmark",
    "PairBenchmark",
    "grouped_bias_report",
    "identity_pair_groups",
    "impostor_fmr_report",
    "impostor_threshold",
    "load_benchmark",
    "load_csv_benchmark",
    "load_group_file",
    "locate_benchmark",
]

#: The group of an impostor pair whose two identities belong to different groups.
MIXED_GROUP = "mixed"
_BIN_SETS = ("lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")
_LFW_IMAGE_DIRS = ("images", "lfw", "lfw-deepfunneled", ".")


class BenchmarkNotFoundError(FileNotFoundError):
    """A benchmark's files are absent under the data folder; ``expected`` lists where they were looked for."""

    def __init__(self, name: str, expected: Sequence[str]):
        self.name, self.expected = name, list(expected)
        super().__init__(f"benchmark {name!r} not found; expected one of: {', '.join(self.expected)}")


@dataclass
class PairBenchmark:
    """A 1:1 pair set.

    Attributes:
        name: benchmark name. source: the file or folder it was read from.
        pairs: ``datasets.Dataset`` with :data:`hf_facerec.data.pairs.PAIR_FEATURES`, P rows.
        prealigned: the images are already aligned crops (InsightFace ``.bin``): never re-detected.
        groupings: ``{grouping name: (P,) object array of group names, None = pair left out}``.
    """

    name: str
    source: str
    pairs: object
    prealigned: bool = False
    groupings: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class IJBBenchmark:
    """An IJB-B/IJB-C template protocol (:class:`hf_facerec.data.ijb.IJBProtocol`); images are
    aligned with the protocol's own five landmarks."""

    name: str
    source: str
    protocol: object


@dataclass(frozen=True)
class BenchmarkSpec:
    """How to find (``candidates(data_dir)`` -> paths, first existing wins) and read (``load(path)``)
    one benchmark."""

    name: str
    description: str
    candidates: Callable[[Path], list[Path]]
    load: Callable[[str, Path], PairBenchmark | IJBBenchmark]


def _bin_candidates(name: str) -> Callable[[Path], list[Path]]:
    return lambda root: [root / f"{name}.bin", root / name / f"{name}.bin"]


def _load_bin(name: str, path: Path) -> PairBenchmark:
    from hf_facerec.data.pairs import load_bin_pairs

    return PairBenchmark(name, str(path), load_bin_pairs(path), prealigned=True)


def _lfw_candidates(root: Path) -> list[Path]:
    return _bin_candidates("lfw")(root) + [root / "lfw" / "pairs.txt", root / "pairs.txt"]


def _load_lfw(name: str, path: Path) -> PairBenchmark:
    if path.suffix == ".bin":
        return _load_bin(name, path)
    from hf_facerec.data.pairs import load_lfw_pairs

    # The images sit next to pairs.txt in one of the usual folder names (person folders inside).
    for folder in _LFW_IMAGE_DIRS:
        images = (path.parent / folder).resolve()
        if images.is_dir() and any(child.is_dir() for child in images.iterdir()):
            return PairBenchmark(name, str(path), load_lfw_pairs(path, images))
    raise BenchmarkNotFoundError(name, [str(path.parent / folder / "<Name>/<Name>_0001.jpg") for folder in _LFW_IMAGE_DIRS])


def _rfw_candidates(root: Path) -> list[Path]:
    return [root / "rfw" / "txts", root / "RFW" / "txts"]


def _load_rfw(name: str, path: Path) -> PairBenchmark:
    from hf_facerec.data.pairs import RFW_RACES, load_rfw_pairs

    races = [race for race in RFW_RACES if (path / race / f"{race}_pairs.txt").is_file()]
    if not races:
        raise BenchmarkNotFoundError(name, [str(path / race / f"{race}_pairs.txt") for race in RFW_RACES])
    pairs = load_rfw_pairs(path.parent, races=races)
    return PairBenchmark(name, str(path.parent), pairs, groupings={"race": np.asarray(pairs["group"], dtype=object)})


def _ijb_candidates(ijb: str) -> Callable[[Path], list[Path]]:
    return lambda root: [root / ijb / "meta", root / "IJB_release" / ijb / "meta", root / ijb.lower() / "meta"]


def _load_ijb(name: str, path: Path) -> IJBBenchmark:
    from hf_facerec.data.ijb import load_ijb

    return IJBBenchmark(name, str(path.parent), load_ijb(path.parent, name.upper()))


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "lfw": BenchmarkSpec("lfw", "LFW View 2, 6,000 pairs in 10 folds", _lfw_candidates, _load_lfw),
    **{
        name: BenchmarkSpec(name, f"InsightFace {name}.bin verification set", _bin_candidates(name), _load_bin)
        for name in _BIN_SETS[1:]
    },
    "rfw": BenchmarkSpec("rfw", "Racial Faces in-the-Wild, per-race pairs", _rfw_candidates, _load_rfw),
    "ijbb": BenchmarkSpec("ijbb", "IJB-B template 1:1 (and 1:N when present)", _ijb_candidates("IJBB"), _load_ijb),
    "ijbc": BenchmarkSpec("ijbc", "IJB-C template 1:1 (and 1:N when present)", _ijb_candidates("IJBC"), _load_ijb),
}


def _spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)} (or pass a pairs CSV)")
    return BENCHMARKS[name]


def locate_benchmark(name: str, data_dir: str | os.PathLike) -> Path:
    """The first existing candidate path of benchmark ``name`` under ``data_dir``.

    Raises:
        ValueError: unknown name. BenchmarkNotFoundError: none of the candidates exists.
    """
    candidates = _spec(name).candidates(Path(data_dir))
    for path in candidates:
        if path.exists():
            return path
    raise BenchmarkNotFoundError(name, [str(path) for path in candidates])


def load_benchmark(
    name: str,
    data_dir: str | os.PathLike,
    group_map: tuple[str, Mapping[str, str]] | None = None,
) -> PairBenchmark | IJBBenchmark:
    """Find and read benchmark ``name`` under ``data_dir``.

    Args:
        group_map: ``(grouping name, {identity: group})`` (from :func:`load_group_file`); added as a
            grouping of pair benchmarks whose pairs carry identity names (LFW pairs.txt, RFW).
    Raises:
        ValueError: unknown name. BenchmarkNotFoundError: the files are absent.
    """
    benchmark = _spec(name).load(name, locate_benchmark(name, data_dir))
    if group_map is not None and isinstance(benchmark, PairBenchmark):
        _add_identity_grouping(benchmark, group_map)
    return benchmark


def load_csv_benchmark(
    csv_path: str | os.PathLike, name: str | None = None, group_map: tuple[str, Mapping[str, str]] | None = None
) -> PairBenchmark:
    """A pairs CSV (:func:`hf_facerec.data.pairs.load_csv_pairs`) as a benchmark named ``name``
    (default: the file stem); a non-empty ``group`` column becomes the grouping ``"group"``."""
    from hf_facerec.data.pairs import load_csv_pairs

    csv_path = Path(csv_path)
    pairs = load_csv_pairs(csv_path)
    groups = np.asarray(pairs["group"], dtype=object)
    benchmark = PairBenchmark(name or csv_path.stem, str(csv_path), pairs)
    if (groups != "").any():
        benchmark.groupings["group"] = np.where(groups == "", None, groups)
    if group_map is not None:
        _add_identity_grouping(benchmark, group_map)
    return benchmark


def load_group_file(path: str | os.PathLike, column: str | None = None) -> tuple[str, dict[str, str]]:
    """Read an identity -> group CSV with an ``identity`` column (e.g. ``identity,gender,...``).

    Args:
        column: the group column; default: the first column after ``identity``.
    Returns:
        ``(column name, {identity: group})``; rows with an empty group are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"group file not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        if "identity" not in columns:
            raise ValueError(f"{path}: needs an 'identity' column, header is {columns}")
        others = [c for c in columns if c != "identity"]
        column = column or (others[0] if others else None)
        if column not in others:
            raise ValueError(f"{path}: group column {column!r} not in {others}")
        mapping = {
            row["identity"].strip(): row[column].strip() for row in reader if (row.get(column) or "").strip()
        }
    if not mapping:
        raise ValueError(f"{path}: no identity has a value in column {column!r}")
    return column, mapping


def identity_pair_groups(identity1, identity2, is_same, mapping: Mapping[str, str]) -> np.ndarray:
    """Group of each pair from its identities' groups.

    A genuine pair takes its identity's group; an impostor pair takes the shared group of its two
    identities, or :data:`MIXED_GROUP` when they differ. A pair with an identity absent from
    ``mapping`` gets ``None`` (left out of the bias report).

    Args:
        identity1, identity2: (P,) identity names. is_same: (P,) bool.
    Returns:
        (P,) object array of group names or None.
    """
    g1 = np.array([mapping.get(str(i)) for i in identity1], dtype=object)
    g2 = np.array([mapping.get(str(i)) for i in identity2], dtype=object)
    same = np.asarray(is_same, dtype=bool)
    if not (g1.shape == g2.shape == same.shape):
        raise ValueError(f"identity1, identity2 and is_same differ in length: {g1.shape}, {g2.shape}, {same.shape}")
    known = np.not_equal(g1, None) & np.not_equal(g2, None)
    groups = np.where(same | (g1 == g2), g1, MIXED_GROUP)
    return np.where(known, groups, None)


def _add_identity_grouping(benchmark: PairBenchmark, group_map: tuple[str, Mapping[str, str]]) -> None:
    name, mapping = group_map
    identity1, identity2 = benchmark.pairs["identity1"], benchmark.pairs["identity2"]
    if not any(identity1):
        return  # .bin / CSV without identity names: nothing to map (the runner notes it)
    benchmark.groupings[name] = identity_pair_groups(identity1, identity2, benchmark.pairs["is_same"], mapping)


# ---- bias report of one grouping ------------------------------------------------------------------


def impostor_threshold(scores, far: float) -> float:
    """The threshold reaching FAR <= ``far`` on impostor scores alone (N,): the package's one
    threshold-at-FAR routine with an empty genuine side. ValueError if ``far < 1 / N``."""
    scores = _as_scores(scores)
    far = float(_as_rates(far, "far")[0])
    threshold, _, reachable = _threshold_at_far_sorted(np.empty(0), np.sort(scores), np.array([far]))
    if not reachable[0]:
        raise ValueError(f"FAR {far} is below 1/#impostors = 1/{scores.size}: not measurable on this data")
    return float(threshold[0])


def impostor_fmr_report(scores, groups, far: float | None = 1e-3, threshold: float | None = None) -> dict:
    """FMR per group from impostor scores only (data without identities, e.g. UTKFace).

    The threshold is ``threshold`` (``far`` is then only recorded) or :func:`impostor_threshold` at
    ``far`` over all the impostor scores. Standard errors are the binomial ``sqrt(p (1 - p) / n)``.

    Args:
        scores: (N,) impostor similarities. groups: (N,) group of each pair.
    Returns:
        ``{"kind": "impostor_only", "far", "threshold", "n_impostor", "groups": {group: {"fmr",
        "fmr_std_error", "false_matches", "n_impostor"}}, "fmr_max_min_ratio", "fmr_gini"}``
        (an unbounded ratio is ``None``).
    Raises:
        ValueError: bad scores/groups, fewer than 2 groups, or ``far < 1 / N`` without a threshold.
    """
    scores = _as_scores(scores)
    groups = np.asarray(groups, dtype=object)
    if groups.shape != scores.shape:
        raise ValueError(f"groups must have shape {scores.shape}, got {groups.shape}")
    names, codes = np.unique(groups.astype(str), return_inverse=True)
    if names.size < 2:
        raise ValueError(f"an FMR comparison needs at least 2 groups, got {names.tolist()}")
    if threshold is None:
        if far is None:
            raise ValueError("give a FAR target or a threshold")
        threshold = impostor_threshold(scores, far)
    elif np.isnan(threshold):
        raise ValueError("threshold is NaN")
    n = np.bincount(codes, minlength=names.size)
    false_matches = np.bincount(codes, weights=scores >= threshold, minlength=names.size)
    fmr = false_matches / n
    return {
        "kind": "impostor_only",
        "far": None if far is None else float(far),
        "threshold": _json_float(threshold),
        "n_impostor": int(scores.size),
        "groups": {
            name: {"fmr": float(fmr[i]), "fmr_std_error": float(np.sqrt(fmr[i] * (1 - fmr[i]) / n[i])),
                   "false_matches": int(false_matches[i]), "n_impostor": int(n[i])}
            for i, name in enumerate(names.tolist())
        },
        "fmr_max_min_ratio": _json_float(max_min_ratio(fmr)),
        "fmr_gini": gini_coefficient(fmr),
    }


def grouped_bias_report(scores, labels, groups, far: float = 1e-3, folds=None, alpha: float = 0.5) -> dict:
    """:func:`~hf_facerec.evaluation.bias.bias_report` of one grouping, tolerating one-class groups.

    Groupings from identities produce groups with impostor pairs only (``"mixed"``: impostors of
    two groups) and datasets without identities have no genuine pairs at all. So:

    * pairs whose group is ``None`` are left out (counted in ``n_left_out``);
    * with no genuine pair at all: :func:`impostor_fmr_report`;
    * otherwise :func:`bias_report` over the groups having both classes (its threshold reaches
      ``far`` over *their* pairs), and the remaining one-class groups get their FMR (impostor-only)
      or FNMR (genuine-only) at that same threshold under ``other_groups``.

    Args:
        scores: (N,). labels: (N,) binary. groups: (N,) group names or None. folds: (N,) or None.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    groups = np.asarray(groups, dtype=object)
    if not (scores.shape == labels.shape == groups.shape) or scores.ndim != 1:
        raise ValueError(f"scores, labels and groups must be 1-D of one length, got {scores.shape}, {labels.shape}, {groups.shape}")
    keep = np.not_equal(groups, None)
    if not keep.any():
        raise ValueError("no pair has a group")
    scores, labels, groups = scores[keep], labels[keep], groups[keep].astype(str)
    if not labels.any():
        return {**impostor_fmr_report(scores, groups, far), "n_left_out": int((~keep).sum())}
    names = np.unique(groups)
    n_genuine = np.array([np.count_nonzero(labels[groups == g]) for g in names])
    n_pairs = np.array([np.count_nonzero(groups == g) for g in names])
    both = names[(n_genuine > 0) & (n_genuine < n_pairs)]
    if both.size < 2:
        raise ValueError(f"need at least 2 groups with genuine and impostor pairs, got {both.tolist()} of {names.tolist()}")
    member = np.isin(groups, both)
    fold_arg = None if folds is None else np.asarray(folds)[keep][member]
    report = bias_report(scores[member], labels[member], groups[member], far=far, alpha=alpha, folds=fold_arg)
    threshold = np.inf if report["threshold"] is None else report["threshold"]
    others = {}
    for name in names[~np.isin(names, both)]:
        in_group = groups == name
        entry = {"n_genuine": int(np.count_nonzero(labels & in_group)), "n_impostor": int(np.count_nonzero(~labels & in_group))}
        if entry["n_impostor"]:
            entry["fmr"] = float(np.mean(scores[in_group & ~labels] >= threshold))
        if entry["n_genuine"]:
            entry["fnmr"] = float(np.mean(scores[in_group & labels] < threshold))
        others[str(name)] = entry
    report.update(kind="pairs", other_groups=others, n_left_out=int((~keep).sum()))
    return report

