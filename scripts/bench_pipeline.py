"""Side-by-side speed of the benchmark runner's embedding paths, in one run (ratios are what count on
a shared machine):

    python scripts/bench_pipeline.py --model ./mobilefacenet --detector-model yunet.onnx \\
        --data-dir ../shared/data --images 256 [--flip concat] [--num-workers N] [--json out.json]

* ``old``: the previous serial path, ``FaceEmbedder.__call__`` with the per-image ``build_preprocess``
  callable (decode + detect + align + forward in one process, batches of ``--batch-size``);
* ``new``: :func:`hf_facerec.benchmarks.pipeline.embed_aligned` (workers align, the main process embeds);
* ``forward``: the bare forward (flip TTA included) of the same model on the pre-aligned crops'
  pixel values, as the new path runs it (frozen, its micro-batches and threads): its ceiling.

``new`` includes starting the worker pool (a forkserver importing the package: seconds), so use a
few hundred images at least.

Images/s end to end (decode + detect + align + embed), minor page faults per image (this process and
its workers), and the largest difference between the old and new embeddings. The peer figure:
face_recognition's ~5 images/s per core end to end.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from hf_facerec.benchmarks.pipeline import AlignSpec, _frozen, aligned_crops, default_num_workers, embed_aligned
from hf_facerec.benchmarks.registry import load_benchmark
from hf_facerec.benchmarks.runner import _ChannelsLast, _load_embedder
from hf_facerec.data.pairs import pair_image_sources


def _faults() -> int:
    return sum(resource.getrusage(who).ru_minflt for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _timed(run):
    faults, start = _faults(), time.perf_counter()
    value = run()
    return value, time.perf_counter() - start, _faults() - faults


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="saved FaceRec model folder")
    parser.add_argument("--detector-model", required=True, help="YuNet .onnx")
    parser.add_argument("--data-dir", required=True, help="folder holding lfw/ (pairs.txt + images)")
    parser.add_argument("--images", type=int, default=256, help="first N distinct LFW pair images")
    parser.add_argument("--flip", default="concat", choices=("none", "sum", "concat"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=None, help="new path's workers (default: spare cores)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    sources, _, _ = pair_image_sources(load_benchmark("lfw", args.data_dir).pairs)
    sources = sources[: args.images]
    embedder = _load_embedder(args.model, None, args.batch_size, args.flip, None)
    spec = AlignSpec(tuple(embedder.model.config.face_size), "yunet", args.detector_model)
    workers = default_num_workers() if args.num_workers is None else args.num_workers
    n = len(sources)
    with _ChannelsLast(embedder.model, embedder.device):  # as the runner runs the model, both paths
        old, old_s, old_faults = _timed(lambda: embedder(list(sources), progress=False, preprocess=spec.build()[0]))
        (new, no_face), new_s, new_faults = _timed(
            lambda: embed_aligned(embedder, sources, spec, num_workers=workers, progress=False))
        crops = [crop for crop, _ in aligned_crops(sources, spec, workers)]  # pre-aligned, not timed
        pixels = embedder.image_processor(images=crops, return_tensors="pt")["pixel_values"]
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads - workers) if workers else threads)  # as embed_aligned runs it
        fast = _frozen(embedder, pixels[:16])
        with torch.no_grad():
            _, bare_s, bare_faults = _timed(lambda: [fast.embed_pixel_values(pixels[i : i + 16]) for i in range(0, n, 16)])
        torch.set_num_threads(threads)
    rows = {
        "old (serial FaceEmbedder)": (old_s, old_faults),
        f"new (pipeline, {workers} workers)": (new_s, new_faults),
        "bare forward on aligned crops": (bare_s, bare_faults),
    }
    figures = {
        "images": n, "flip": args.flip, "num_workers": workers, "torch_threads": torch.get_num_threads(),
        "old_img_s": n / old_s, "new_img_s": n / new_s, "forward_img_s": n / bare_s,
        "speedup_new_vs_old": old_s / new_s, "new_vs_forward": bare_s / new_s,
        "old_faults_per_img": old_faults / n, "new_faults_per_img": new_faults / n,
        "max_abs_diff_old_new": float(np.abs(old - new).max()), "n_no_face": no_face,
    }
    print(f"{n} LFW images, YuNet -> {spec.face_size}, flip {args.flip}, batch {args.batch_size}")
    print(f"| path | s | images/s | minor faults/image |\n|---|---:|---:|---:|")
    for name, (seconds, faults) in rows.items():
        print(f"| {name} | {seconds:.1f} | {n / seconds:.1f} | {faults / n:,.0f} |")
    print(f"new / old: {figures['speedup_new_vs_old']:.2f}x; new reaches {100 * figures['new_vs_forward']:.0f}% of the bare "
          f"forward; max |old - new| = {figures['max_abs_diff_old_new']:.2e}")
    print(json.dumps(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
