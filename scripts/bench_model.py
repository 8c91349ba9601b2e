#!/usr/bin/env python
"""Images/s of FaceRecModel against the bare backbone forward on the same batch (CPU, random weights).

The face model adds pooling, the embedding head and the L2 norm; this prints what they cost. Timings alternate
between the two models (A, B, A, B, ...) so that load from other processes hits both alike, and the median of
each is reported.

    python scripts/bench_model.py                      # tiny ViT and ViT-S/16-sized DINOv2 at 112x112, batch 32
    python scripts/bench_model.py --repeats 10 --batch-size 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import Dinov2Config, ViTConfig

from hf_facerec import FaceRecConfig, FaceRecModel, IResNetConfig

CONFIGS = {
    "tiny-vit (d=32, 2 layers)": lambda: ViTConfig(
        image_size=112, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    ),
    "dinov2 ViT-S/14 (d=384, 12 layers)": lambda: Dinov2Config(
        image_size=112, patch_size=14, hidden_size=384, num_hidden_layers=12, num_attention_heads=6
    ),
    "iresnet18": lambda: IResNetConfig.from_depth(18),
}


def _time(fn, pixel_values) -> float:
    start = time.perf_counter()
    fn(pixel_values)
    return time.perf_counter() - start


@torch.inference_mode()
def bench(name: str, batch_size: int, repeats: int) -> dict:
    config = FaceRecConfig(backbone_config=CONFIGS[name](), embedding_size=512)
    model = FaceRecModel(config).eval()
    backbone = model.backbone
    pixel_values = torch.randn(batch_size, 3, 112, 112)
    full = lambda x: model(x)  # noqa: E731
    bare = lambda x: backbone(pixel_values=x)  # noqa: E731
    for fn in (full, bare):  # warm-up
        fn(pixel_values)
    full_times, bare_times = [], []
    for _ in range(repeats):
        full_times.append(_time(full, pixel_values))
        bare_times.append(_time(bare, pixel_values))
    full_s, bare_s = statistics.median(full_times), statistics.median(bare_times)
    return {
        "model": name,
        "backbone img/s": batch_size / bare_s,
        "FaceRecModel img/s": batch_size / full_s,
        "overhead %": 100.0 * (full_s - bare_s) / bare_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, fp32, CPU")
    print(f"{'model':38s} {'backbone img/s':>15s} {'FaceRecModel img/s':>19s} {'overhead %':>11s}")
    for name in CONFIGS:
        row = bench(name, args.batch_size, args.repeats)
        print(f"{row['model']:38s} {row['backbone img/s']:15.1f} {row['FaceRecModel img/s']:19.1f} {row['overhead %']:11.2f}")


if __name__ == "__main__":
    main()
