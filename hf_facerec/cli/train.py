"""`hf-facerec train`: train a face recognizer from a YAML/JSON config and/or flags (:mod:`hf_facerec.training.build`).

    hf-facerec train --config configs/train/tiny_synthetic.yaml --max_steps 50
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/train/dinov2_small_lora.yaml
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hf_facerec.training.build import add_arguments as add_train_arguments

    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hf_facerec.training.build import parse_train_arguments, train

    train(*parse_train_arguments(args))
    return 0
