"""`hf-facerec export onnx`: the embedding model as ONNX (dynamic batch), checked with onnxruntime on faces.

    hf-facerec export onnx --model outputs/quickstart/model --output outputs/quickstart/model/onnx/model.onnx
    hf-facerec export onnx --model MODEL --check-images my_aligned_crops/   # check on your own aligned crops

The check (`hf_facerec.hub.onnx.check_onnx`) prints the measured max |torch - onnxruntime| and min cosine, on
synthetic faces by default; above `--atol` (default 1e-3, see `hf_facerec.hub.onnx`) it is an error, exit 2.
"""

from __future__ import annotations

import argparse

from . import model_source

FORMATS = ("onnx",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="export format")
    parser.add_argument("--model", required=True, type=model_source, help="saved model folder or Hub id")
    parser.add_argument("--output", default=None, help="output file (default: MODEL/onnx/model.onnx)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--atol", type=float, default=None,  # None: hub.onnx.DEFAULT_ATOL (its module loads torch)
                        help="max |torch - onnxruntime| of the unit embeddings allowed (default 1e-3, see hub/onnx.py)")
    parser.add_argument("--check-images", default=None, metavar="DIR",
                        help="folder of aligned face crops to check on (default: synthetic faces)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hf_facerec.hub.onnx import (DEFAULT_ATOL, ONNX_FILENAME, OnnxExportError, check_onnx, export_onnx,
                                     facerec_model, folder_image_processor)

    model = facerec_model(args.model)  # refuses a folder that is not a FaceRec model, in one line
    output = args.output or str(Path(args.model) / ONNX_FILENAME)
    path = export_onnx(model, output, opset=args.opset, check=False)
    if args.no_check:
        print(f"[export] wrote {path} (not checked)")
        return 0
    result = check_onnx(model, path, args.check_images, folder_image_processor(args.model, model),
                        DEFAULT_ATOL if args.atol is None else args.atol)
    if not result.passed:
        raise OnnxExportError(f"{path}: onnxruntime differs from torch: {result}")
    print(f"[export] wrote {path}; {result}")
    return 0
