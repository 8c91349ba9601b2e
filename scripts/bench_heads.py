"""Time and memory of one margin-head training step (forward + backward): full softmax vs Partial FC.

Each (classes, sample_rate) runs in its own subprocess so its peak memory is its own.  Memory is the
peak *transient* memory of a step (above the weights and their gradient, which are reported apart):
on CUDA ``max_memory_allocated``; on CPU the process' peak RSS (VmHWM, reset through
/proc/self/clear_refs) minus the RSS before the step.

    python scripts/bench_heads.py                       # 10K / 100K / 1M classes, rates 1.0 and 0.1
    python scripts/bench_heads.py --classes 10000 --rates 1.0 0.1 0.01 --batch 256 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_MB = 2**20


def _proc_kb(field: str) -> int:
    """A memory field of /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _run_one(classes: int, rate: float, args: argparse.Namespace) -> dict:
    """Build a head, do a warm-up step, then time ``args.steps`` steps; return the figures as a dict."""
    import torch

    from hf_facerec.models.heads import build_margin_head

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    head = build_margin_head(args.dim, classes, "arcface", sample_rate=rate).to(device)
    features = torch.randn(args.batch, args.dim, device=device, requires_grad=True)
    labels = torch.randint(0, classes, (args.batch,), device=device)

    def step() -> int:
        out = head(features, labels)
        out.loss.backward()
        return out.logits.shape[1]

    step()  # allocates .grad, so the peak below is the step's own transient memory
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        sync()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _proc_kb("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    times = []
    for _ in range(args.steps):
        sync()
        start = time.perf_counter()
        columns = step()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _proc_kb("VmHWM") * 1024
    return {"classes": classes, "rate": rate, "columns": columns, "device": device.type,
            "ms_per_step": 1000 * statistics.median(times), "transient_mb": (peak - base) / _MB,
            "weight_mb": head.weight.numel() * head.weight.element_size() / _MB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: run one config, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_run_one(int(args.one[0]), float(args.one[1]), args)))
        return
    common = ["--dim", str(args.dim), "--batch", str(args.batch), "--steps", str(args.steps),
              "--threads", str(args.threads)]
    print(f"arcface head, D={args.dim}, batch={args.batch}, median of {args.steps} fwd+bwd steps")
    print(f"{'classes':>9} {'rate':>5} {'columns':>8} {'device':>6} {'ms/step':>9} {'step MB':>9} "
          f"{'weight MB':>9} {'speed-up':>8}")
    for classes in args.classes:
        full_ms = None
        for rate in args.rates:
            proc = subprocess.run([sys.executable, __file__, "--one", str(classes), str(rate), *common],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{classes:>9} {rate:>5} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            full_ms = r["ms_per_step"] if rate == 1.0 else full_ms
            speedup = f"{full_ms / r['ms_per_step']:.1f}x" if full_ms else "-"
            print(f"{classes:>9} {rate:>5} {r['columns']:>8} {r['device']:>6} {r['ms_per_step']:>9.1f} "
                  f"{r['transient_mb']:>9.0f} {r['weight_mb']:>9.0f} {speedup:>8}")


if __name__ == "__main__":
    main()
