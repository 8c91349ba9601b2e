#!/usr/bin/env python
"""Training throughput and memory per finetune mode (FaceRecTrainer), then the margin head alone at scale.

Part 1, per finetune mode (full, lora, linear_probe, scratch): a ViT (default width 192, 6 layers, 3 heads,
112x112, patch 16, embedding 512, 1,000 identities, ArcFace) trained by `FaceRecTrainer` on random tensors.
Each mode runs in its own subprocess, so its peak memory is its own; the modes run in turn, ``--repeats`` times
(A B C D A B C D), and the fastest run of each is shown with the range.  The first optimiser step is a warm-up (it
allocates the gradients and the optimiser state); steps/s and samples/s are measured over the next ``--steps``
steps (from the end of step 1 to the end of the last).  Memory, on CPU: "peak MB" is the process'
resident high-water mark (VmHWM: Python, torch, the model and the data included); "train MB" is that peak minus
the resident memory just before ``train()``: what training adds (gradients, optimiser state, activations).  On
CUDA: ``max_memory_allocated`` and its rise above the memory allocated before ``train()``.

Part 2 delegates to `scripts/bench_heads.py` (one home for that measurement): forward + backward of the ArcFace
head alone, D=512, batch 128, for 10K / 100K / 1M identities, full softmax versus Partial FC at 0.1.

    python scripts/bench_train.py                          # CPU defaults, ~4 minutes on 2 shared cores
    python scripts/bench_train.py --modes full lora --steps 10 --threads 2
    python scripts/bench_train.py --hidden-size 384 --layers 12 --heads 6 --batch 256 --bf16 \\
        --partial-fc 1.0 0.1 --num-identities 100000 --skip-heads          # GPU: a ViT-S-sized run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("full", "lora", "linear_probe", "scratch")
_MB = 2**20


def _proc_kb(field: str) -> int:
    """A memory field of /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _dataset(count: int, image_size: int, num_identities: int):
    """A torch dataset of ``count`` random (3, S, S) images with labels (tensors are generated once)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(count, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_identities, (count,), generator=generator)
    return [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(count)]


def _model(args: argparse.Namespace, sample_rate: float):
    from transformers import ViTConfig

    from hf_facerec.models import FaceRecConfig, FaceRecForMarginClassification

    backbone = ViTConfig(image_size=args.image_size, patch_size=args.patch_size, hidden_size=args.hidden_size,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         intermediate_size=4 * args.hidden_size)
    config = FaceRecConfig(backbone_config=backbone, image_size=args.image_size, embedding_size=512,
                           num_identities=args.num_identities, partial_fc_sample_rate=sample_rate)
    return FaceRecForMarginClassification(config)


def _run_mode(mode: str, sample_rate: float, args: argparse.Namespace) -> dict:
    """Train ``1 + args.steps`` steps in ``mode``; return the figures (run in a fresh subprocess)."""
    import torch
    from transformers import TrainerCallback

    from hf_facerec.training import FaceRecTrainer, FaceRecTrainingArguments
    from hf_facerec.training.peft import trainable_parameter_counts

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    marks: dict[str, float] = {}

    class _Clock(TrainerCallback):
        """Timestamps the end of each step (step 1, the warm-up, starts the clock)."""

        def on_step_end(self, targs, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            marks["start" if state.global_step == 1 else "end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as output_dir:
        targs = FaceRecTrainingArguments(
            output_dir=output_dir, finetune_mode=mode, max_steps=1 + args.steps,
            per_device_train_batch_size=args.batch, learning_rate=1e-3, use_cpu=not cuda, bf16=args.bf16,
            save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, seed=0)
        model = _model(args, sample_rate)
        trainer = FaceRecTrainer(model=model, args=targs, callbacks=[_Clock()],
                                 train_dataset=_dataset(args.batch * (1 + args.steps), args.image_size,
                                                        args.num_identities))
        if cuda:
            trainer.model.cuda()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _proc_kb("VmRSS") * 1024
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if cuda else _proc_kb("VmHWM") * 1024
        counts = trainable_parameter_counts(trainer.model)
    seconds = marks["end"] - marks["start"]
    return {"mode": mode, "sample_rate": sample_rate, "device": "cuda" if cuda else "cpu",
            "steps_per_s": args.steps / seconds, "samples_per_s": args.steps * args.batch / seconds,
            "peak_mb": peak / _MB, "train_mb": (peak - base) / _MB,
            "trainable": counts.get("total", sum(counts.values()))}


def _subprocess(mode: str, sample_rate: float, argv: list[str]) -> dict | str:
    proc = subprocess.run([sys.executable, __file__, *argv, "--one", mode, str(sample_rate)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--hidden-size", type=int, default=192)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--num-identities", type=int, default=1000)
    parser.add_argument("--partial-fc", type=float, nargs="+", default=[1.0], help="sample rates to run")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU; slow on this CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per mode; the fastest is shown")
    parser.add_argument("--head-steps", type=int, default=2, help="timed steps per head size (bench_heads.py)")
    parser.add_argument("--skip-heads", action="store_true", help="skip part 2 (scripts/bench_heads.py)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: one mode, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_run_mode(args.one[0], float(args.one[1]), args)))
        return
    argv = sys.argv[1:]
    print(f"FaceRecTrainer, ViT d={args.hidden_size} x {args.layers} layers, {args.image_size}x{args.image_size}, "
          f"batch {args.batch}, {args.num_identities} identities, {args.steps} timed steps after 1 warm-up, "
          f"{args.threads} threads{', bf16' if args.bf16 else ''}; best of {args.repeats} alternating runs "
          "(steps/s range in brackets)")
    runs = [(mode, rate) for mode in args.modes for rate in args.partial_fc]
    results: dict[tuple[str, float], list] = {run: [] for run in runs}
    for _ in range(args.repeats):  # A B C D A B C D: load from other processes hits every mode alike
        for run in runs:
            results[run].append(_subprocess(*run, argv))
    print(f"{'mode':>13} {'PFC':>4} {'device':>6} {'steps/s':>8} {'(range)':>13} {'samples/s':>10} {'peak MB':>8} "
          f"{'train MB':>8} {'trainable':>10}")
    for (mode, rate), outcomes in results.items():
        good = [r for r in outcomes if isinstance(r, dict)]
        if not good:
            print(f"{mode:>13} {rate:>4} failed: {outcomes[-1]}")
            continue
        best = max(good, key=lambda r: r["steps_per_s"])
        speeds = [r["steps_per_s"] for r in good]
        span = f"({min(speeds):.2f}-{max(speeds):.2f})"
        print(f"{mode:>13} {rate:>4} {best['device']:>6} {best['steps_per_s']:>8.2f} {span:>13} "
              f"{best['samples_per_s']:>10.1f} {max(r['peak_mb'] for r in good):>8.0f} "
              f"{max(r['train_mb'] for r in good):>8.0f} {best['trainable']:>10,}", flush=True)
    if not args.skip_heads:
        print(flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_heads.py"), "--threads", str(args.threads),
                        "--steps", str(args.head_steps)], check=False, cwd=ROOT)

if __name__ == "__main__":
    main()
