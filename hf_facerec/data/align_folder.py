"""Detect and align every face image under a folder, in parallel (``hf-facerec align SRC DST``).

Each image under SRC is written to DST at the same relative path, its image suffix replaced by ``.jpg`` or
``.png`` (a file without one, e.g. Yale's ``subject01.happy``, keeps its name: ``subject01.happy.jpg``).
Images are recognised by content and links leaving SRC are refused unless ``follow_symlinks``
(:mod:`hf_facerec.data.listing`). Every file under SRC is counted in ``total``; those skipped (not an image, a
refused link), unreadable or without a face are listed with the reason in ``DST/failures.csv``;
``DST/align_report.json`` holds the counts. Outputs that already exist are skipped, so an interrupted run
resumes where it stopped (every file is written under a temporary name and renamed, so a half-written crop is
never mistaken for a finished one). DST is checked up front (a file, read-only, not creatable: one
:class:`~hf_facerec._files.OutputPathError` naming it), and a failed write (disk full) leaves no partial file.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hf_facerec._files import atomic_write, check_output_dir

from .listing import IMAGE_EXTENSIONS, NOT_AN_IMAGE, list_folder_images

#: Suffixes replaced by the output's (any other is kept and the output's appended); images are found by content.
IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)
_FORMATS = {"jpg": ".jpg", "png": ".png"}
_FAILURE_KINDS = ("invalid_image", "no_face", "duplicate_output", "not_an_image", "skipped")


@dataclass
class AlignFolderReport:
    """What a run did. ``total`` counts every file under SRC; ``failures`` holds ``(relative source path, kind,
    detail)`` rows, with kind one of ``invalid_image``, ``no_face``, ``duplicate_output``, ``not_an_image`` and
    ``skipped`` (a refused or broken link, an unreadable entry: the detail says which)."""

    total: int = 0
    detector: str = ""  # the backend that ran ("dlib", "yunet")
    aligned: int = 0
    skipped_existing: int = 0
    multiple_faces: int = 0  # aligned images in which more than one face passed min_score
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Failures per kind."""
        return {kind: sum(1 for _, k, _ in self.failures if k == kind) for kind in _FAILURE_KINDS}


def list_images(src: Path, follow_symlinks: bool = False) -> list[Path]:
    """Image files under ``src`` (recursive, recognised by content), as sorted paths relative to ``src``."""
    return sorted(Path(p).relative_to(src) for p in list_folder_images(src, recursive=True,
                                                                         follow_symlinks=follow_symlinks).images)


def output_name(rel: Path, suffix: str) -> Path:
    """``rel`` with its image suffix replaced by ``suffix``, or ``suffix`` appended when it has none
    (``subject01.happy`` -> ``subject01.happy.jpg``: two extension-less images never share an output)."""
    return rel.with_suffix(suffix) if rel.suffix.lower() in IMAGE_SUFFIXES else rel.with_name(rel.name + suffix)


def parse_size(text: str) -> tuple[int, int]:
    """``"112x112"`` or ``"96x112"`` (width x height) -> ``(width, height)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHT, e.g. 112x112; got {text!r}")
    return int(parts[0]), int(parts[1])


# --- worker side: one aligner per process, built once by the pool initialiser -----------------

_WORKER: dict = {}


def _init_worker(config: dict) -> None:
    from hf_facerec.data.align import FaceAligner

    try:  # one OpenCV thread per process: the parallelism comes from the processes
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _WORKER.update(src=Path(config["src"]), dst=Path(config["dst"]), save_kwargs=config["save_kwargs"])
    try:
        _WORKER["aligner"] = FaceAligner(
            config["detector"],
            template=config["template"],
            output_size=config["output_size"],
            policy=config["policy"],
            min_score=config["min_score"],
            detector_kwargs=config["detector_kwargs"],
        )
    except Exception as exc:
        # A Pool whose initialiser raises respawns workers forever; keep the error and raise
        # it from the first task instead, which imap hands to the parent.
        _WORKER["error"] = exc


def _align_one(job: tuple[str, str]) -> tuple[str, str, str, int]:
    """Align ``SRC/rel`` into ``DST/out_rel``; returns (rel, status, detail, faces found)."""
    from hf_facerec.data.align import NoFaceDetectedError
    from hf_facerec.data.images import InvalidImageError

    if "error" in _WORKER:
        raise _WORKER["error"]
    rel, out_rel = job
    try:
        result = _WORKER["aligner"](_WORKER["src"] / rel, return_detection=True)
    except NoFaceDetectedError as exc:
        return rel, "no_face", str(exc), 0
    except (InvalidImageError, OSError) as exc:
        return rel, "invalid_image", str(exc), 0
    target = _WORKER["dst"] / out_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, "wb") as handle:  # a resumed run never sees a half-written crop
        result.image.save(handle, **_WORKER["save_kwargs"])
    return rel, "aligned", "", result.num_faces


# --- driver ----------------------------------------------------------------------------------


def align_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    detector: str = "auto",
    detector_kwargs: dict | None = None,
    detector_model: str | os.PathLike | None = None,
    template: str = "arcface",
    output_size: tuple[int, int] | None = None,
    policy: str = "largest",
    min_score: float = 0.5,
    workers: int = 1,
    chunksize: int = 16,
    image_format: str = "jpg",
    quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
    follow_symlinks: bool = False,
) -> AlignFolderReport:
    """Align every image under ``src`` into ``dst`` (see the module docstring).

    Args:
        detector, detector_kwargs: backend name (or ``"auto"``: the package default, dlib unless a YuNet file is
            given or ``$HF_FACEREC_YUNET`` is set) and constructor arguments (``build_detector``).
        detector_model: the YuNet ``.onnx`` or dlib ``.dat`` file.
        template, output_size, policy, min_score: as in :class:`~hf_facerec.data.align.FaceAligner`.
        workers: processes (1 runs in this process); each builds its own detector once.
        chunksize: images handed to a worker at a time.
        image_format: ``"jpg"`` (``quality``) or ``"png"``.
        overwrite: re-align images whose output exists (default: skip them, i.e. resume).
        progress: show a tqdm progress bar.
        follow_symlinks: follow links whose target lies outside ``src`` (default: list them as ``skipped``).

    Returns:
        The :class:`AlignFolderReport`, also written to ``dst/align_report.json``, with
        failures in ``dst/failures.csv``.
    """
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ValueError(f"source folder not found: {src}")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ValueError(f"the output folder {dst} must not be inside the source folder {src}")
    if image_format not in _FORMATS:
        raise ValueError(f"image_format must be one of {sorted(_FORMATS)}, got {image_format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    if workers < 1 or chunksize < 1:
        raise ValueError(f"workers and chunksize must be >= 1, got {workers} and {chunksize}")
    from hf_facerec.data.align import POLICIES, template_size  # validates template/size early
    from hf_facerec.data.detectors import MODEL_ARGUMENT, available_detectors, default_detector_name

    detector_kwargs = dict(detector_kwargs or {})
    if detector == "auto":  # resolved here, once, so the workers and the report name the same backend
        detector = "yunet" if "model_path" in detector_kwargs else default_detector_name(
            detector_model or detector_kwargs.get("predictor_path"))
    if detector not in available_detectors():
        raise ValueError(f"unknown face detector {detector!r}; choose one of {['auto', *available_detectors()]}")
    if detector_model is not None:
        detector_kwargs[MODEL_ARGUMENT[detector]] = os.fspath(detector_model)

    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    size = template_size(template, output_size)

    report = AlignFolderReport(detector=detector)
    jobs = _plan_jobs(src, dst, _FORMATS[image_format], overwrite, follow_symlinks, report)
    check_output_dir(dst)  # before any detector loads: a file, a read-only or uncreatable folder is one clear error
    config = {
        "detector": detector, "detector_kwargs": detector_kwargs, "template": template,
        "output_size": size, "policy": policy, "min_score": min_score, "src": str(src), "dst": str(dst),
        "save_kwargs": {"format": "JPEG", "quality": quality} if image_format == "jpg" else {"format": "PNG"},
    }  # fmt: skip
    for rel, status, detail, faces in _run_jobs(jobs, config, workers, chunksize, progress):
        if status == "aligned":
            report.aligned += 1
            report.multiple_faces += faces > 1
        else:
            report.failures.append((rel, status, detail))
    report.failures.sort()
    report.seconds = time.perf_counter() - start
    _write_reports(dst, report, config)
    return report


def _plan_jobs(src: Path, dst: Path, suffix: str, overwrite: bool, follow_symlinks: bool,
               report: AlignFolderReport) -> list[tuple[str, str]]:
    """(relative source, relative output) pairs still to do; counts skipped files, existing and colliding outputs."""
    listing = list_folder_images(src, recursive=True, follow_symlinks=follow_symlinks)
    for path, reason in listing.skipped:
        report.total += 1
        kind = "not_an_image" if reason == NOT_AN_IMAGE else "skipped"
        report.failures.append((Path(path).relative_to(src).as_posix(), kind, reason))
    if not listing.images:
        example = f"; {report.total} other file(s), e.g. {report.failures[0][0]}: {report.failures[0][2]}" \
            if report.failures else ""
        raise ValueError(f"no images found under {src} (searched recursively){example}")
    jobs, claimed = [], {}
    for rel in sorted(Path(p).relative_to(src) for p in listing.images):
        report.total += 1
        out_rel = output_name(rel, suffix)
        if out_rel in claimed:  # e.g. a.png and a.jpg would both become a.jpg
            report.failures.append(
                (rel.as_posix(), "duplicate_output", f"same output as {claimed[out_rel].as_posix()}")
            )
            continue
        claimed[out_rel] = rel
        if not overwrite and (dst / out_rel).exists():
            report.skipped_existing += 1
            continue
        jobs.append((rel.as_posix(), out_rel.as_posix()))
    return jobs


def _run_jobs(jobs: list[tuple[str, str]], config: dict, workers: int, chunksize: int, progress: bool):
    """Yield ``_align_one`` results, in this process or from a process pool, under a tqdm bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), unit="img", desc="align", disable=not progress)
    try:
        if not jobs:  # everything done already: do not load a detector for nothing
            return
        if workers == 1 or len(jobs) <= 1:
            _init_worker(config)
            for job in jobs:
                yield _align_one(job)
                bar.update()
            return
        with _pool_context().Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
            for result in pool.imap_unordered(_align_one, jobs, chunksize=chunksize):
                yield result
                bar.update()
    finally:
        bar.close()
        _WORKER.clear()


def _pool_context() -> multiprocessing.context.BaseContext:
    """Where available, "forkserver": workers are forked from a clean server process that has
    imported this module once (importing ``hf_facerec`` loads torch: seconds per process under
    "spawn"), without "fork"'s risk of inheriting the caller's OpenCV/OpenMP thread state."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _write_reports(dst: Path, report: AlignFolderReport, config: dict) -> None:
    with atomic_write(dst / "failures.csv", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "kind", "detail"])
        writer.writerows(report.failures)
    summary = {k: v for k, v in asdict(report).items() if k != "failures"}
    summary.update(failures=report.counts(), settings={k: v for k, v in config.items() if k not in ("src", "dst")})
    summary.update(src=config["src"], seconds=round(report.seconds, 3))
    with atomic_write(dst / "align_report.json") as handle:
        handle.write(json.dumps(summary, indent=2, default=str) + "\n")
