"""Identification latency and peak memory: U generated verifiers (batched, vmap) vs the embedding matmul, on CPU.

    python scripts/bench_hypernet.py                       # 1K, 10K, 100K users, one probe
    python scripts/bench_hypernet.py --users 1000 --probes 8

Each (method, U) runs in its own process, so its peak RSS is its own: ``peak_mib`` is how much the search raised
the process's peak resident memory above what the gallery and probes already held (``resource.ru_maxrss``).
Past ``--hold`` users the verifier weights are not all held (see --hold): ``gallery_mib`` is then the size the
stored gallery would have. Verifier weights are f's default layout with fan-in-scaled random values (latency does not depend on them); the
embedding gallery is random unit 128-d vectors searched by the core's ``top_k`` (MobileFaceNet's width).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(method: str, users: int, probes: int, repeats: int, threads: int, hold: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if method == "verifiers":
        from hf_facerec.hypernet.target import TargetConfig, count_flops, count_parameters
        from hf_facerec.hypernet.verifiers import verifier_logits

        target = TargetConfig()
        held = users if users <= hold else 1024  # past `hold`, one 1024-user block stands in for every block
        weights = torch.randn(held, count_parameters(target)).mul_(0.1)  # in place: no second copy
        x = torch.rand(probes, 1, target.image_size, target.image_size) * 2 - 1

        def run():
            best = torch.full((probes,), -torch.inf)
            for start in range(0, users, held):
                n = min(held, users - start)
                best = torch.maximum(best, verifier_logits(weights[:n], target, x).max(dim=1).values)
            return best

        gallery_bytes, flops = users * count_parameters(target) * 4, count_flops(target) * users * probes
    else:
        from hf_facerec.evaluation.identification import top_k

        rng = np.random.default_rng(0)
        gallery = rng.normal(size=(users, 128)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        x = rng.normal(size=(probes, 128)).astype(np.float32)
        run = lambda: top_k(x, gallery, k=1)  # noqa: E731
        gallery_bytes, flops = gallery.nbytes, 2 * 128 * users * probes
    before = _rss_mib()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"method": method, "users": users, "probes": probes, "seconds_per_search": min(times),
            "ms_per_probe": 1000 * min(times) / probes, "peak_mib": round(_rss_mib() - before, 1),
            "gallery_mib": round(gallery_bytes / 2**20, 1), "gflops_per_search": round(flops / 1e9, 3),
            "threads": threads, "streamed": method == "verifiers" and users > hold}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="1000,10000,100000")
    parser.add_argument("--probes", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many (1 for >= 100K verifiers)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hold", type=int, default=20_000,
                        help="verifier galleries above this many users are not held (100K x 21k float32 = 8 GiB): "
                             "one 1,024-user block of weights is reused for every block (same compute, memory of one block)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        print(json.dumps(_child(args._child[0], int(args._child[1]), args.probes, args.repeats, args.threads,
                                args.hold)))
        return
    rows = []
    for users in [int(u) for u in args.users.split(",")]:
        for method in ("embedding_matmul", "verifiers"):
            repeats = 1 if method == "verifiers" and users >= 100_000 else args.repeats
            out = subprocess.run([sys.executable, __file__, "--_child", method, str(users), "--probes", str(args.probes),
                                  "--repeats", str(repeats), "--threads", str(args.threads),
                                  "--hold", str(args.hold)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| users | method | ms / probe | peak MiB (search) | gallery MiB | GFLOPs / probe |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['users']:,} | {r['method']} | {r['ms_per_probe']:.2f} | {r['peak_mib']} | {r['gallery_mib']} | "
              f"{r['gflops_per_search'] / r['probes']:.3g} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
