"""`hf-facerec clean`: clean an identity dataset with a reference model's embeddings (:mod:`hf_facerec.search.cleaning`).

    hf-facerec clean --data faces/ --model mobilefacenet/ --merge-threshold 0.7 --noisy-margin 0 \\
        --duplicate-threshold 0.95 --output cleaned/

Writes `OUTPUT/dataset` (a `save_to_disk` dataset that `hf-facerec train --train_dataset` reads) and the report
`OUTPUT/cleaning.json`, `cleaning.csv`, `cleaning.png`; prints the counts per rule as JSON.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hf_facerec.cli import model_source

    parser.add_argument("--data", required=True, help="identity folder, convert output, Parquet or saved dataset")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=model_source, help="reference FaceRec model (folder or Hub id)")
    source.add_argument("--embeddings", help="precomputed (N, D) reference embeddings, .npy, in dataset order")
    parser.add_argument("--output", required=True, help="folder for the cleaned dataset and the report")
    parser.add_argument("--duplicate-threshold", type=float, default=None, help="near-duplicate cosine (off)")
    parser.add_argument("--merge-threshold", type=float, default=None, help="center-center cosine to merge (off)")
    parser.add_argument("--noisy-margin", type=float, default=None,
                        help="remove images nearer another center by this cosine margin (off)")
    parser.add_argument("--outlier-threshold", type=float, default=None, help="min cosine to own center (off)")
    parser.add_argument("--outlier-fraction", type=float, default=None, help="drop this fraction per identity (off)")
    parser.add_argument("--min-images", type=int, default=1, help="drop identities left with fewer images")
    parser.add_argument("--flip", default="sum", choices=["none", "sum", "concat"], help="flip TTA of the embeddings")
    parser.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from hf_facerec.data.sources import load_train_dataset
    from hf_facerec.search.cleaning import CleaningConfig, clean_dataset
    from hf_facerec.search.report import write_cleaning_report

    config = CleaningConfig(args.duplicate_threshold, args.merge_threshold, args.noisy_margin,
                            args.outlier_threshold, args.outlier_fraction, args.min_images)
    dataset = load_train_dataset(args.data)
    embedder, embeddings = None, None
    if args.embeddings:
        embeddings = np.load(args.embeddings, allow_pickle=False)
    else:
        from hf_facerec.embedding import FaceEmbedder

        embedder = FaceEmbedder.from_pretrained(args.model, flip=args.flip, batch_size=args.batch_size)
    cleaned, result = clean_dataset(dataset, config, embeddings=embeddings, embedder=embedder)
    summary = write_cleaning_report(result, args.output, dataset)
    cleaned.save_to_disk(str(Path(args.output) / "dataset"))
    print(json.dumps(summary["counts"], indent=2))
    return 0
