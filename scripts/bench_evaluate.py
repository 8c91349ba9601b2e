"""`hf-facerec evaluate` end to end, an older checkout against this one, one after the other on one machine:

    git worktree add --detach ../old 9bb29d1     # the commit before the worker pipeline (serial path)
    python scripts/bench_evaluate.py --old-src ../old --model ./mobilefacenet \\
        --detector-model yunet.onnx --data-dir ../shared/data [--benchmarks lfw] [--json out.json]

Each side runs the real CLI in a fresh interpreter (``PYTHONPATH`` = that checkout, cwd outside both trees so
the checkout's package is the one imported), with ``--align yunet --flip concat --no-cache``: decode, detect,
align and embed every photo of the benchmark, then the metrics, the JSON/markdown and the plots. Prints wall
time, images/s (the benchmark's distinct photos), CPU use and minor page faults of each (of the CLI process and the
children it waits for: forkserver alignment workers are the server's children, so they are not counted), their
ratio, and the
two accuracies (they must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(src: Path, args, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [sys.executable, "-m", "hf_facerec.cli", "evaluate", "--model", args.model, "--benchmarks",
            args.benchmarks, "--data-dir", args.data_dir, "--align", "yunet", "--detector-model",
            args.detector_model, "--flip", "concat", "--no-cache", "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=out.parent, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{src}: evaluate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())["benchmarks"][args.benchmarks.split(",")[0]]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"src": str(src), "wall_s": wall, "n_images": results["n_images"], "img_s": results["n_images"] / wall,
            "cpu_percent": 100 * cpu / wall, "minor_faults": after.ru_minflt - before.ru_minflt,
            "accuracy": results["verification"].get("accuracy")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-src", required=True, help="checkout of the older commit (its repo root)")
    parser.add_argument("--new-src", default=str(REPO), help="checkout to compare (default: this one)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--detector-model", required=True, help="YuNet .onnx")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--benchmarks", default="lfw")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side, src in (("old", args.old_src), ("new", args.new_src)):
            figures[side] = _run(Path(src).resolve(), args, Path(tmp) / side)
            f = figures[side]
            print(f"{side}: {f['wall_s']:.1f} s for {f['n_images']} photos = {f['img_s']:.2f} img/s, "
                  f"CPU {f['cpu_percent']:.0f}%, {f['minor_faults'] / f['n_images']:.0f} minor faults/img, "
                  f"accuracy {f['accuracy']}")
    figures["speedup"] = figures["new"]["img_s"] / figures["old"]["img_s"]
    print(f"new vs old: {figures['speedup']:.2f}x images/s end to end")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
