"""Near-duplicate search at scale: N random 512-d unit vectors with planted near-copies, exact vs FAISS IVF / HNSW.

For each size and index method (each in its own process, so peak memory is that method's alone): build time,
search time of ``near_duplicate_pairs`` (k neighbours per vector), recall of the planted pairs, pairs found that
were not planted, and peak resident memory. Random unit vectors in 512-d have cosines ~ N(0, 1/512) (max ~0.3 at
1M), a planted copy is its source plus noise at cosine ~0.95, so the threshold (0.8) separates them exactly and
recall measures the index alone. Exact search past ``--exact-sample`` vectors searches a random sample of queries
and extrapolates the time (all-pairs exact at 1M is ~5e14 multiply-adds): marked "sampled".

    python scripts/bench_redundancy.py                    # 100K and 1M
    python scripts/bench_redundancy.py --sizes 100000 --methods exact,ivf,hnsw
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def planted_vectors(n: int, dim: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 unit vectors, the last ``fraction`` of them near-copies of random earlier ones;
    returns (vectors, planted pairs (M, 2) with i < j)."""
    rng = np.random.default_rng(seed)
    n_copies = int(n * fraction)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sources = rng.choice(n - n_copies, n_copies, replace=False)
    noise = rng.standard_normal((n_copies, dim), dtype=np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    copies = x[sources] + 0.33 * noise  # cosine to the source ~ 1 / sqrt(1 + 0.33^2) = 0.95
    x[n - n_copies:] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return x, np.stack([sources, np.arange(n - n_copies, n)], 1).astype(np.int64)


def worker(n: int, method: str, dim: int, fraction: float, threshold: float, k: int, exact_sample: int) -> dict:
    from hf_facerec.evaluation.neighbors import NeighborIndex, near_duplicate_pairs

    x, planted = planted_vectors(n, dim, fraction)
    planted_set = set(map(tuple, planted.tolist()))
    t0 = time.perf_counter()
    index = NeighborIndex(x, method=method)
    build = time.perf_counter() - t0
    sampled = method == "exact" and n > exact_sample
    if sampled:  # a query sample; the sampled queries' planted pairs are the ones to find
        rng = np.random.default_rng(1)
        queries = np.sort(rng.choice(n, exact_sample, replace=False))
        t0 = time.perf_counter()
        scores, neighbours = index.search(x[queries], k + 1)
        search = (time.perf_counter() - t0) * n / exact_sample
        rows = np.broadcast_to(queries[:, None], neighbours.shape)
        keep = (neighbours != rows) & (scores >= threshold)
        found = {(min(a, b), max(a, b)) for a, b in zip(rows[keep].tolist(), neighbours[keep].tolist())}
        in_sample = np.isin(planted, queries).any(axis=1)
        target = set(map(tuple, planted[in_sample].tolist()))
    else:
        t0 = time.perf_counter()
        pairs, _ = near_duplicate_pairs(x, threshold, k=k, index=index)
        search = time.perf_counter() - t0
        found, target = set(map(tuple, pairs.tolist())), planted_set
    hits = len(found & target)
    return {"n": n, "method": index.method, "sampled": sampled, "build_s": round(build, 2),
            "search_s": round(search, 2), "total_s": round(build + search, 2),
            "planted_pairs": len(target), "recall": hits / max(len(target), 1),
            "unplanted_pairs": len(found - planted_set),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--methods", default="exact,ivf,hnsw")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--fraction", type=float, default=0.01, help="fraction of vectors that are planted copies")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--exact-sample", type=int, default=100_000, help="exact search past this samples queries")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--_worker", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        n, method = int(args._worker[0]), args._worker[1]
        print(json.dumps(worker(n, method, args.dim, args.fraction, args.threshold, args.k, args.exact_sample)))
        return 0
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; dim {args.dim}, "
          f"{args.fraction:.0%} planted copies at cosine ~0.95, threshold {args.threshold}, k {args.k}")
    print(f"{'N':>9} {'method':>6} {'build s':>8} {'search s':>9} {'total s':>8} {'recall':>7} {'extra':>6} "
          f"{'peak MiB':>9}")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--_worker", str(n), method, "--dim", str(args.dim), "--fraction",
                   str(args.fraction), "--threshold", str(args.threshold), "--k", str(args.k), "--exact-sample",
                   str(args.exact_sample)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(f"{n:>9} {method:>6} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            mark = "*" if row["sampled"] else ""
            print(f"{n:>9} {method + mark:>6} {row['build_s']:>8.2f} {row['search_s']:>9.2f} {row['total_s']:>8.2f} "
                  f"{row['recall']:>7.4f} {row['unplanted_pairs']:>6} {row['peak_rss_mib']:>9}", flush=True)
    if any(r["sampled"] for r in rows):
        print(f"* exact: {args.exact_sample:,} sampled queries, search time extrapolated to all N; recall over the "
              "planted pairs with a sampled end")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
