"""`hf-facerec data-scale`: the foundation-model study's grid of identity counts x finetune modes
(:mod:`hf_facerec.training.data_scale`).

    hf-facerec data-scale --config configs/train/dinov2_small_lora.yaml --identity-counts 1000,5000,10000,all \\
        --modes lora,full,scratch --pairs lfw=data/lfw.bin --output runs/data_scale
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config (YAML/JSON) shared by every cell")
    parser.add_argument("--identity-counts", required=True, help="comma-separated counts, 'all' for every identity")
    parser.add_argument("--modes", default="lora,full,scratch", help="comma-separated finetune modes")
    parser.add_argument("--pairs", nargs="+", required=True, help="pair sets: name=path (.bin, pairs.txt, .csv)")
    parser.add_argument("--output", required=True, help="grid folder")
    parser.add_argument("--flip", default="sum", choices=["none", "sum", "concat"], help="flip TTA at evaluation")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="extra `hf-facerec train` flags for every cell (must come last)")



def run(args: argparse.Namespace) -> int:
    from hf_facerec.training.data_scale import run_grid

    run_grid(args.config, args.identity_counts, args.modes, args.pairs, args.output, args.flip, args.train_args)
    return 0
