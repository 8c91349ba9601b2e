"""Time `hf-facerec quickstart`: stage timings, wall time, CPU time and utilisation, accuracy.

    PYTHONPATH=. python scripts/bench_quickstart.py                       # the default main job
    PYTHONPATH=. python scripts/bench_quickstart.py --steps 100           # a quick look
    python scripts/bench_quickstart.py --code /path/to/other/checkout     # another version, same conditions

Runs the command in a child process (``PYTHONPATH=--code``) and prints one JSON line: ``wall_s``, ``cpu_s``
(user + system of the child and its workers), ``cpu_cores_used`` (cpu_s / wall_s: 2.0 is both cores of a
2-core machine), ``load_average`` at the start (other jobs inflate wall time), the command's own per-stage
``timings_s`` (when that version writes them) and the 10-fold accuracy. Extra arguments go to quickstart.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="checkout to time")
    parser.add_argument("--output", default=None, help="quickstart output folder (default: a temporary one)")
    args, extra = parser.parse_known_args()
    output = str(Path(args.output or tempfile.mkdtemp(prefix="bench_quickstart_")).resolve())
    env = {**os.environ, "PYTHONPATH": args.code, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "hf_facerec.cli", "quickstart", "--output", output, *extra]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # cwd=--code: `python -m` puts the working directory ahead of PYTHONPATH, so run from the checkout timed.
    subprocess.run(command, env=env, cwd=args.code, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the grandchildren (workers) it waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads((Path(output) / "results.json").read_text())
    verification = summary["results"]["verification"]
    print(json.dumps({
        "code": args.code,
        "args": extra,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_cores_used": round(cpu / wall, 2),
        "load_average": round(load, 2),
        "timings_s": summary.get("timings_s"),
        "train_runtime_s": summary["training"].get("train_runtime_s"),
        "accuracy": round(verification["accuracy"], 4),
        "accuracy_std": round(verification["accuracy_std"], 4),
        "eer": round(verification["eer"], 4),
        "auc": round(verification["auc"], 4),
    }))


if __name__ == "__main__":
    main()
