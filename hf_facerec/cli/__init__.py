"""The ``hf-facerec`` command line: one entry point, one module per command, one error policy.

Each command module of this package exposes ``add_arguments(parser)`` and ``run(args) -> int`` (and may define
``parse_arguments(parser, argv)`` when another parser reads its flags, as ``train``'s `HfArgumentParser`); the
modules are imported only when their command is chosen, so ``hf-facerec --help`` stays fast and an
optional extra (e.g. ``[align]``) is only needed for the command that uses it. The work itself lives
in the library (``hf_facerec.data``, ``.training``, ``.benchmarks``, ``.hub``); a command parses,
calls it and prints.

Error policy, the same for every command: bad input (a missing file, an unreadable image or folder, an
unknown benchmark, detector or config value, a missing optional package) is one line on stderr,
``hf-facerec COMMAND: error: ...``, and exit status 2, never a traceback; argparse's own usage errors
exit 2 as well. Set ``HF_FACEREC_TRACEBACK=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# name -> (module, one-line help). Keep sorted by name.
_COMMANDS: dict[str, tuple[str, str]] = {
    "align": ("hf_facerec.cli.align", "Detect and align every face image of a folder"),
    "convert": ("hf_facerec.cli.convert", "Convert RecordIO / image folders to Parquet shards"),
    "data-scale": ("hf_facerec.cli.data_scale", "Run the data-scale grid: identity counts x finetune modes"),
    "evaluate": ("hf_facerec.cli.evaluate", "Evaluate a model on face benchmarks (verification, identification, bias)"),
    "export": ("hf_facerec.cli.export", "Export the embedding model (onnx) with a dynamic batch, checked with onnxruntime"),
    "fewshot": ("hf_facerec.cli.fewshot", "Few-shot benchmark of pre-trainings on face tasks (label fractions x modes)"),
    "pretrain": ("hf_facerec.cli.pretrain", "Self-supervised pre-training (SwAV, DINO, SimSiam) of a backbone on unlabelled faces"),
    "push": ("hf_facerec.cli.push", "Push a model to the Hub with its card, results, plots and thresholds"),
    "quickstart": ("hf_facerec.cli.quickstart", "Train and evaluate a small model offline (synthetic or --data/--pairs)"),
    "redundancy": ("hf_facerec.cli.redundancy", "Dataset size, identity and near-duplicate (redundancy) statistics"),
    "train": ("hf_facerec.cli.train", "Train a face recognizer (full, LoRA, linear probe, scratch)"),
}

#: What counts as the user's input being wrong (as opposed to a bug): reported in one line, exit 2.
#: InvalidImageError and NoFaceDetectedError are ValueErrors; OSError covers missing and unreadable files.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, ImportError)


class _CommandParser(argparse.ArgumentParser):
    """argparse, but a usage error is the policy's one line (the full usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def model_source(value: str) -> str:
    """argparse type of ``--model``: a saved model folder (with config.json) or a valid Hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise argparse.ArgumentTypeError(f"{value} is not a saved model folder (no config.json)")
        return str(path)
    if not path.exists():  # a file is neither a model folder nor a Hub id
        try:
            validate_repo_id(value)
            return value
        except HFValidationError:
            pass
    raise argparse.ArgumentTypeError(f"model folder not found: {value} (and it is not a Hub id)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-facerec", description="Face recognition on Hugging Face backbones.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in sorted(_COMMANDS.items()):
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        # Arguments are added lazily only for the chosen command (see main()).
    return parser


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # KeyError's str() adds quotes around the message
    return str(error) or type(error).__name__


def _close_progress_bars() -> None:
    """End the bars an error interrupted, so the error starts its own line."""
    if "tqdm" in sys.modules:  # only if a bar could be open
        from tqdm import tqdm

        for bar in list(tqdm._instances):
            bar.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in _COMMANDS:
        parser.print_help() if not argv else parser.parse_args(argv)
        return 0 if not argv else 2
    name = argv[0]
    module = importlib.import_module(_COMMANDS[name][0])
    command_parser = _CommandParser(prog=f"hf-facerec {name}", description=_COMMANDS[name][1])
    module.add_arguments(command_parser)
    try:
        if hasattr(module, "parse_arguments"):
            args = module.parse_arguments(command_parser, argv[1:])
        else:
            args = command_parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    except USER_ERRORS as error:
        if os.environ.get("HF_FACEREC_TRACEBACK"):
            raise
        _close_progress_bars()
        print(f"hf-facerec {name}: error: {_message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
