"""`hf-facerec identify`: who is in each photo, by running every enrolled verifier of a gallery on it.

    hf-facerec identify --gallery my_gallery probe1.jpg probe2.jpg --top-k 3

One JSON object per image: the best user (None when rejected: its probability is below the gallery's calibrated
threshold, or --threshold), its probability and the top-k candidates.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="photos (or aligned crops) to identify")
    parser.add_argument("--gallery", required=True, help="gallery folder written by `hf-facerec enroll`")
    parser.add_argument("--threshold", type=float, help="reject below this probability (default: the gallery's)")
    parser.add_argument("--closed-set", action="store_true", help="never reject (ignore the gallery's threshold)")
    parser.add_argument("--top-k", type=int, default=1, help="candidates listed per image")
    parser.add_argument("--detector", default="auto", help="auto, dlib, yunet or none (photos resized whole)")
    parser.add_argument("--detector-model", help="YuNet .onnx / dlib .dat file of the detector")
    parser.add_argument("--min-score", type=float, default=0.5, help="lowest detection score")


def run(args: argparse.Namespace) -> int:
    from hf_facerec.data.preprocess import FaceInput
    from hf_facerec.hypernet.gallery import Gallery

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    gallery = Gallery(args.gallery)
    if gallery.face_size is None:
        raise ValueError(f"the gallery {args.gallery} has no users")
    faces = FaceInput(gallery.face_size, None if args.detector == "none" else args.detector, args.detector_model,
                      min_score=args.min_score)
    threshold = -1.0 if args.closed_set else args.threshold
    results = gallery.identify(args.images, faces=faces, threshold=threshold, top_k=args.top_k)
    for image, result in zip(args.images, results):
        print(json.dumps({"image": image, **result}))
    return 0
