#!/usr/bin/env python
"""Train a face recognizer: full fine-tuning, LoRA/DoRA/LoHa, linear probe or from scratch.

    python scripts/train.py --config configs/train/tiny_synthetic.yaml
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/train/dinov2_small_lora.yaml
    python scripts/train.py --config configs/train/tiny_synthetic.yaml --max_steps 20 --output_dir /tmp/run
    accelerate launch --config_file configs/accelerate/cpu_ddp.yaml --num_processes 2 scripts/train.py --config configs/train/tiny_synthetic.yaml

Several processes on CPUs need cpu_ddp.yaml: cpu.yaml starts one process, so `--num_processes N` is refused with
it (hf_facerec/training/launch.py), as are N processes that each see a world of one. DDP's
find_unused_parameters is derived from the model unless --ddp_find_unused_parameters is given.

The same as `hf-facerec train`; see `hf_facerec/training/build.py` for the arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import hf_facerec  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from hf_facerec.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
