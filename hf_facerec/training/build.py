"""What `hf-facerec train` / `scripts/train.py` build: arguments, model, dataset, resume point, the run.

    hf-facerec train --config configs/train/tiny_synthetic.yaml --max_steps 50
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/train/dinov2_small_lora.yaml

Arguments are three dataclasses parsed with `HfArgumentParser`: [`ModelArguments`] (the backbone and the heads),
[`DataArguments`] (the identity dataset) and [`FaceRecTrainingArguments`]. A config file gives any of their fields
as keys; flags given on the command line override it (an empty string clears a path the file set, e.g.
`--train_dataset ""` to use `--train_dir` instead). `--resume_from_checkpoint` takes a checkpoint folder, `last`
(the newest complete checkpoint in output_dir; error if none) or `auto` (the same, or a fresh start).

Writes to `output_dir`: checkpoints (`checkpoint-N`), the final merged `FaceRecModel` + `FaceRecImageProcessor`
(loads with `AutoModel.from_pretrained`, no peft), `adapter/` in lora mode, `train_results.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .checkpoints import last_complete_checkpoint, resolve_resume_checkpoint

__all__ = [
    "ModelArguments",
    "DataArguments",
    "BACKBONE_PRESETS",
    "train_argument_parser",
    "parse_train_arguments",
    "build_model",
    "load_train_dataset",
    "last_complete_checkpoint",
    "resolve_resume_checkpoint",
    "train",
]

logger = logging.getLogger(__name__)

BACKBONE_PRESETS = ("tiny-vit", "iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "mobilefacenet")
_SYNTHETIC = re.compile(r"^synthetic:(\d+):(\d+)$")


@dataclass
class ModelArguments:
    """The face model: a backbone (pretrained, or a config for scratch) + pooling + embedding head + margin head."""

    backbone: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local folder of a backbone (e.g. facebook/dinov2-small; pretrained weights are loaded "
            "unless finetune_mode=scratch), or a preset built from a config: " + ", ".join(BACKBONE_PRESETS)
        },
    )
    embedding_size: int = field(default=512, metadata={"help": "Size of the face embedding."})
    pooling: str = field(default="auto", metadata={"help": "auto, cls, mean, cls_mean or pooler."})
    embedding_head: str = field(
        default="bn_dropout_linear_bn", metadata={"help": "bn_dropout_linear_bn, linear_bn, linear or none."}
    )
    head_dropout: float = field(default=0.0, metadata={"help": "Dropout inside the embedding head."})
    image_size: int = field(default=112, metadata={"help": "Side of the aligned face crop the model sees."})
    backbone_overrides: str | None = field(
        default=None, metadata={"help": 'Backbone config overrides as JSON, e.g. \'{"drop_path_rate": 0.1}\'.'}
    )
    margin_type: str | None = field(
        default=None, metadata={"help": "Margin penalty (arcface, cosface, adaface, ...); None: arcface."}
    )
    margin_scale: float | None = field(default=None, metadata={"help": "Logit scale s; None: 64."})
    margin_kwargs: str | None = field(
        default=None, metadata={"help": 'Extra margin arguments as JSON, e.g. \'{"margin": 0.4}\'.'}
    )
    partial_fc_sample_rate: float | None = field(
        default=None, metadata={"help": "Fraction of class centers sampled per step (Partial FC); None: 1.0."}
    )

    def __post_init__(self):
        from .arguments import is_finite_number

        if isinstance(self.margin_kwargs, str):  # a YAML mapping arrives as a dict, a flag as JSON text
            try:
                self.margin_kwargs = json.loads(self.margin_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(f"margin_kwargs must be a JSON object, got {self.margin_kwargs!r}") from error
        if self.margin_kwargs is not None and not isinstance(self.margin_kwargs, dict):
            raise ValueError(f"margin_kwargs must be a JSON object, got {self.margin_kwargs!r}")
        if self.margin_scale is not None and (not is_finite_number(self.margin_scale) or self.margin_scale <= 0):
            raise ValueError(f"margin_scale must be a positive number, got {self.margin_scale!r}")
        rate = self.partial_fc_sample_rate
        if rate is not None and (not is_finite_number(rate) or not 0.0 < rate <= 1.0):
            raise ValueError(f"partial_fc_sample_rate must be in (0, 1], got {rate!r}")

    def margin_settings(self) -> dict[str, Any]:
        """The margin fields that were set, as `FaceRecConfig` keyword arguments (unset ones keep its defaults)."""
        names = ("margin_type", "margin_scale", "margin_kwargs", "partial_fc_sample_rate")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    """The training identities: one of an identity folder, synthetic identities or a saved dataset."""

    train_dir: str | None = field(default=None, metadata={"help": "Identity folder root/<identity>/<image>."})
    train_dataset: str | None = field(
        default=None,
        metadata={
            "help": "synthetic:N_IDENTITIES:N_IMAGES (procedural synthetic faces), an `hf-facerec convert` output "
            "folder, .parquet file(s) or a glob, an <identity>/<image> folder, a save_to_disk folder or a Hub "
            "dataset id (image and label columns)."
        },
    )
    min_images_per_identity: int = field(default=1, metadata={"help": "Drop identities with fewer images."})
    max_identities: int | None = field(default=None, metadata={"help": "Keep at most this many identities."})
    identity_subset: str = field(
        default="first", metadata={"help": "Which identities max_identities keeps.", "choices": ["first", "random"]}
    )
    augmentation: str = field(
        default="light", metadata={"help": "Training augmentation.", "choices": ["none", "light", "medium"]}
    )


def _dataclass_types() -> tuple[type, ...]:
    from .arguments import FaceRecTrainingArguments

    return (ModelArguments, DataArguments, FaceRecTrainingArguments)


# ---------------------------------------------------------------------------------------------------------------
# Argument parsing: flags override the config file
# ---------------------------------------------------------------------------------------------------------------
def train_argument_parser(parser_class: type | None = None, **parser_kwargs):
    """`HfArgumentParser` over the three argument dataclasses, plus `--config` and `--help-all` (the full help)."""
    from transformers import HfArgumentParser

    parser = (parser_class or HfArgumentParser)(_dataclass_types(), **parser_kwargs)
    parser.add_argument("--config", default=None, help="YAML or JSON file with any of the arguments below.")
    parser.add_argument("--help-all", action="help", help="show this message (every flag) and exit")
    return parser


def parse_train_arguments(argv: list[str], parser=None):
    """`(ModelArguments, DataArguments, FaceRecTrainingArguments)` from argv: `--config`'s values, then the flags.

    The config file's values become the parser's defaults (`set_defaults`, TRL's pattern), so a flag typed on the
    command line overrides them. Raises `ValueError` on unknown keys in the config file.
    """
    parser = parser or train_argument_parser()
    config_path = argparse.ArgumentParser(add_help=False)
    config_path.add_argument("--config", default=None)
    values = _read_config(config_path.parse_known_args(argv)[0].config)
    parser.set_defaults(**values)
    *arguments, _ = parser.parse_args_into_dataclasses(argv, look_for_args_file=False)  # _: the --config namespace
    return tuple(arguments)


def _read_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"config must be a .yaml, .yml or .json file, got {path}")
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"config {path} is not valid JSON: {error}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"config {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must hold a mapping of argument names to values")
    hints = {name: hint for dtype in _dataclass_types() for name, hint in get_type_hints(dtype).items()}
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"config {path}: unknown keys {unknown} (see hf-facerec train --help-all)")
    return {key: _coerce(key, value, hints[key], path) for key, value in data.items()}


def _coerce(name: str, value: Any, hint: Any, source: Path) -> Any:
    """A config value of a scalar field as that field's type, as its flag would parse it; else a clear error.

    YAML reads ``1e-4`` (no dot) as a string, so numeric strings are converted; anything else of the wrong kind
    (``learning_rate: abc``, a list for an int) raises ``ValueError`` naming the file and the key.
    """
    accepted = set(typing.get_args(hint) or (hint,))
    scalar = {int, float, bool} & accepted
    if value is None or not scalar or str in accepted:
        return value
    from transformers.hf_argparser import string_to_bool

    kind = bool if bool in scalar else int if float not in scalar else float
    try:
        if kind is bool:
            return value if isinstance(value, bool) else string_to_bool(value)  # the flag's own parser
        if isinstance(value, str):
            return float(value) if kind is float else int(value, 10)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value)):
            return kind(value)
    except (ValueError, OverflowError, AttributeError, argparse.ArgumentTypeError):
        pass
    raise ValueError(f"config {source}: {name} must be {'an' if kind is int else 'a'} {kind.__name__}, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# Model and data
# ---------------------------------------------------------------------------------------------------------------
def _preset_backbone_config(name: str, image_size: int):
    """Backbone config of a preset name, or None when `name` is not a preset."""
    if name == "tiny-vit":
        from transformers import ViTConfig

        # 4 layers x 64 wide, 16x16 patches: trains on CPU in about a minute (tiny_synthetic.yaml).
        return ViTConfig(image_size=image_size, patch_size=16, hidden_size=64, num_hidden_layers=4,
                         num_attention_heads=4, intermediate_size=128)
    if name.startswith("iresnet") and name[len("iresnet"):].isdigit():
        from ..models import IResNetConfig

        return IResNetConfig.from_depth(int(name[len("iresnet"):]), image_size=image_size)
    if name == "mobilefacenet":
        from ..models import MobileFaceNetConfig

        return MobileFaceNetConfig(image_size=image_size)
    return None


def build_model(model_args: ModelArguments, num_identities: int, finetune_mode: str):
    """`FaceRecForMarginClassification` over `num_identities` classes.

    A preset, or any backbone with `finetune_mode="scratch"`, is built from its config (random weights); otherwise
    the backbone's pretrained weights are loaded (`FaceRecModel.from_backbone`). The heads always start fresh.
    """
    from ..models import FaceRecConfig, FaceRecForMarginClassification
    from ..models.modeling_facerec import load_pretrained_backbone

    if not model_args.backbone:
        raise ValueError(
            "--backbone is required: a Hub id, a local folder or a preset (" + ", ".join(BACKBONE_PRESETS) + ")"
        )
    try:
        overrides = json.loads(model_args.backbone_overrides) if model_args.backbone_overrides else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"backbone_overrides must be a JSON object, got {model_args.backbone_overrides!r}") from error
    if not isinstance(overrides, dict):
        raise ValueError(f"backbone_overrides must be a JSON object, got {model_args.backbone_overrides!r}")
    fields = dict(
        embedding_size=model_args.embedding_size, pooling=model_args.pooling, embedding_head=model_args.embedding_head,
        head_dropout=model_args.head_dropout, image_size=model_args.image_size, num_identities=num_identities,
        **model_args.margin_settings(),
    )
    preset = _preset_backbone_config(model_args.backbone, model_args.image_size)
    if preset is not None:
        for key, value in overrides.items():
            setattr(preset, key, value)
        return FaceRecForMarginClassification(FaceRecConfig(backbone_config=preset, **fields))
    config = FaceRecConfig.from_backbone(model_args.backbone, config_kwargs=overrides, **fields)
    if finetune_mode == "scratch":
        return FaceRecForMarginClassification(config)
    return FaceRecForMarginClassification(config, backbone=load_pretrained_backbone(model_args.backbone, config))


def load_train_dataset(data_args: DataArguments, image_size: int, seed: int):
    """The training identities as a `datasets.Dataset` with `image` and `label` columns."""
    if bool(data_args.train_dir) == bool(data_args.train_dataset):
        raise ValueError("Give exactly one of --train_dir and --train_dataset")
    if data_args.train_dir:
        from ..data.folders import load_identity_folder

        return load_identity_folder(
            data_args.train_dir, data_args.min_images_per_identity, data_args.max_identities,
            data_args.identity_subset, seed,
        )
    match = _SYNTHETIC.match(data_args.train_dataset)
    if match:
        from ..data.synthetic import make_synthetic_faces

        # Synthetic identities are i.i.d. draws: "the first K" of them is the K-identity subset.
        num_identities = int(match.group(1))
        if data_args.max_identities is not None:
            num_identities = min(num_identities, data_args.max_identities)
        return make_synthetic_faces(num_identities, int(match.group(2)), image_size=image_size, seed=seed)
    if data_args.train_dataset.startswith("synthetic:"):
        raise ValueError(f"--train_dataset must be synthetic:N_IDENTITIES:N_IMAGES, got {data_args.train_dataset!r}")
    from ..data.sources import load_train_dataset as load_source

    # A convert output folder, Parquet file(s), an image folder, a save_to_disk folder or a Hub dataset id.
    return load_source(data_args.train_dataset, min_images_per_identity=data_args.min_images_per_identity,
                       max_identities=data_args.max_identities, identity_subset=data_args.identity_subset, seed=seed)


def _num_identities(dataset) -> int:
    label = dataset.features["label"]
    if hasattr(label, "num_classes"):
        return int(label.num_classes)
    return int(max(dataset["label"])) + 1


# ---------------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------------
def train(model_args: "ModelArguments", data_args: "DataArguments", training_args) -> Path:
    """Train, then save the merged model, the image processor (and the adapter in lora mode) to output_dir;
    returns the folder of the final model."""
    import transformers
    from transformers import set_seed

    from ..data.augment import default_train_augmentation, make_train_transform, with_train_transform
    from ..models import FaceRecImageProcessor
    from .launch import check_launch
    from .peft import trainable_parameter_counts
    from .trainer import FaceRecTrainer

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    # This command's own progress lines on the main process; transformers at the level --log_level asks for.
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())

    check_launch(training_args.world_size)  # before loading data: FaceRecTrainer checks again, for library use
    set_seed(training_args.seed)  # the model's random parts are drawn before the Trainer seeds
    dataset = load_train_dataset(data_args, model_args.image_size, training_args.seed)
    num_identities = _num_identities(dataset)
    model = build_model(model_args, num_identities, training_args.finetune_mode)
    height, width = model.config.face_size
    processor = FaceRecImageProcessor(size={"height": height, "width": width})
    augmentation = None
    if data_args.augmentation != "none":
        augmentation = default_train_augmentation(data_args.augmentation, seed=training_args.seed)
    dataset = with_train_transform(dataset, make_train_transform(processor, augmentation, seed=training_args.seed))

    trainer = FaceRecTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=processor)
    logger.info("%d images of %d identities; finetune_mode=%s; trainable parameters %s", len(dataset),
                num_identities, training_args.finetune_mode, trainable_parameter_counts(model))
    checkpoint = resolve_resume_checkpoint(training_args.output_dir, training_args.resume_from_checkpoint)
    if checkpoint is not None:
        logger.info("Resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    if training_args.finetune_mode == "lora":
        trainer.save_adapter(Path(training_args.output_dir) / "adapter")
    output_dir = trainer.save_final_model(training_args.output_dir)
    logger.info("Final model saved to %s", output_dir)
    return Path(output_dir)
