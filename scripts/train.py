#!/usr/bin/env python
"""Train a face recognizer: full fine-tuning, LoRA/DoRA/LoHa, linear probe or from scratch.

    python scripts/train.py --config configs/train/tiny_synthetic.yaml
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/train/dinov2_small_lora.yaml
    python scripts/train.py --config configs/train/tiny_synthetic.yaml --max_steps 20 --output_dir /tmp/run

The same as `hf-facerec train`; see `hf_facerec/training/train_cli.py` for the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from hf_facerec.training import train_cli
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_facerec.training import train_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_cli.add_arguments(parser)
    return train_cli.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
