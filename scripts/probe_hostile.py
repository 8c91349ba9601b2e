"""Feed the hostile-input corpus (issue 13) through every public entry point and classify each run.

Usage::

    python scripts/probe_hostile.py --out /tmp/probe            # the whole corpus, 2 workers
    python scripts/probe_hostile.py --out /tmp/probe --quick    # without the evaluate CLI runs
    python scripts/probe_hostile.py --out /tmp/probe --cases 'img:trunc' --entries load_rgb

The corpus is generated at run time (``scripts/hostile_corpus.py``, ``hostile_files.py``) under
``OUT/corpus``. The runs go to worker subprocesses, each capped with ``RLIMIT_AS`` (``--mem-gb``) and a
per-run timeout, so a denial of service shows as ``dos``/``hang`` instead of taking the machine down; a
worker that dies or hangs is replaced and goes on with the next run. CLIs run as
``hf_facerec.cli.main(argv)`` inside the worker (exit status and last stderr line kept, an escaping
exception is a traceback).

Each run is one of: ``ok`` (the oracle's answer), ``refused`` (a ValueError/OSError subclass whose message
names the file, a CLI exit 2 naming it, or a Space ``SpaceInputError``), ``traceback`` (anything else),
``silent-wrong`` (a result the oracle knows is wrong, or a result for an input that must be refused),
``hang``, ``dos`` (MemoryError, killed, or peak RSS grown far beyond the input's size) and
``code-executed`` (a malicious payload created the sentinel file). ``skipped`` runs (the harness could
not build that input) are not counted. Writes ``OUT/probe_results.json``; exits 1 when any run is
traceback / silent-wrong / code-executed / dos / hang.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BAD = ("traceback", "silent-wrong", "code-executed", "dos", "hang")
CATEGORIES = ("ok", "refused") + BAD
#: A control case per input kind, run first in each worker so one-time imports do not count as a run's RSS.
CONTROLS = {"image": "img:ok.png", "array": "arr:uint8", "bin": "bin:ok.bin", "pairs_txt": "pairs:txt_ok",
            "pairs_csv": "pairs:csv_ok", "recordio": "rec:ok", "model": "model:ok", "zip": "zip:ok.zip",
            "json": "json:results_ok.json", "metric": "metric:ok", "data_url": "upload:garbled_data_url"}
#: Entry points --quick leaves out (each run starts a whole evaluation).
SLOW_ENTRIES = ("cli:evaluate(pairs)", "cli:evaluate(model)")
RESTART_AFTER_MB = 200
DOS_MB = 256  # peak RSS growth of one run beyond 4x its input's size that counts as a denial of service
#: What else names the input of an entry point that gets no file (a PIL image is ``images[0]``).
ENTRY_TOKENS = {"FaceEmbedder(PIL)": ["images[0]"]}
#: Prefix of the worker's protocol lines on stdout (libraries may print other lines).
TAG = "@@probe "  # a run that grew the worker's peak RSS this much gets a fresh worker after it


# ---- worker side -------------------------------------------------------------------------------------------


def _tokens(case) -> list[str]:
    """Strings a clear refusal names (the file's basename, or a file inside the case's folder)."""
    path = Path(case.path)
    names = [path.name] + ([case.oracle["token"]] if case.oracle.get("token") else [])
    if case.kind == "recordio":
        names.append(path.with_suffix(".idx").name)
    return names


def classify(exc: BaseException, case, entry: str = "") -> tuple[str, str]:
    """The category of a run of ``entry`` that raised ``exc``."""
    from probe_entries import CliRefusal, CliTraceback, Wrong

    text = f"{type(exc).__name__}: {exc}"[:400]
    if isinstance(exc, Wrong):
        return "silent-wrong", str(exc)[:400]
    if isinstance(exc, MemoryError):
        return "dos", text
    if isinstance(exc, _Hang):
        return "hang", text
    if isinstance(exc, CliTraceback):
        return "traceback", f"CLI: {exc}"[:400]
    message = str(exc)
    if isinstance(exc, CliRefusal):
        named = any(token in message for token in _tokens(case))
        return ("refused" if named else "traceback"), ("" if named else "unclear CLI refusal: ") + message[:380]
    if isinstance(exc, RecursionError) or not isinstance(exc, (ValueError, OSError)):
        return "traceback", text
    if any(cls.__name__ == "SpaceInputError" for cls in type(exc).__mro__):
        return "refused", text
    if case.kind in ("array", "metric"):  # in-memory input: no file to name
        return "refused", text
    if any(token in message for token in _tokens(case) + ENTRY_TOKENS.get(entry, [])):
        return "refused", text
    return "traceback", "unclear (no file name): " + text


class _Hang(Exception):
    """The run passed its time limit (raised by SIGALRM inside the worker)."""


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _input_mb(case) -> float:
    path = Path(case.path)
    return path.stat().st_size / 2**20 if path.is_file() and not path.is_symlink() else 0.0


def worker(root: Path, plan: list[tuple[str, str]], timeout: float) -> int:
    """Run ``plan`` (case id, entry point) in order, one JSON line per run on stdout."""
    import signal
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from hostile_corpus import SENTINEL_NAME, load_cases
    from probe_entries import Context, Skip
    from probe_entry_points import ENTRY_POINTS

    cases = {case.id: case for case in load_cases(root)}
    ctx, sentinel = Context(root), root / SENTINEL_NAME
    os.chdir(ctx.scratch)

    def alarm(*_):
        raise _Hang(f"no result after {timeout:.0f} s")

    signal.signal(signal.SIGALRM, alarm)
    warm = {entry for _, entry in plan}
    for entry in sorted(warm):  # warm-up: imports and shared objects, results discarded
        kinds, fn = ENTRY_POINTS[entry]
        control = next((CONTROLS[k] for k in kinds if k in CONTROLS), None)
        if control:
            try:
                fn(cases[control], ctx)
            except Exception:  # noqa: BLE001 - the control's own run reports it
                pass
    for index, (case_id, entry) in enumerate(plan):
        case, fn = cases[case_id], ENTRY_POINTS[entry][1]
        print(TAG + json.dumps({"start": index}), flush=True)
        before, start = _peak_mb(), time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            category, detail = "ok", fn(case, ctx)
        except Skip as exc:
            category, detail = "skipped", str(exc)
        except BaseException as exc:  # noqa: BLE001 - every outcome is classified
            if isinstance(exc, KeyboardInterrupt):
                raise
            category, detail = classify(exc, case, entry)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        grown = _peak_mb() - before
        if category in ("ok", "refused", "silent-wrong") and grown > DOS_MB + 4 * _input_mb(case):
            category, detail = "dos", f"peak RSS +{grown:.0f} MB for a {_input_mb(case):.3f} MB input ({detail})"
        if sentinel.exists():
            sentinel.unlink()
            category, detail = "code-executed", f"the payload created {SENTINEL_NAME} ({detail})"
        print(TAG + json.dumps({"done": index, "category": category, "detail": str(detail)[:400], "rss_mb": round(grown, 1),
                          "seconds": round(time.perf_counter() - start, 3)}), flush=True)
        if grown > RESTART_AFTER_MB and index + 1 < len(plan):
            return 3  # a fresh worker resets the peak RSS the next run is measured against
    return 0


# ---- parent side -------------------------------------------------------------------------------------------


def _limit(mem_gb: float):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(mem_gb * 2**30),) * 2)
        os.setsid()

    return apply


def drive(root: Path, plan: list[tuple[str, str]], args, results: dict, lock: threading.Lock) -> None:
    """Run ``plan`` in capped worker processes, replacing a worker that dies, hangs or asks to restart."""
    try:
        _drive(root, plan, args, results, lock)
    except Exception as exc:  # noqa: BLE001 - a harness bug must show, not silently drop the runs
        print(f"probe harness error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise


def _drive(root: Path, plan: list[tuple[str, str]], args, results: dict, lock: threading.Lock) -> None:
    todo = list(range(len(plan)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    while todo:
        batch = [plan[i] for i in todo]
        plan_file = root / f".plan_{threading.get_ident()}.json"
        plan_file.write_text(json.dumps(batch))
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(root), str(plan_file), str(args.timeout)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env,
                                preexec_fn=_limit(args.mem_gb))
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        current, done_here, last = None, 0, time.monotonic()
        startup = args.timeout * 3 + 120  # imports + warm-up
        seen = 0
        while True:
            time.sleep(0.05)
            while seen < len(lines):
                line = lines[seen]
                seen += 1
                at = line.find(TAG)  # not always at the start: a library's prompt (input()) leaves no newline
                if at < 0:
                    continue
                message = json.loads(line[at + len(TAG):])
                last = time.monotonic()
                if "start" in message:
                    current = message["start"]
                else:
                    run = todo[message["done"]]
                    with lock:
                        results[run] = message
                    done_here, current = message["done"] + 1, None
            limit = startup if current is None and done_here == 0 else args.timeout + 30
            if proc.poll() is not None and not reader.is_alive():
                break
            if time.monotonic() - last > limit:
                os.killpg(proc.pid, 9)
                proc.wait()
                reader.join(5)
                if current is not None:
                    with lock:
                        results[todo[current]] = {"category": "hang", "detail": "worker killed after the timeout"}
                    done_here = current + 1
                break
        code = proc.wait()
        if current is not None and todo[current] not in results:  # died inside a run
            why = "dos" if code in (-9, 137, -6) else "traceback"
            results[todo[current]] = {"category": why, "detail": f"worker died with status {code}"}
            done_here = current + 1
        if done_here == 0 and current is None:
            for run in todo:
                results[run] = {"category": "traceback", "detail": f"worker failed to start (status {code})"}
            return
        todo = todo[done_here:]
        plan_file.unlink(missing_ok=True)


def summarise(runs: list[dict]) -> dict:
    counts = Counter(run["category"] for run in runs if run["category"] != "skipped")
    per_entry: dict[str, Counter] = defaultdict(Counter)
    for run in runs:
        if run["category"] != "skipped":
            per_entry[run["entry"]][run["category"]] += 1
    return {"total": sum(counts.values()), "counts": {c: counts.get(c, 0) for c in CATEGORIES},
            "skipped": sum(1 for r in runs if r["category"] == "skipped"),
            "unclear_refusals": sum(1 for r in runs if r["category"] == "traceback" and r["detail"].startswith("unclear")),
            "per_entry": {e: {c: n for c, n in sorted(v.items())} for e, v in sorted(per_entry.items())}}


def print_table(summary: dict, runs: list[dict]) -> None:
    width = max(len(e) for e in summary["per_entry"]) if summary["per_entry"] else 10
    short = {"code-executed": "code", "silent-wrong": "silent"}
    heads = [short.get(c, c) for c in CATEGORIES]
    print(f"{'entry point':<{width}} " + " ".join(f"{h:>9}" for h in heads))
    for entry, counts in summary["per_entry"].items():
        print(f"{entry:<{width}} " + " ".join(f"{counts.get(c, 0):>9}" for c in CATEGORIES))
    print(f"{'TOTAL':<{width}} " + " ".join(f"{summary['counts'][c]:>9}" for c in CATEGORIES)
          + f"   ({summary['total']} runs, {summary['skipped']} skipped)")
    print(f"(of the tracebacks, {summary['unclear_refusals']} are ValueError/OSError refusals not naming the file)")
    for category in BAD:
        bad = [r for r in runs if r["category"] == category]
        if bad:
            print(f"\n{category} ({len(bad)}):")
            for run in bad:
                print(f"  {run['case']:<32} {run['entry']:<34} {run['detail'][:150]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for probe_results.json and the corpus")
    parser.add_argument("--quick", action="store_true", help="leave out the evaluate CLI runs and the 60 MB upload")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    parser.add_argument("--mem-gb", type=float, default=4.0, help="RLIMIT_AS of each worker, GiB (default 4)")
    parser.add_argument("--cases", default="", help="regex on case ids (default: all)")
    parser.add_argument("--entries", default="", help="regex on entry point names (default: all)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    from hostile_corpus import build_corpus
    from probe_entry_points import ENTRY_POINTS

    root = args.out / "corpus"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    cases = build_corpus(root, quick=args.quick)
    plan = [(case.id, entry) for case in cases for entry, (kinds, _) in ENTRY_POINTS.items()
            if case.kind in kinds and re.search(args.cases, case.id) and re.search(args.entries, entry)
            and not (args.quick and entry in SLOW_ENTRIES)]
    order = sorted(range(len(plan)), key=lambda i: (plan[i][1], i))  # by entry point: spread the slow ones
    shards = [[plan[i] for i in order[k :: args.jobs]] for k in range(args.jobs)]
    print(f"{len(cases)} cases, {len(plan)} runs in {args.jobs} workers", flush=True)
    results: list[dict] = []
    lock = threading.Lock()
    shard_results = [dict() for _ in shards]
    threads = [threading.Thread(target=drive, args=(root, shard, args, shard_results[k], lock))
               for k, shard in enumerate(shards) if shard]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_case = {case.id: case for case in cases}
    for k, shard in enumerate(shards):
        for i, (case_id, entry) in enumerate(shard):
            run = shard_results[k].get(i, {"category": "traceback", "detail": "no result"})
            results.append({"case": case_id, "entry": entry, "expect": by_case[case_id].expect,
                            "note": by_case[case_id].note, **{k2: v for k2, v in run.items() if k2 != "done"}})
    results.sort(key=lambda r: (r["case"], r["entry"]))
    summary = summarise(results)
    summary["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe_results.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    print_table(summary, results)
    print(f"\n{summary['seconds']} s; wrote {args.out / 'probe_results.json'}")
    return 1 if any(summary["counts"][c] for c in BAD) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(Path(sys.argv[2]), [tuple(p) for p in json.loads(Path(sys.argv[3]).read_text())],
                        float(sys.argv[4])))
    sys.exit(main())
