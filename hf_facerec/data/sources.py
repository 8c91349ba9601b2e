"""One reader for every ordinary form of a training dataset, as ``image`` + ``label`` rows.

:func:`load_train_dataset` recognises, in this order:

- a ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` folder (``state.json`` or ``dataset_dict.json``):
  ``datasets.load_from_disk``, then the split of a ``DatasetDict``;
- a folder holding ``.parquet`` files, e.g. what ``hf-facerec convert`` writes (``train-0000N-of-0000M.parquet``
  with the ``datasets`` features in their schema, so a ``ClassLabel`` of identity names comes back), a single
  ``.parquet`` file, or a glob of them: ``datasets.load_dataset("parquet", ...)``;
- an image folder ``root/<identity>/<image>`` (label = folder name):
  :func:`hf_facerec.data.folders.load_identity_folder`;
- anything else that is not a local path but is a valid Hub dataset id: ``datasets.load_dataset(id, split=split)``.

The result has exactly two columns: ``image`` (``datasets.Image``) and ``label`` (``ClassLabel`` or integer). A
lone ``Image`` column of another name and a lone ``ClassLabel`` column of another name are renamed; string labels
become a ``ClassLabel`` (sorted names). Anything else raises one ``ValueError`` naming the source and the forms
accepted.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Literal

import datasets

from .folders import _identity_dirs, list_identity_images, load_identity_folder, stream_identity_folder

__all__ = ["ACCEPTED_FORMS", "load_train_dataset"]

ACCEPTED_FORMS = (
    "an `hf-facerec convert` output folder (or any folder of .parquet files), a .parquet file or a glob of them, "
    "an image folder of <identity>/<image> subfolders, a datasets save_to_disk folder, or a Hub dataset id"
)

Dataset = datasets.Dataset | datasets.IterableDataset


def _not_accepted(source: str, why: str) -> ValueError:
    return ValueError(f"train dataset {source!r}: {why}; accepted: {ACCEPTED_FORMS}")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _has_nested_parquet(path: Path) -> bool:
    """True when a .parquet file lies anywhere under the folder (hidden folders such as .cache skipped)."""
    return any(not any(part.startswith(".") for part in p.relative_to(path).parts) for p in path.rglob("*.parquet"))


def _has_identity_images(path: Path) -> bool:
    """True when some subfolder holds an image (stops at the first one: an LFW-sized folder is not listed twice)."""
    return any(list_identity_images(path / name) for name in _identity_dirs(path))


def _pick_split(loaded, source: str, split: str):
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in loaded:
            raise ValueError(f"train dataset {source!r} has no split {split!r} (splits: {sorted(loaded)})")
        return loaded[split]
    return loaded


def _load_parquet(files: str | list[str], data_dir: str | None, source: str, split: str, streaming: bool):
    # data_dir lets datasets infer the splits from the file names (train-*, test-*); files are all one split.
    kwargs = {"data_dir": data_dir} if data_dir is not None else {"data_files": {split: files}}
    try:
        loaded = datasets.load_dataset("parquet", streaming=streaming, **kwargs)
    except (OSError, ValueError) as error:  # a damaged shard, a file that is not Parquet
        raise ValueError(f"train dataset {source!r}: the Parquet files could not be read: {error}") from error
    return _pick_split(loaded, source, split)


def _load_hub(source: str, split: str, streaming: bool):
    try:
        return datasets.load_dataset(source, split=split, streaming=streaming)
    except (OSError, ValueError) as error:  # offline (ConnectionError), no such dataset, no such split
        raise _not_accepted(
            source, f"no such local file or folder, and loading it as a Hub dataset id failed ({error})"
        ) from error


def _normalise_columns(dataset: Dataset, source: str) -> Dataset:
    """``image`` + ``label`` only: rename a lone Image / ClassLabel column, encode string labels."""
    if dataset.features is None and isinstance(dataset, datasets.IterableDataset):
        dataset = dataset._resolve_features()  # a streamed Hub dataset: features known once a row is read
    features = dataset.features
    if features is None:
        raise ValueError(f"train dataset {source!r}: its features are unknown, cannot find the image and label")
    renames = {}
    for wanted, kind in (("image", datasets.Image), ("label", datasets.ClassLabel)):
        if wanted not in features:
            candidates = [name for name, feature in features.items() if isinstance(feature, kind)]
            if len(candidates) != 1:
                raise ValueError(
                    f"train dataset {source!r} has no {wanted!r} column (columns: {sorted(features)}); "
                    f"it needs an image column and an integer or ClassLabel identity label column"
                )
            renames[candidates[0]] = wanted
    if renames:
        dataset = dataset.rename_columns(renames)
    dataset = dataset.select_columns(["image", "label"])
    image, label = dataset.features["image"], dataset.features["label"]
    if not isinstance(image, datasets.Image):  # paths or {bytes, path} structs written without HF metadata
        try:
            dataset = dataset.cast_column("image", datasets.Image())
        except (TypeError, ValueError) as error:
            raise ValueError(f"train dataset {source!r}: column 'image' ({image}) is not images: {error}") from error
    if isinstance(label, datasets.Value) and label.dtype in ("string", "large_string"):
        if isinstance(dataset, datasets.IterableDataset):
            raise ValueError(f"train dataset {source!r}: string labels need a map-style dataset (streaming=False)")
        dataset = dataset.class_encode_column("label")
    elif not isinstance(label, datasets.ClassLabel) and not (
        isinstance(label, datasets.Value) and label.dtype.startswith(("int", "uint"))
    ):
        raise ValueError(f"train dataset {source!r}: column 'label' must hold integer or string identities, "
                         f"got {label}")
    return dataset


def load_train_dataset(
    source: str | os.PathLike,
    split: str = "train",
    streaming: bool = False,
    min_images_per_identity: int = 1,
    max_identities: int | None = None,
    identity_subset: Literal["first", "random"] = "first",
    seed: int = 0,
) -> Dataset:
    """A training dataset of ``(image, label)`` rows from any form in the module docstring.

    Args:
        source: a path, a glob of .parquet files, or a Hub dataset id.
        split: the split of a saved ``DatasetDict``, a Parquet folder with split-named files, or a Hub dataset.
        streaming: a ``datasets.IterableDataset`` instead of a ``Dataset`` (nothing is loaded up front).
        min_images_per_identity, max_identities, identity_subset, seed: identity selection of an image folder
            (:func:`hf_facerec.data.folders.select_identities`); other forms take no selection (``hf-facerec
            convert`` applies it when writing Parquet), and asking for one raises ``ValueError``.

    Returns:
        ``Dataset`` (or ``IterableDataset``) with columns ``image`` (``datasets.Image``) and ``label``.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    selection = dict(min_images_per_identity=min_images_per_identity, max_identities=max_identities,
                     identity_subset=identity_subset, seed=seed)
    top_parquet = path.is_dir() and any(path.glob("*.parquet"))
    if path.is_dir() and not _is_saved_dataset(path) and not top_parquet and _has_identity_images(path):
        loader = stream_identity_folder if streaming else load_identity_folder
        return loader(path, **selection)
    if min_images_per_identity != 1 or max_identities is not None:
        raise ValueError(
            f"train dataset {text!r}: min_images_per_identity / max_identities select identities of an image "
            "folder only; select them when writing Parquet (hf-facerec convert --min-images --max-identities)"
        )
    if path.is_dir():
        if _is_saved_dataset(path):
            try:
                loaded = _pick_split(datasets.load_from_disk(str(path)), text, split)
            except FileNotFoundError as error:  # state.json without its arrow files
                raise ValueError(f"train dataset {text!r}: the save_to_disk folder is incomplete: {error}") from error
            dataset = loaded.to_iterable_dataset() if streaming else loaded
        elif top_parquet or _has_nested_parquet(path):  # convert's output; a Hub snapshot keeps them in data/
            dataset = _load_parquet([], str(path), text, split, streaming)
        else:
            raise _not_accepted(text, "the folder holds no .parquet file, no saved dataset and no identity subfolder "
                                      "with images")
    elif path.is_file():
        if path.suffix.lower() != ".parquet":
            raise _not_accepted(text, f"a {path.suffix or 'suffix-less'} file is not a dataset")
        dataset = _load_parquet(str(path), None, text, split, streaming)
    elif glob.has_magic(text):
        files = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        if not files or any(not f.lower().endswith(".parquet") for f in files):
            found = f"matches {len(files)} file(s), e.g. {files[0]}" if files else "matches no file"
            raise _not_accepted(text, f"the pattern {found}; a glob must match .parquet files only")
        dataset = _load_parquet(files, None, text, split, streaming)
    else:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(text)
        except HFValidationError:
            raise _not_accepted(text, "no such file or folder (and not a Hub dataset id)") from None
        dataset = _load_hub(text, split, streaming)
    return _normalise_columns(dataset, text)
