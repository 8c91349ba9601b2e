"""`hf-facerec export onnx`: the embedding model as ONNX (dynamic batch), checked with onnxruntime.

    hf-facerec export onnx --model outputs/quickstart/model --output outputs/quickstart/model/onnx/model.onnx
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
    parser.add_argument("--atol", type=float, default=1e-4, help="max |torch - onnxruntime| allowed")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hf_facerec.hub.onnx import ONNX_FILENAME, export_onnx

    output = args.output or str(Path(args.model) / ONNX_FILENAME)
    path = export_onnx(args.model, output, opset=args.opset, check=not args.no_check, atol=args.atol)
    print(f"[export] wrote {path}" + ("" if args.no_check else f" (onnxruntime matches torch within {args.atol:g})"))
    return 0
