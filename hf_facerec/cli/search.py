"""`hf-facerec search`: the comprehensive search (cleaning + architecture + loss) with the REINFORCE controller,
against random and one-aspect-at-a-time search under the same trial budget (:mod:`hf_facerec.search`).

    hf-facerec search --train faces_train/ --val faces_heldout/ --reference-model mobilefacenet/ \\
        --trials 30 --methods rl,random,one-at-a-time --output runs/search
    # more workers on the same search: the same command with --storage sqlite:///runs/search/search.db
    # (or a PostgreSQL URL); after a crash: the same command with --resume

Writes OUTPUT/trials_{method}.csv, search.png, best_{method}.yaml (runs with scripts/train.py, its cleaned
data in best_data_{method}/), summary.json; prints the summary.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hf_facerec.cli import model_source

    parser.add_argument("--train", required=True, help="training identities (folder, Parquet, saved dataset)")
    parser.add_argument("--val", required=True, help="held-out identities the reward scores (disjoint from --train)")
    ref = parser.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference-model", type=model_source, help="FaceRec model whose embeddings drive cleaning")
    ref.add_argument("--embeddings", help="precomputed (N, D) .npy reference embeddings of --train, in row order")
    parser.add_argument("--output", required=True, help="results folder")
    parser.add_argument("--methods", default="rl,random,one-at-a-time", help="comma-separated: rl, random, one-at-a-time")
    parser.add_argument("--trials", type=int, default=30, help="trial budget per method")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUTPUT/search.db)")
    parser.add_argument("--resume", action="store_true", help="mark trials a killed worker left RUNNING, continue")
    parser.add_argument("--image-size", type=int, default=32, help="proxy input side")
    parser.add_argument("--target-flops", type=float, default=5e6, help="reward's FLOP target (per image)")
    parser.add_argument("--max-flops", type=float, default=None, help="reject architectures above this")
    parser.add_argument("--max-params", type=int, default=None, help="reject architectures above this")
    parser.add_argument("--steps", type=int, default=60, help="proxy training steps per trial")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--export-steps", type=int, default=2000, help="max_steps of the exported configs")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from hf_facerec.data.sources import load_train_dataset
    from hf_facerec.search.runner import compare_methods
    from hf_facerec.search.space import SearchSpace
    from hf_facerec.search.study import ProxySettings, SearchData

    if args.trials < 3:
        raise ValueError(f"--trials must be >= 3, got {args.trials}")
    train, val = load_train_dataset(args.train), load_train_dataset(args.val)
    if args.embeddings:
        embeddings = np.load(args.embeddings, allow_pickle=False)
    else:
        from hf_facerec.embedding import FaceEmbedder
        from hf_facerec.search.cleaning import embed_dataset

        embeddings = embed_dataset(train, FaceEmbedder.from_pretrained(args.reference_model, flip="sum"))
    space = SearchSpace.default(image_size=args.image_size, target_flops=args.target_flops,
                                max_flops=args.max_flops, max_params=args.max_params)
    data = SearchData(train, val, embeddings, image_size=args.image_size, seed=args.seed)
    settings = ProxySettings(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    summary = compare_methods(space, data, [m.strip() for m in args.methods.split(",") if m.strip()], args.trials,
                              args.output, args.storage, settings, args.seed, args.resume, args.export_steps)
    print(json.dumps(summary, indent=2, default=str))
    return 0
