"""`hf-facerec train`: train a face recognizer from a YAML/JSON config and/or flags (:mod:`hf_facerec.training.build`).

    hf-facerec train --config configs/train/tiny_synthetic.yaml --max_steps 50
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/train/dinov2_small_lora.yaml

``--help`` lists the package's own flags without importing transformers (a fraction of a second); every
`transformers.TrainingArguments` field is a flag too, and ``--help-all`` lists them all (it loads transformers).
The arguments are parsed by `HfArgumentParser` (:func:`hf_facerec.training.build.parse_train_arguments`).
"""

from __future__ import annotations

import argparse
import dataclasses

from . import _CommandParser

_TRAINER_FLAGS = (
    "Every field of transformers.TrainingArguments is a flag too (--output_dir, --max_steps, --num_train_epochs, "
    "--learning_rate, --per_device_train_batch_size, --save_steps, --resume_from_checkpoint, ...): --help-all "
    "lists them all with their defaults."
)


def _describe(group, dtype) -> None:
    """Help-only flags of a plain dataclass (parsing is `HfArgumentParser`'s; this only renders `--help`)."""
    for data_field in dataclasses.fields(dtype):
        default = data_field.default if data_field.default is not dataclasses.MISSING else None
        kind = str(data_field.type).split("|")[0].strip().split("[")[0]  # annotations are strings here
        group.add_argument(
            f"--{data_field.name}", metavar=kind.upper(), choices=data_field.metadata.get("choices"),
            help=f"{data_field.metadata.get('help', '')} (default: {default})".replace("%", "%%"),
        )  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``--help`` shows: the config file and the package's own argument dataclasses."""
    from hf_facerec.training.build import DataArguments, ModelArguments
    from hf_facerec.training.options import FaceRecTrainingOptions

    parser.add_argument("--config", help="YAML or JSON file with any of the arguments below.")
    parser.add_argument("--help-all", action="store_true", help="also list every TrainingArguments flag and exit")
    for dtype in (ModelArguments, DataArguments, FaceRecTrainingOptions):
        _describe(parser.add_argument_group(dtype.__name__), dtype)
    parser.epilog = _TRAINER_FLAGS


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]):
    """`--help`: the quick help above. Otherwise the full `HfArgumentParser` parses argv (errors: one line)."""
    if {"-h", "--help"} & set(argv) and "--help-all" not in argv:
        parser.parse_args(["--help"])
    from hf_facerec.training.build import parse_train_arguments, train_argument_parser

    full = train_argument_parser(parser_class=_hf_command_parser(), prog=parser.prog, description=parser.description)
    return parse_train_arguments(argv, full)


def _hf_command_parser() -> type:
    from transformers import HfArgumentParser

    class _HfCommandParser(HfArgumentParser):
        error = _CommandParser.error  # the one-line usage error of every command

    return _HfCommandParser


def run(arguments) -> int:
    from hf_facerec.training.build import train

    train(*arguments)
    return 0
