"""``hf-facerec convert``: an InsightFace RecordIO file or an identity folder -> Parquet shards.

    hf-facerec convert faces_emore/train.rec out/ --threads 2
    hf-facerec convert lfw/images out/ --min-images 2 --max-identities 1000 --identity-subset random

The source kind is detected (a ``.rec`` file, a folder holding ``train.rec``, or any other folder as
``<identity>/<image>``) unless ``--format`` says it. Load the result with
``datasets.load_dataset("parquet", data_dir="out/", split="train")``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a .rec file, a folder holding train.rec, or an <identity>/<image> folder")
    parser.add_argument("output_dir", help="folder for the train-*.parquet shards")
    parser.add_argument("--format", choices=("auto", "recordio", "folder"), default="auto", help="source kind")
    parser.add_argument("--idx", default=None, help="RecordIO index (default: <rec>.idx, else a sequential scan)")
    parser.add_argument("--shard-size", type=int, default=50_000, help="rows per Parquet file")
    parser.add_argument("--row-group-size", type=int, default=1_000, help="rows held in memory at once")
    parser.add_argument("--threads", type=int, default=1, help="threads for the image decode check")
    parser.add_argument("--no-check", action="store_true", help="do not decode images (keeps corrupt ones)")
    parser.add_argument("--max-images", type=int, default=None, help="RecordIO: only the first N images")
    parser.add_argument("--min-images", type=int, default=1, help="folder: minimum images per identity")
    parser.add_argument("--max-identities", type=int, default=None, help="folder: keep this many identities")
    parser.add_argument("--identity-subset", choices=("first", "random"), default="first", help="folder: which K")
    parser.add_argument("--seed", type=int, default=0, help="folder: seed of a random identity subset")
    parser.add_argument("--overwrite", action="store_true", help="replace Parquet files already in output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _resolve_source(source: Path, kind: str) -> tuple[str, Path]:
    if kind == "auto":
        if source.is_file() and source.suffix == ".rec":
            kind = "recordio"
        elif source.is_dir() and (source / "train.rec").is_file():
            kind, source = "recordio", source / "train.rec"
        elif source.is_dir():
            kind = "folder"
        else:
            raise FileNotFoundError(f"{source} is neither a .rec file nor a folder")
    elif kind == "recordio" and source.is_dir():
        source = source / "train.rec"
    return kind, source


def run(args: argparse.Namespace) -> int:
    from hf_facerec.data.convert import folder_to_parquet, recordio_to_parquet  # datasets + pyarrow: not for --help

    kind, source = _resolve_source(Path(args.source), args.format)
    common = dict(
        shard_size=args.shard_size,
        row_group_size=args.row_group_size,
        check_images=not args.no_check,
        num_threads=args.threads,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if kind == "recordio":
        report = recordio_to_parquet(source, args.idx, args.output_dir, max_images=args.max_images, **common)
    else:
        report = folder_to_parquet(
            source,
            args.output_dir,
            min_images_per_identity=args.min_images,
            max_identities=args.max_identities,
            identity_subset=args.identity_subset,
            seed=args.seed,
            **common,
        )
    print(json.dumps({"source": str(source), "format": kind, **asdict(report)}, indent=2))
    if report.num_images == 0:  # nothing usable: a failure, not an empty dataset
        example = f", e.g. {report.skipped[0]}" if report.skipped else ""
        raise ValueError(f"no image of {source} could be converted ({report.num_skipped} did not decode{example})")
    return 0
