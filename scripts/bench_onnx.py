"""CPU throughput of the embedding model: torch eager vs onnxruntime, at batch 1 and 32.

    python scripts/bench_onnx.py [--model DIR] [--repeats 7] [--threads 1]

Default model: a MobileFaceNet FaceRecModel at 112x96 with random weights (the architecture of the converted
checkpoint, ~1M parameters; speed does not depend on the weights), or ``--model`` a saved folder. The machine is
shared and noisy, so the engines are interleaved (each repeat times torch b1, ORT b1, torch b32, ORT b32 in turn)
and medians are reported; two warm-up calls per engine and batch size first. Also prints what the export check
measured on synthetic faces (max |torch - onnxruntime| and min cosine, `hf_facerec.hub.onnx.check_onnx`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _model(path: str | None):
    from hf_facerec.models import FaceRecConfig, FaceRecModel, MobileFaceNetConfig

    if path:
        return FaceRecModel.from_pretrained(path).eval()
    torch.manual_seed(0)
    config = FaceRecConfig(backbone_config=MobileFaceNetConfig(image_size=[112, 96]), embedding_size=128,
                           image_size=[112, 96], embedding_head="none")
    return FaceRecModel(config).eval()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=7)
    # 1 thread by default: on a loaded 2-core machine torch's OpenMP barrier with 2 threads stalls (measured here:
    # ~3 s per batch-1 call with 2 threads vs 14 ms with 1); both engines get the same count.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from hf_facerec.hub.onnx import _session, check_onnx, export_onnx

    torch.set_num_threads(args.threads)
    model = _model(args.model)
    height, width = model.config.face_size
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", check=False)
        check = check_onnx(model, path)
        session = _session(path, threads=args.threads)
        batches = {b: torch.randn(b, 3, height, width) for b in (1, 32)}

        def run_torch(x):
            with torch.no_grad():
                return model(pixel_values=x).embeddings.numpy()

        def run_ort(x):
            return session.run(["embeddings"], {"pixel_values": x.numpy()})[0]

        engines = {"torch eager": run_torch, "onnxruntime": run_ort}
        for x in batches.values():  # warm-up: first calls per shape build kernels / allocate
            for fn in engines.values():
                fn(x)
                fn(x)
        times = {(e, b): [] for e in engines for b in batches}
        for _ in range(args.repeats):
            for b, x in batches.items():
                for name, fn in engines.items():
                    start = time.perf_counter()
                    fn(x)
                    times[(name, b)].append(time.perf_counter() - start)
    print(f"model: {args.model or 'MobileFaceNet 112x96 (random weights)'}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters; {args.threads} threads; median of {args.repeats} interleaved runs\ncheck: {check}")
    results = {}
    for b in batches:
        rates = {name: b / statistics.median(times[(name, b)]) for name in engines}
        results[b] = rates
        print(f"batch {b:>2}: torch eager {rates['torch eager']:8.1f} images/s | onnxruntime "
              f"{rates['onnxruntime']:8.1f} images/s | ORT / torch {rates['onnxruntime'] / rates['torch eager']:.2f}x")
    return results


if __name__ == "__main__":
    main()
