"""``hf-facerec evaluate``: run a face model on benchmarks and write results, tables and plots.

Example::

    hf-facerec evaluate --model ./my-model --benchmarks lfw,cfp_fp,agedb_30 --data-dir ~/faces \\
        --align yunet --detector-model yunet.onnx --flip concat --group-file gender_per_identity.csv \\
        --output ./eval

Writes ``OUTPUT/results.json``, ``OUTPUT/results.md`` (also printed) and the PNG plots; photos are
decoded + aligned in worker processes (``--num-workers``) while the main process embeds, with
separate "align" and "embed" progress bars; embeddings are cached under ``OUTPUT/embedding_cache``
(or ``--cache-dir``) so a rerun is instant.
Benchmarks not found under ``--data-dir`` are listed as skipped with the paths looked at.
"""

from __future__ import annotations

import argparse
import logging

from hf_facerec.benchmarks.registry import BENCHMARKS

from . import model_source


def _far(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a FAR must be in (0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` sub-command's options."""
    parser.add_argument("--model", required=True, type=model_source, help="saved FaceRec model folder or Hub id")
    parser.add_argument(
        "--benchmarks", default="",
        help=f"comma-separated benchmark names: {','.join(BENCHMARKS)} (absent ones are reported as skipped)",
    )
    parser.add_argument("--data-dir", help="folder holding the benchmarks (see hf_facerec.benchmarks.registry)")
    parser.add_argument("--pairs-csv", help="extra pair set: CSV with path1,path2,label[,group,fold,identity1,identity2]")
    parser.add_argument("--align", choices=("none", "yunet", "dlib", "dlib,yunet"), default="none",
                        help="detect + align raw photos (not .bin crops; IJB uses its own landmarks); "
                             "'dlib,yunet' tries dlib's 68-point landmarks first, YuNet where dlib finds no face")
    parser.add_argument(
        "--detector-model", help="YuNet .onnx (default $HF_FACEREC_YUNET), or the dlib 68-point predictor with --align dlib"
    )
    parser.add_argument("--align-policy", choices=("largest", "central", "highest_score"), default="central",
                        help="which face to keep when a photo holds several (benchmark photos centre their subject)")
    parser.add_argument("--flip", choices=("sum", "concat", "none"), default="sum", help="flip test-time augmentation")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--num-workers", type=_non_negative_int, default=None,
                        help="processes that decode + detect + align while this one embeds "
                             "(default: one per spare core; 0: everything in this process)")
    parser.add_argument("--group-file", help="CSV identity,<group>,...: per-group bias report of pairs with identity names")
    parser.add_argument("--group-column", help="group column of --group-file (default: the first after identity)")
    parser.add_argument("--far", type=_far, default=1e-3, help="FAR of the bias reports' global threshold")
    parser.add_argument("--output", required=True, help="folder for results.json, results.md and plots")
    parser.add_argument("--cache-dir", help="embedding cache folder (default OUTPUT/embedding_cache)")
    parser.add_argument("--no-cache", action="store_true", help="embed everything again, write no cache")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--device", help="torch device, e.g. cuda:0 (default: where the model loads, CPU)")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; print the markdown summary. Returns 0, or 1 when nothing was evaluated."""
    from hf_facerec.benchmarks.outputs import markdown_report
    from hf_facerec.benchmarks.runner import evaluate_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = evaluate_model(
        args.model, args.benchmarks, args.data_dir, args.output, pairs_csv=args.pairs_csv, align=args.align,
        detector_model=args.detector_model, align_policy=args.align_policy, flip=args.flip,
        batch_size=args.batch_size, group_file=args.group_file, group_column=args.group_column, far=args.far,
        cache_dir=args.cache_dir, use_cache=not args.no_cache, device=args.device, plots=not args.no_plots,
        num_workers=args.num_workers,
    )
    print(markdown_report(results))
    print(f"wrote {len(results['files'])} files to {args.output}")
    return 0 if results["benchmarks"] else 1
