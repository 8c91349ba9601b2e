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
identity -> group file (e.g. LFW's ``gender_per_identity.csv``), see :func:`~hf_facerec.evaluation.bias_groups.identity_pair_groups`;
:func:`hf_facerec.evaluation.bias_groups.grouped_bias_report` turns one grouping into the bias report.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hf_facerec.evaluation.bias_groups import MIXED_GROUP, identity_pair_groups

__all__ = [
    "BENCHMARKS",
    "MIXED_GROUP",
    "BenchmarkNotFoundError",
    "BenchmarkSpec",
    "IJBBenchmark",
    "PairBenchmark",
    "load_benchmark",
    "load_csv_benchmark",
    "load_group_file",
    "locate_benchmark",
]

_BIN_SETS = ("lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")


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
    from hf_facerec.data.pairs import LFW_IMAGE_DIRS, lfw_images_root, load_lfw_pairs

    try:  # the images sit next to pairs.txt in one of the usual folder names (person folders inside)
        images = lfw_images_root(path)
    except FileNotFoundError:
        raise BenchmarkNotFoundError(name, [str(path.parent / d / "<Name>/<Name>_0001.jpg") for d in LFW_IMAGE_DIRS])
    return PairBenchmark(name, str(path), load_lfw_pairs(path, images))


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


def _add_identity_grouping(benchmark: PairBenchmark, group_map: tuple[str, Mapping[str, str]]) -> None:
    name, mapping = group_map
    identity1, identity2 = benchmark.pairs["identity1"], benchmark.pairs["identity2"]
    if not any(identity1):
        return  # .bin / CSV without identity names: nothing to map (the runner notes it)
    benchmark.groupings[name] = identity_pair_groups(identity1, identity2, benchmark.pairs["is_same"], mapping)
