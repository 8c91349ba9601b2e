"""`hf-facerec redundancy`: size, identity and near-duplicate statistics of an image folder
(:mod:`hf_facerec.representation.redundancy`), with a de-duplicated list of images.

    hf-facerec redundancy --images ../shared/data/lfw/images --model runs/ssl_swav/backbone --threshold 0.95 \\
        --output runs/lfw_redundancy
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="image folder (any depth; <identity>/<image> gives labels)")
    parser.add_argument("--model", default=None, help="FaceRec model or backbone folder (default: thumbnails)")
    parser.add_argument("--threshold", type=float, default=0.95, help="cosine at or above which two are near-copies")
    parser.add_argument("--k", type=int, default=10, help="neighbours searched per image")
    parser.add_argument("--method", default="auto", choices=["auto", "exact", "ivf", "hnsw"])
    parser.add_argument("--exact-below", type=int, default=100_000, help="'auto' switches to IVF from this size")
    parser.add_argument("--identities", action="store_true", help="sub-folders are identities (labels)")
    parser.add_argument("--image-size", type=int, default=112, help="input side for a backbone folder")
    parser.add_argument("--output", required=True, help="folder: redundancy.json, duplicate_pairs.csv, deduplicated.txt")


def run(args: argparse.Namespace) -> int:
    import csv
    import json
    import os

    from hf_facerec._files import atomic_write, check_output_dir
    from hf_facerec.data.listing import list_folder_images
    from hf_facerec.representation.redundancy import (dataset_statistics, deduplicated_subset, embed_images,
                                                      redundancy_report, thumbnail_embeddings)

    output = check_output_dir(args.output)
    paths = list_folder_images(args.images, recursive=True).images
    if not paths:
        raise ValueError(f"--images {args.images}: no image found")
    labels = [os.path.relpath(os.path.dirname(p), args.images) for p in paths] if args.identities else None
    vectors = embed_images(args.model, paths, image_size=args.image_size) if args.model else thumbnail_embeddings(paths)
    report = redundancy_report(vectors, args.threshold, args.k, labels=labels, method=args.method,
                               exact_below=args.exact_below)
    pairs, scores, clusters = report.pop("pairs"), report.pop("scores"), report.pop("cluster_of")
    report = {"statistics": dataset_statistics(len(paths), labels), **report,
              "embedding": args.model or "thumbnails"}
    with atomic_write(output / "redundancy.json") as handle:
        json.dump(report, handle, indent=2)
    with atomic_write(output / "duplicate_pairs.csv", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image1", "image2", "cosine"])
        writer.writerows((paths[i], paths[j], f"{s:.4f}") for (i, j), s in zip(pairs.tolist(), scores.tolist()))
    with atomic_write(output / "deduplicated.txt") as handle:
        handle.writelines(paths[i] + "\n" for i in deduplicated_subset(clusters))
    print(json.dumps(report, indent=2))
    return 0
