"""`hf-facerec push`: upload a saved model with its card, results, plots (and optionally calibrated thresholds).

    hf-facerec push --model outputs/quickstart/model --repo-id org/name --results outputs/quickstart/results.json
    hf-facerec push --model DIR --repo-id org/name --results eval/results.json \\
        --calibrate-pairs lfw/pairs.txt --calibrate-images lfw/ --align yunet --detector-model yunet.onnx

After training with `FaceRecTrainer`, either call ``trainer.push_to_hub()`` (same card) or save the final model
(``trainer.save_final_model(dir)``) and run this command. HF_TOKEN and HF_ENDPOINT are honoured.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import model_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=model_source, help="saved model folder (config.json + weights)")
    parser.add_argument("--repo-id", required=True, help="Hub repository, e.g. org/name")
    parser.add_argument("--results", default=None, help="results.json of `hf-facerec evaluate` or `quickstart`")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--token", default=None, help="Hub token (default: $HF_TOKEN or the cached login)")
    parser.add_argument("--onnx", action="store_true", help="also upload onnx/model.onnx")
    parser.add_argument("--license", default=None, help="licence id for the card (default apache-2.0)")
    parser.add_argument("--license-name", default=None, help="short licence id, required with --license other")
    parser.add_argument("--license-link", default=None, help="licence URL or file in the repo, with --license other")
    parser.add_argument("--base-model", default=None, help="the pretrained backbone's Hub id, for the card")
    parser.add_argument("--datasets", nargs="*", default=None, help="training dataset ids, for the card")
    parser.add_argument("--data", default=None, help="one-line description of the training data, for the card")
    parser.add_argument("--compute", default=None, help="hardware and training time, for the card")
    parser.add_argument("--commit-message", default="Upload face recognition model (hf_facerec)")
    parser.add_argument("--dry-run", default=None, metavar="DIR", help="write the upload folder to DIR, push nothing")
    calibration = parser.add_argument_group("threshold calibration (stored in config.json and shown in the card)")
    calibration.add_argument("--calibrate-pairs", default=None, help="pair list: LFW pairs.txt, .bin or .csv")
    calibration.add_argument("--calibrate-images", default=None,
                             help="image root of an LFW pairs.txt (default: images/ next to it, else its folder)")
    calibration.add_argument("--pair-set-name", default=None, help="name shown in the card (default: the file name)")
    calibration.add_argument("--align", default="none", choices=("none", "yunet", "dlib"),
                             help="detect + align the pair images (raw photos); 'none' for aligned crops")
    calibration.add_argument("--detector-model", default=None, help="YuNet ONNX file or dlib predictor")
    calibration.add_argument("--flip", default="sum", choices=("none", "sum", "concat"), help="flip TTA of the scores")
    calibration.add_argument("--fars", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4], help="FAR targets")


def _calibrate(args: argparse.Namespace):
    import numpy as np

    from hf_facerec.data.pairs import load_pair_file, pair_columns
    from hf_facerec.data.preprocess import build_preprocess
    from hf_facerec.embedding import FaceEmbedder
    from hf_facerec.hub.calibration import calibrate_pairs

    pairs = load_pair_file(args.calibrate_pairs, images=args.calibrate_images)
    embedder = FaceEmbedder.from_pretrained(args.model, flip=args.flip)
    embedder.preprocess, _ = build_preprocess(embedder.model.config.face_size, args.align, args.detector_model)
    images1, images2 = pair_columns(pairs)
    name = args.pair_set_name or f"{Path(args.calibrate_pairs).name} ({len(pairs)} pairs, align {args.align})"
    calibration = calibrate_pairs(embedder, images1, images2, np.asarray(pairs["is_same"]), name, args.fars)
    print(f"[push] thresholds on {name}: {calibration.thresholds}")
    return calibration


def run(args: argparse.Namespace) -> int:
    from hf_facerec.hub.push import prepare_upload_folder, push_to_hub

    summary = {key: value for key, value in (("license", args.license), ("license_name", args.license_name),
               ("license_link", args.license_link), ("base_model", args.base_model),
               ("datasets", args.datasets), ("data", args.data), ("compute", args.compute)) if value}
    calibration = _calibrate(args) if args.calibrate_pairs else None
    if args.dry_run:
        folder = prepare_upload_folder(args.model, args.dry_run, args.results, summary=summary,
                                       calibration=calibration, repo_id=args.repo_id, onnx=args.onnx)
        print(f"[push] dry run: upload folder in {folder}: {sorted(os.listdir(folder))}")
        return 0
    info = push_to_hub(args.model, args.repo_id, args.results, private=args.private or None, summary=summary,
                       calibration=calibration, onnx=args.onnx, token=args.token,
                       commit_message=args.commit_message)
    print(f"[push] {info.commit_url}")
    return 0
