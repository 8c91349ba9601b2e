"""Unlabelled images for pre-training: an image folder (any depth), Parquet shards, a saved or streaming dataset."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import datasets

from ..data.listing import list_folder_images

__all__ = ["load_unlabelled_images"]


def load_unlabelled_images(source, image_column: str = "image", streaming: bool = False, split: str = "train",
                           max_images: int | None = None):
    """A dataset of one column ``image`` (paths, or ``datasets.Image`` values) from ``source``:

    - a list of image paths;
    - a ``datasets.Dataset`` / ``IterableDataset`` (its ``image_column`` kept, other columns dropped);
    - a folder of .parquet files, a .parquet file or a glob of them (``datasets.load_dataset("parquet")``);
    - a ``save_to_disk`` folder;
    - an image folder, read recursively through :func:`hf_facerec.data.listing.list_folder_images` (labels, if
      the sub-folders are identities, are ignored).

    ``max_images`` keeps the first N (sorted paths / dataset order). Raises ``ValueError`` naming the source.
    """
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("pre-training images: the list of paths is empty")
        dataset = datasets.Dataset.from_dict({"image": [os.fspath(p) for p in source]})
        return _limited(dataset.to_iterable_dataset() if streaming else dataset, max_images)
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        dataset = source
    else:
        text = os.fspath(source)
        path = Path(text).expanduser()
        parquet = sorted(glob.glob(os.path.join(text, "**", "*.parquet"), recursive=True)) if path.is_dir() else (
            [text] if path.suffix.lower() == ".parquet" and path.is_file() else sorted(glob.glob(text)))
        if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            dataset = datasets.load_from_disk(text)
            dataset = dataset[split] if isinstance(dataset, datasets.DatasetDict) else dataset
            dataset = dataset.to_iterable_dataset() if streaming else dataset
        elif parquet and all(f.lower().endswith(".parquet") for f in parquet):
            dataset = datasets.load_dataset("parquet", data_files=parquet, split="train", streaming=streaming)
        elif path.is_dir():
            listing = list_folder_images(path, recursive=True)
            paths = listing.images[:max_images]
            if not paths:
                raise ValueError(f"pre-training images {text!r}: the folder holds no readable image")
            dataset = datasets.Dataset.from_dict({"image": paths})
            return dataset.to_iterable_dataset() if streaming else dataset
        else:
            raise ValueError(f"pre-training images {text!r}: not an image folder, a .parquet file / folder / glob "
                             "or a saved dataset")
    columns = dataset.column_names or []
    if image_column not in columns:
        raise ValueError(f"pre-training images: no column {image_column!r} (columns: {columns})")
    dataset = dataset.select_columns([image_column])
    if image_column != "image":
        dataset = dataset.rename_column(image_column, "image")
    return _limited(dataset, max_images)


def _limited(dataset, max_images: int | None):
    if max_images is None:
        return dataset
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.take(max_images)
    return dataset.select(range(min(max_images, len(dataset))))
