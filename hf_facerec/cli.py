"""The ``hf-facerec`` command line: one entry point, one sub-command per job.

Each sub-command lives next to the code it drives and exposes ``add_arguments(parser)`` and
``run(args) -> int``; the modules are imported only when their command is chosen, so
``hf-facerec --help`` stays fast and an optional extra (e.g. ``[align]``) is only needed
for the command that uses it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Keep sorted by name.
_COMMANDS: dict[str, tuple[str, str]] = {
    "align": ("hf_facerec.data.align_folder", "Detect and align every face image of a folder"),
    "convert": ("hf_facerec.data.cli_convert", "Convert RecordIO / image folders to Parquet shards"),
    "data-scale": ("hf_facerec.training.data_scale", "Run the data-scale grid: identity counts x finetune modes"),
    "evaluate": ("hf_facerec.evaluation.cli_evaluate", "Evaluate a model on face benchmarks (verification, identification, bias)"),
    "export": ("hf_facerec.hub.cli_export", "Export the embedding model (onnx) with a dynamic batch, checked with onnxruntime"),
    "push": ("hf_facerec.hub.cli_push", "Push a model to the Hub with its card, results, plots and thresholds"),
    "quickstart": ("hf_facerec.quickstart", "Train and evaluate a small model offline (synthetic or --data/--pairs)"),
    "train": ("hf_facerec.training.train_cli", "Train a face recognizer (full, LoRA, linear probe, scratch)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-facerec", description="Face recognition on Hugging Face backbones.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in sorted(_COMMANDS.items()):
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        # Arguments are added lazily only for the chosen command (see main()).
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in _COMMANDS:
        parser.print_help() if not argv else parser.parse_args(argv)
        return 0 if not argv else 2
    name = argv[0]
    module = importlib.import_module(_COMMANDS[name][0])
    command_parser = argparse.ArgumentParser(prog=f"hf-facerec {name}", description=_COMMANDS[name][1])
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
