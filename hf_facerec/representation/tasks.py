"""The few-shot task registry: what each task reads, how it is split, and how it is scored.

A task is a :class:`FewShotTask`: a ``kind`` (how a head is fitted and scored, see :mod:`.fewshot`), a ``load``
function ``(data_root, **options) -> TaskData`` and the headline metric. Users add their own with
:func:`register_task`. The built-in tasks read the shared sets through the readers of :mod:`hf_facerec.data`
(``data/attributes.py``, ``data/landmarks.py``, ``data/pairs_lfw.py``) and split them without leakage:

===================  ============================  =======================================================
task                 data (folder under root)      split
===================  ============================  =======================================================
lfw_verification     lfw/ (pairs.txt, images/)     train: identities of folds 1-5 pairs; test: folds 6-10
utkface_gender/race  utkface_part1/                80 / 20 by a seeded permutation (no identities exist)
utkface_age          utkface_part1/                the same split; MAE in years
landmarks_300w       landmarks_300w/               train: AFW; test: the 300-W Common subset
jaffe_expression     jaffe/                        by subject: 7 train, 3 test (KA..NM / TM, UY, YM)
cmu_pose             cmu_faces/                    by subject: the first 14 sorted subjects train, 6 test
===================  ============================  =======================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_TASKS", "KINDS", "TASKS", "FewShotTask", "TaskData", "get_task", "register_task"]

KINDS = ("classification", "regression", "landmarks", "verification")


@dataclass
class TaskData:
    """One task's images and targets.

    ``train_images`` / ``test_images``: paths (or arrays); targets: (N,) int class ids (classification,
    verification identities), (N,) float (regression) or (N, P, 2) float pixel points (landmarks).
    ``strata``: (N_train,) labels the label fractions are stratified by (default: the class targets).
    ``classes``: class names. Verification: ``pairs`` (M, 2) indices into ``test_images``, ``is_same`` (M,) and
    ``folds`` (M,) for k-fold accuracy. Landmarks: ``image_size`` (h, w) of the images the points refer to, ``ocular``: the two
    points whose distance normalises the NME (300-W: outer eye corners 36, 45).
    """

    train_images: list
    train_targets: np.ndarray
    test_images: list
    test_targets: np.ndarray | None = None
    strata: np.ndarray | None = None
    classes: list[str] | None = None
    pairs: np.ndarray | None = None
    is_same: np.ndarray | None = None
    folds: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    ocular: tuple[int, int] = (36, 45)


@dataclass
class FewShotTask:
    """``name``; ``kind`` in :data:`KINDS`; ``load(root, **options) -> TaskData``; ``metric``: the headline
    metric (a key of the scores :func:`~.fewshot.score_task` returns) and whether higher is better."""

    name: str
    kind: str
    load: Callable[..., TaskData]
    metric: str
    higher_is_better: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


TASKS: dict[str, FewShotTask] = {}


def register_task(task: FewShotTask, overwrite: bool = False) -> FewShotTask:
    """Add ``task`` to :data:`TASKS` (``ValueError`` if the name is taken, unless ``overwrite``)."""
    if task.name in TASKS and not overwrite:
        raise ValueError(f"a few-shot task named {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> FewShotTask:
    if name not in TASKS:
        raise ValueError(f"unknown few-shot task {name!r}; registered: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def _folder(root, name: str) -> Path:
    folder = Path(root) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"few-shot data folder not found: {folder}")
    return folder


def _codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    classes = sorted(set(values.tolist()))
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[v] for v in values], dtype=np.int64), [str(c) for c in classes]


def _cap(index: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(index) <= limit:
        return index
    return np.sort(np.random.default_rng(seed).permutation(index)[:limit])


def _utkface(root, column: str, max_train: int | None = None, max_test: int | None = None, seed: int = 0,
             **_) -> TaskData:
    from ..data.attributes import UTKFACE_GENDERS, UTKFACE_RACES, read_utkface

    table = read_utkface(_folder(root, "utkface_part1"))
    keep = table.labels["race"] >= 0 if column == "race" else np.ones(len(table), bool)
    table = table.select(keep)
    order = np.random.default_rng(12345).permutation(len(table))  # fixed split, whatever the run's seed
    cut = int(0.8 * len(table))
    train, test = _cap(np.sort(order[:cut]), max_train, seed), _cap(np.sort(order[cut:]), max_test, seed)
    target = table.labels[column]
    classes = {"gender": list(UTKFACE_GENDERS), "race": list(UTKFACE_RACES)}.get(column)
    strata = target[train] if classes else np.minimum(target[train] // 10, 8)  # age: stratified by decade
    return TaskData([table.paths[i] for i in train], target[train].astype(np.float32 if not classes else np.int64),
                    [table.paths[i] for i in test], target[test].astype(np.float32 if not classes else np.int64),
                    strata=strata, classes=classes)


def _by_subject(root, name: str, column: str, n_test: int, max_train=None, max_test=None, seed: int = 0,
                **_) -> TaskData:
    from ..data.attributes import read_label_table

    table = read_label_table(_folder(root, name))
    codes, classes = _codes(table.labels[column])
    subjects = sorted(set(table.labels["subject"].tolist()))
    test_subjects = set(subjects[-n_test:])
    is_test = np.array([s in test_subjects for s in table.labels["subject"]])
    train, test = _cap(np.flatnonzero(~is_test), max_train, seed), _cap(np.flatnonzero(is_test), max_test, seed)
    return TaskData([table.paths[i] for i in train], codes[train], [table.paths[i] for i in test], codes[test],
                    classes=classes)


def _landmarks(root, max_train=None, max_test=None, seed: int = 0, **_) -> TaskData:
    from ..data.landmarks import read_landmarks

    lm = read_landmarks(_folder(root, "landmarks_300w"))
    train = _cap(np.flatnonzero(lm.split == "train"), max_train, seed)
    test = _cap(np.flatnonzero(lm.split == "common_test"), max_test, seed)
    strata = lm.subset[train]
    return TaskData([lm.paths[i] for i in train], lm.points[train], [lm.paths[i] for i in test], lm.points[test],
                    strata=strata, image_size=(256, 256))


def _lfw(root, max_train=None, max_test=None, seed: int = 0, **_) -> TaskData:
    from ..data.folders import list_identity_images
    from ..data.pairs import load_lfw_pairs
    from ..data.pairset import pair_image_sources
    from ..data.protocols import select_folds, split_identities_by_folds

    folder = _folder(root, "lfw")
    pairs = load_lfw_pairs(folder / "pairs.txt", folder / "images")
    split = split_identities_by_folds(pairs, range(0, 5), range(5, 10))
    paths, ids = [], []
    for label, identity in enumerate(split.train):
        for path in list_identity_images(folder / "images" / identity):
            paths.append(path)
            ids.append(label)
    ids = np.asarray(ids, dtype=np.int64)
    keep = _cap(np.arange(len(paths)), max_train, seed)
    test_pairs = select_folds(pairs, range(5, 10))
    if max_test is not None and len(test_pairs) > max_test:  # whole folds' worth of pairs, balanced
        pick = np.sort(np.random.default_rng(seed).permutation(len(test_pairs))[:max_test])
        test_pairs = test_pairs.select(pick)
    sources, i1, i2 = pair_image_sources(test_pairs)
    return TaskData([paths[i] for i in keep], ids[keep], list(sources), None, classes=list(split.train),
                    pairs=np.stack([i1, i2], 1), is_same=np.asarray(test_pairs["is_same"], bool),
                    folds=np.asarray(test_pairs["fold"], np.int64))


for _task in (
    FewShotTask("lfw_verification", "verification", _lfw, "accuracy", True,
                "LFW: identity head on folds 1-5 identities, 5-fold accuracy on the pairs of folds 6-10"),
    FewShotTask("utkface_gender", "classification", lambda root, **o: _utkface(root, "gender", **o),
                "balanced_accuracy", True, "UTKFace gender (2 classes)"),
    FewShotTask("utkface_race", "classification", lambda root, **o: _utkface(root, "race", **o),
                "balanced_accuracy", True, "UTKFace race (5 classes, imbalanced)"),
    FewShotTask("utkface_age", "regression", lambda root, **o: _utkface(root, "age", **o), "mae", False,
                "UTKFace age (years)"),
    FewShotTask("landmarks_300w", "landmarks", _landmarks, "nme", False,
                "300-W 68 points: train AFW, test Common; NME by inter-ocular distance"),
    FewShotTask("jaffe_expression", "classification",
                lambda root, **o: _by_subject(root, "jaffe", "expression", 3, **o), "macro_f1", True,
                "JAFFE 7 posed expressions, split by subject"),
    FewShotTask("cmu_pose", "classification", lambda root, **o: _by_subject(root, "cmu_faces", "pose", 6, **o),
                "accuracy", True, "CMU Faces head pose (4 classes), split by subject"),
):
    register_task(_task)

DEFAULT_TASKS = tuple(TASKS)
