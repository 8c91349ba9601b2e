"""`hf-facerec fewshot`: the few-shot benchmark (:mod:`hf_facerec.representation.fewshot`): pre-trainings x tasks x
label fractions x adaptation modes x seeds -> results.json, results.md, fewshot.png.

    hf-facerec fewshot --pretraining swav=runs/ssl_swav/backbone --random-init scratch=runs/ssl_swav/backbone \\
        --data ../shared/data --tasks jaffe_expression,cmu_pose --fractions 0.01,0.1,1 --output runs/fewshot
"""

from __future__ import annotations

import argparse


def _named(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} takes name=path, got {value!r}")
        out.append((name, path))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretraining", nargs="+", default=[], help="name=folder (backbone or FaceRec model)")
    parser.add_argument("--random-init", nargs="+", default=[], help="name=folder: that architecture, random weights")
    parser.add_argument("--data", required=True, help="data root holding the tasks' folders (e.g. ../shared/data)")
    parser.add_argument("--tasks", default=None, help="comma-separated registered tasks (default: all built-in)")
    parser.add_argument("--fractions", default="0.01,0.1,1", help="label fractions in (0, 1]")
    parser.add_argument("--modes", default="linear_probe", help="comma-separated: linear_probe, lora, full")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of lora / full adaptation")
    parser.add_argument("--probe-steps", type=int, default=300, help="optimizer steps of a linear probe")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-train", type=int, default=None, help="cap on training images per task")
    parser.add_argument("--max-test", type=int, default=None, help="cap on test images (pairs) per task")
    parser.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> int:
    from hf_facerec.representation.fewshot import Pretraining, run_fewshot
    from hf_facerec.representation.tasks import DEFAULT_TASKS

    pretrainings = [Pretraining(n, p) for n, p in _named(args.pretraining, "--pretraining")]
    pretrainings += [Pretraining(n, p, random_init=True) for n, p in _named(args.random_init, "--random-init")]
    if not pretrainings:
        raise ValueError("give at least one --pretraining or --random-init")
    tasks = args.tasks.split(",") if args.tasks else list(DEFAULT_TASKS)
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as error:
        raise ValueError(f"--fractions / --seeds: {error}") from error
    run_fewshot(pretrainings, tasks, args.data, args.output, fractions, args.modes.split(","), seeds,
                args.image_size, args.epochs, args.probe_steps, args.lr, max_train=args.max_train,
                max_test=args.max_test)
    print((__import__("pathlib").Path(args.output) / "results.md").read_text())
    return 0
