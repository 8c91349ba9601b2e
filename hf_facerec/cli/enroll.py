"""`hf-facerec enroll`: turn photos of one person into a tiny verifier with a trained hypernetwork, in a gallery.

    hf-facerec enroll --hypernet runs/hypernet --gallery my_gallery --user alice alice1.jpg alice2.jpg
    hf-facerec enroll --gallery my_gallery --remove alice

Photos are decoded, detected and aligned like every input of the package (one face per photo); the verifier (f's
weights alone, ``hf_facerec.hypernet``) is written to the gallery's folder; the other users' files are untouched.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", help="photos (or aligned crops) of the user")
    parser.add_argument("--gallery", required=True, help="gallery folder (created on the first enrolment)")
    parser.add_argument("--user", help="the user id to enrol (replaces an enrolled user of that id)")
    parser.add_argument("--hypernet", help="trained hypernetwork folder (save_pretrained of FaceRecHyperNetwork)")
    parser.add_argument("--remove", metavar="USER", help="remove this user from the gallery instead")
    parser.add_argument("--detector", default="auto", help="auto, dlib, yunet or none (photos resized whole)")
    parser.add_argument("--detector-model", help="YuNet .onnx / dlib .dat file of the detector")
    parser.add_argument("--min-score", type=float, default=0.5, help="lowest detection score")
    parser.add_argument("--onnx", help="also export the verifier to this .onnx file (checked with onnxruntime)")


def run(args: argparse.Namespace) -> int:
    from hf_facerec.hypernet.gallery import Gallery

    if args.remove:
        if args.images or args.user:
            raise ValueError("--remove takes no images and no --user")
        gallery = Gallery(args.gallery)
        gallery.remove(args.remove)
        print(json.dumps({"removed": args.remove, "users": len(gallery)}))
        return 0
    if not args.user or not args.images or not args.hypernet:
        raise ValueError("enrolment needs --user, --hypernet and at least one image")
    from hf_facerec.hypernet.target import count_flops, count_parameters
    from hf_facerec.hypernet.verifiers import HyperNetEnroller

    enroller = HyperNetEnroller.from_pretrained(args.hypernet, detector=None if args.detector == "none" else args.detector,
                                                detector_model=args.detector_model, min_score=args.min_score)
    verifier = enroller.enroll(args.user, args.images)
    gallery = Gallery(args.gallery, create=True)
    path = gallery.add(verifier)
    result = {"user": args.user, "file": str(path), "users": len(gallery), "images": len(args.images),
              "params": count_parameters(verifier.target), "flops": count_flops(verifier.target)}
    if args.onnx:
        result["onnx"] = args.onnx
        result["onnx_max_abs_diff"] = verifier.export_onnx(args.onnx)
    print(json.dumps(result))
    return 0
