"""Benchmark the numpy metric core against the classic grid protocol and a bare np.sort.

Prints, in one run:
  (a) LFW-size 10-fold accuracy + TAR@FAR on 6,000 synthetic pairs: our exact-threshold code vs
      a straightforward reference of the classic protocol (400 thresholds, np.arange(-1, 1, 0.005),
      a full pass over the training folds per threshold, as in the facenet/insightface scripts).
  (b) IJB-C-size TAR@FAR (19,557 genuine + 15,638,932 impostor float32 scores) vs one np.sort.
  (c) 1:N identification, 100K gallery x 10K probes (D=512 float32): rank-1/5 + TPIR@FPIR,
      time and peak traced memory, vs the bare chunked matmul.

Usage: python scripts/bench_metrics.py [--skip-identification] [--gallery 100000 --probes 10000] [--json out.json]
Timings are medians of repeats in one process (the machine is shared: read ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hf_facerec.evaluation import identification_report, kfold_accuracy, tar_at_far  # noqa: E402
from hf_facerec.evaluation.identification import _block_buffer, _chunks, _prepared, _probe_block  # noqa: E402

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


# --------------------------------------------------------------------------------------------
# Reference: the classic grid-search protocol, written the way the popular LFW scripts do it.
_GRID = np.arange(-1.0, 1.0, 0.005)  # 400 thresholds


def _grid_accuracy(threshold, scores, actual):
    predict = scores >= threshold
    tp = np.sum(np.logical_and(predict, actual))
    tn = np.sum(np.logical_and(np.logical_not(predict), np.logical_not(actual)))
    return (tp + tn) / scores.size


def _reference_kfold(scores, actual, n_folds=10):
    folds = np.array_split(np.arange(scores.size), n_folds)
    accuracies = []
    for test in folds:
        train = np.setdiff1d(np.arange(scores.size), test)
        train_acc = np.array([_grid_accuracy(t, scores[train], actual[train]) for t in _GRID])
        best = _GRID[np.argmax(train_acc)]
        accuracies.append(_grid_accuracy(best, scores[test], actual[test]))
    return float(np.mean(accuracies))


def _reference_tar_at_far(scores, actual, fars):
    out = {}
    for far in fars:
        rates = np.array([np.sum(np.logical_and(scores >= t, ~actual)) / np.sum(~actual) for t in _GRID])
        ok = np.flatnonzero(rates <= far)
        threshold = _GRID[ok[0]] if ok.size else np.inf
        out[far] = float(np.sum(np.logical_and(scores >= threshold, actual)) / np.sum(actual))
    return out


# --------------------------------------------------------------------------------------------
def bench_lfw(rng) -> dict:
    labels = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)  # pairs.txt order
    scores = np.where(labels, rng.normal(0.6, 0.15, labels.size), rng.normal(0.1, 0.1, labels.size))
    fars = (1e-3, 1e-2, 1e-1)

    def ours():
        return kfold_accuracy(scores, labels)["mean"], tar_at_far(scores, labels, fars)

    def reference():
        return _reference_kfold(scores, labels), _reference_tar_at_far(scores, labels, fars)

    t_ours, (acc, tars) = _median_time(ours, 21)
    t_ref, (acc_ref, tars_ref) = _median_time(reference, 3)
    print("(a) 10-fold accuracy + TAR@FAR, 6,000 pairs (3,000 genuine / 3,000 impostor)")
    print(f"    {'':24s}{'ours':>12s}{'grid ref':>12s}")
    print(f"    {'10-fold accuracy':24s}{acc:12.4f}{acc_ref:12.4f}")
    for far in fars:
        print(f"    {'TAR@FAR=' + format(far, '.0e'):24s}{tars[far]:12.4f}{tars_ref[far]:12.4f}")
    print(f"    {'time (ms)':24s}{t_ours * 1e3:12.2f}{t_ref * 1e3:12.1f}   speed-up {t_ref / t_ours:.0f}x (target >= 50x)")
    return {"kfold_tar_6000_pairs_ms": t_ours * 1e3, "classic_grid_6000_pairs_ms": t_ref * 1e3,
            "kfold_speedup": t_ref / t_ours, "accuracy": acc, "accuracy_grid": acc_ref}


def bench_ijbc(rng) -> dict:
    n_genuine, n_impostor = 19_557, 15_638_932
    scores = np.concatenate(
        [rng.normal(0.6, 0.15, n_genuine).astype(np.float32), rng.normal(0.1, 0.1, n_impostor).astype(np.float32)]
    )
    labels = np.zeros(scores.size, dtype=np.int64)  # int labels as parsed from a protocol file
    labels[:n_genuine] = 1
    order = rng.permutation(scores.size)
    scores, labels = scores[order], labels[order]
    t_sort, _ = _median_time(lambda: np.sort(scores), 5)
    t_ours, tars = _median_time(lambda: tar_at_far(scores, labels, FARS), 5)
    print(f"(b) TAR@FAR on {scores.size:,} float32 scores (IJB-C 1:1 size), 6 targets")
    print(f"    np.sort(scores): {t_sort * 1e3:8.1f} ms")
    print(f"    tar_at_far:      {t_ours * 1e3:8.1f} ms   ratio {t_ours / t_sort:.2f}x (target <= 2x)")
    print("    " + "  ".join(f"{far:.0e}: {tar:.4f}" for far, tar in tars.items()))
    return {"tar_at_far_ijbc_size_ms": t_ours * 1e3, "np_sort_ijbc_size_ms": t_sort * 1e3,
            "tar_at_far_vs_sort": t_ours / t_sort, "n_scores": int(scores.size)}


def bench_identification(rng, n_gallery: int, n_probes: int, dim: int = 512) -> dict:
    gallery = rng.standard_normal((n_gallery, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    gallery_labels = np.arange(n_gallery)
    n_mated = n_probes // 2
    mated_ids = rng.choice(n_gallery, n_mated, replace=False)
    # Mated probes: the gallery vector plus noise of ~4x its norm (cosine ~0.24 with the mate,
    # against ~0.19 for the best of 100K random entries): hard enough for rank-1 < 1.
    noise = rng.standard_normal((n_mated, dim), dtype=np.float32) * np.float32(4.0 / dim**0.5)
    probe = np.concatenate([gallery[mated_ids] + noise, rng.standard_normal((n_probes - n_mated, dim), dtype=np.float32)])
    probe_labels = np.r_[mated_ids, n_gallery + np.arange(n_probes - n_mated)]
    data_mb = (gallery.nbytes + probe.nbytes) / 2**20

    def bare_matmul():
        p, norms, g = _prepared(probe, gallery)
        chunks = _chunks(p.shape[0], g.shape[0], None)
        buffer = _block_buffer(g.shape[0], chunks, g.dtype)
        for sl in chunks:
            _probe_block(p, norms, g, sl, buffer)

    t_matmul, _ = _median_time(bare_matmul, 1)
    tracemalloc.start()
    start = time.perf_counter()
    report = identification_report(probe, probe_labels, gallery, gallery_labels, ks=(1, 5), fpirs=(1e-3, 1e-2, 1e-1))
    t_ours = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert probe.dtype == gallery.dtype == np.float32
    print(f"(c) identification: {n_gallery:,} gallery x {n_probes:,} probes, D={dim} float32 ({n_mated:,} mated)")
    print(f"    identification_report: {t_ours:7.1f} s   bare chunked matmul: {t_matmul:7.1f} s   overhead {t_ours / t_matmul:.2f}x")
    print(f"    peak traced memory: {peak / 2**20:7.0f} MB  (inputs {data_mb:.0f} MB; full score matrix would be "
          f"{n_gallery * n_probes * 4 / 2**20:,.0f} MB)")
    print(f"    rank-1 {report['rank_1']:.4f}  rank-5 {report['rank_5']:.4f}  TPIR@FPIR " + "  ".join(
        f"{k}: {v if v is None else round(v, 4)}" for k, v in report["tpir_at_fpir"].items()))
    return {"gallery": n_gallery, "probes": n_probes, "dim": dim, "identification_s": t_ours,
            "bare_matmul_s": t_matmul, "peak_traced_mb": peak / 2**20, "rank_1": report["rank_1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--skip-identification", action="store_true")
    parser.add_argument("--json", help="also write the figures here (docs: scripts/docs_figures.py)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    figures = {"verification": bench_lfw(rng), "tar_at_far": bench_ijbc(rng)}
    if not args.skip_identification:
        figures["identification"] = bench_identification(rng, args.gallery, args.probes)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
