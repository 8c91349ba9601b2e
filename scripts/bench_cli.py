#!/usr/bin/env python
"""Wall time of `hf-facerec --help`, of every command's `--help` and of `import hf_facerec` (fresh interpreters).

    python scripts/bench_cli.py [--repeat 3] [--json out.json]

Prints the median of `--repeat` runs per line, and `import transformers` / `import torch` for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _time(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here (docs: scripts/docs_figures.py)")
    args = parser.parse_args()
    from hf_facerec.cli import _COMMANDS

    cli = [sys.executable, "-m", "hf_facerec.cli"]
    rows = {"hf-facerec --help": cli + ["--help"]}
    rows.update({f"hf-facerec {name} --help": cli + [name, "--help"] for name in sorted(_COMMANDS)})
    for module in ("hf_facerec", "transformers", "torch"):
        rows[f"import {module}"] = [sys.executable, "-c", f"import {module}"]
    results = {}
    for label, argv in rows.items():
        results[label] = round(_time(argv, args.repeat), 3)
        print(f"{results[label]:7.2f} s  {label}", flush=True)
    print(json.dumps(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            file.write(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
