"""Streaming conversion of RecordIO files and identity folders to Parquet shards for ``datasets``.

The output directory holds ``train-00000-of-0000N.parquet`` files with ``image`` (``Image``, the
encoded bytes) and ``label`` columns and the ``datasets`` feature metadata in their schema, so
``datasets.load_dataset("parquet", data_dir=output_dir, split="train")`` restores the features, and
``hf-facerec train --train_dataset output_dir`` trains on it (:mod:`hf_facerec.data.sources`).
Memory stays bounded: rows are written one row group at a time and shards are closed as they fill.
Images that do not decode are skipped and counted (``ConversionReport``), not written.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

import datasets

from .folders import (
    _check_root,
    identity_features,
    scan_identity_folder,
)
from .images import InvalidImageError, load_rgb
from .recordio import RecordIOError, RecordIOReader

__all__ = ["ConversionReport", "recordio_to_parquet", "folder_to_parquet", "stream_recordio", "RECORDIO_FEATURES"]

RECORDIO_FEATURES = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
_MAX_REPORTED = 20


@dataclass
class ConversionReport:
    """What a conversion wrote.

    Attributes:
        num_images: rows written.
        num_skipped: files skipped: images that did not decode (and, from a folder, files that are not
            images or links leaving the root).
        skipped: the first few skipped items (RecordIO key or file path).
        num_classes: ``max(label) + 1`` over the written rows (0 when none).
        shards: the Parquet files, in order.
    """

    num_images: int = 0
    num_skipped: int = 0
    skipped: list[str] = field(default_factory=list)
    num_classes: int = 0
    shards: list[str] = field(default_factory=list)


def _decodes(image_bytes: bytes) -> bool:
    """True when ``load_rgb`` (the decode path training uses) fully decodes the bytes within its default
    ``max_pixels`` (``verify()`` alone misses truncated JPEG data)."""
    try:
        load_rgb(image_bytes)
        return True
    except InvalidImageError:
        return False


class _ShardWriter:
    """Write rows into ``train-*.parquet`` shards of at most ``shard_size`` rows, row group by row group."""

    def __init__(self, output_dir: Path, features: datasets.Features, shard_size: int):
        self.output_dir, self.schema, self.shard_size = output_dir, features.arrow_schema, shard_size
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_shard = 0

    def write(self, columns: dict[str, list]) -> None:
        """Append one batch (columns of equal length, values already in Arrow-ready form)."""
        rows = len(next(iter(columns.values())))
        start = 0
        while start < rows:
            if self._writer is None:
                path = self.output_dir / f"train-{len(self.paths):05d}.parquet.partial"
                self.paths.append(path)
                self._writer = pq.ParquetWriter(path, self.schema)
            take = min(rows - start, self.shard_size - self._rows_in_shard)
            batch = {name: values[start : start + take] for name, values in columns.items()}
            self._writer.write_table(pa.Table.from_pydict(batch, schema=self.schema))
            self._rows_in_shard += take
            start += take
            if self._rows_in_shard == self.shard_size:
                self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._rows_in_shard = None, 0

    def finish(self) -> list[str]:
        """Close the last shard and give the shards their final ``-of-N`` names (visible only now)."""
        self._close_shard()
        final = []
        for index, path in enumerate(self.paths):
            target = self.output_dir / f"train-{index:05d}-of-{len(self.paths):05d}.parquet"
            os.replace(path, target)
            final.append(str(target))
        return final


def _prepare_output(output_dir: str | os.PathLike, overwrite: bool, *sizes: int) -> Path:
    """Check ``shard_size, row_group_size, num_threads`` and make an empty output folder."""
    if min(sizes) < 1:
        raise ValueError(f"shard_size, row_group_size and num_threads must be >= 1, got {sizes}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(output_dir.glob("*.parquet")) + sorted(output_dir.glob("*.parquet.partial"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds {len(existing)} Parquet file(s) (e.g. {existing[0].name}); "
            "pass overwrite=True (--overwrite) to replace them"
        )
    for path in existing:
        path.unlink()
    return output_dir


def _convert(
    items: Iterable[tuple[str, int, bytes, str | None]],
    output_dir: Path,
    features: datasets.Features,
    shard_size: int,
    row_group_size: int,
    check_images: bool,
    num_threads: int,
    total: int | None,
    progress: bool,
    description: str,
) -> ConversionReport:
    """Core loop. ``items`` yields ``(item name, label, image bytes, stored path or None)``."""
    report = ConversionReport()
    writer = _ShardWriter(output_dir, features, shard_size)
    max_label = -1
    pool = ThreadPoolExecutor(num_threads) if check_images and num_threads > 1 else None

    def decodable(images: list[bytes]) -> list[bool]:
        if not check_images:
            return [True] * len(images)
        # PIL's decoder runs outside the GIL, so threads can overlap; Image.open and the Python
        # around it do not, so small (112x112) crops gain little (see scripts/bench_readers.py).
        return list(pool.map(_decodes, images)) if pool is not None else [_decodes(image) for image in images]

    try:
        with tqdm(total=total, desc=description, unit="img", disable=not progress) as bar:
            for chunk in _chunks(items, row_group_size):
                ok = decodable([item[2] for item in chunk])
                kept = [item for item, good in zip(chunk, ok) if good]
                for name, *_ in (item for item, good in zip(chunk, ok) if not good):
                    report.num_skipped += 1
                    if len(report.skipped) < _MAX_REPORTED:
                        report.skipped.append(name)
                if kept:
                    writer.write(
                        {
                            "image": [{"bytes": image, "path": path} for _, _, image, path in kept],
                            "label": [label for _, label, _, _ in kept],
                        }
                    )
                    max_label = max(max_label, max(label for _, label, _, _ in kept))
                    report.num_images += len(kept)
                bar.update(len(chunk))
                bar.set_postfix(skipped=report.num_skipped, refresh=False)
    finally:
        if pool is not None:
            pool.shutdown()
    report.shards = writer.finish()
    report.num_classes = max_label + 1
    return report


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _integer_label(label, reader: RecordIOReader, key: int | None = None, offset: int | None = None) -> int:
    """InsightFace's rule: the identity is the label, or its first value when it is an array.

    A label that is not a non-negative integer (NaN, inf, 0.5, -1) raises ValueError naming the file and
    the record's byte offset (``offset``, else the index's offset of ``key``).
    """
    value = float(label) if np.ndim(label) == 0 else float(np.ravel(label)[0])
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        offset = reader.offset_of(key) if offset is None else offset  # looked up only on the error path
        raise RecordIOError(
            f"{reader.rec_path}: record {'' if key is None else f'{key} '}at offset {offset}: label {label!r} is not "
            "a non-negative integer identity"
        )
    return int(value)


def _recordio_items(reader: RecordIOReader, keys: Sequence[int]) -> Iterator[tuple[str, int, bytes, None]]:
    for key in keys:
        label, image = reader.read(key)
        yield f"key {key}", _integer_label(label, reader, key), image, None


def recordio_to_parquet(
    rec_path: str | os.PathLike,
    idx_path: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    shard_size: int = 50_000,
    row_group_size: int = 1_000,
    check_images: bool = True,
    num_threads: int = 1,
    max_images: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert an InsightFace ``.rec`` (+ ``.idx``) to Parquet shards with ``image`` and ``label`` (int64).

    Args:
        idx_path: the index; None uses ``<rec>.idx`` if present, else one sequential scan.
        shard_size: rows per Parquet file (50,000 112x112 JPEGs are about 350 MB).
        row_group_size: rows held in memory at once.
        check_images: fully decode each image and skip (and count) those that fail.
        num_threads: threads for the decode check (helps larger images on free cores; 1 is
            usually as fast for 112x112 crops).
        max_images: convert only the first N image records (quick subsets).
    """
    output_dir = _prepare_output(output_dir, overwrite, shard_size, row_group_size, num_threads)
    with RecordIOReader(rec_path, idx_path) as reader:
        keys = reader.image_keys if max_images is None else reader.image_keys[:max_images]
        if len(keys) == 0:  # an empty dataset is a failure, not a conversion of nothing
            raise RecordIOError(
                f"{reader.rec_path} holds no image records ({reader.rec_path.stat().st_size} bytes, "
                f"{len(reader.keys)} records{'' if max_images is None else f', max_images={max_images}'})"
            )
        return _convert(
            _recordio_items(reader, keys), output_dir, RECORDIO_FEATURES, shard_size, row_group_size,
            check_images, num_threads, len(keys), progress, f"RecordIO -> Parquet ({Path(rec_path).name})",
        )  # fmt: skip


def _folder_items(root: Path, images: dict[str, list[str]], names: Sequence[str]) -> Iterator[tuple]:
    """``(relative path, label, file bytes, relative path)`` per image, one identity folder at a time."""
    for label, name in enumerate(names):
        for path in images[name]:
            relative = os.path.relpath(path, root)
            yield relative, label, Path(path).read_bytes(), relative


def folder_to_parquet(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    shard_size: int = 50_000,
    row_group_size: int = 1_000,
    check_images: bool = True,
    num_threads: int = 1,
    min_images_per_identity: int = 1,
    max_identities: int | None = None,
    identity_subset: Literal["first", "random"] = "first",
    seed: int = 0,
    extensions: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert ``root/<identity>/<image>`` to Parquet shards (``label`` is a ``ClassLabel`` of the names).

    Images are found by content (:func:`hf_facerec.data.listing.list_folder_images`; ``extensions``, when
    given, narrows to those suffixes); files that are not images, and links leaving ``root``, count as
    skipped in the report. Identity selection is :func:`hf_facerec.data.folders.select_identities`; the
    stored image path is relative to ``root``. Other arguments as in :func:`recordio_to_parquet`.
    """
    root = _check_root(root)
    # the one lister and selection (links, content sniffing) as training uses; decoding is checked in _convert
    listing = scan_identity_folder(root, min_images_per_identity, max_identities, identity_subset, seed, extensions,
                                   check_images=False)
    names = listing.names
    output_dir = _prepare_output(output_dir, overwrite, shard_size, row_group_size, num_threads)
    report = _convert(
        _folder_items(root, listing.images, names), output_dir, identity_features(names), shard_size,
        row_group_size, check_images, num_threads, sum(len(listing.images[n]) for n in names), progress,
        f"folder -> Parquet ({root.name})",
    )  # fmt: skip
    selected = set(names)
    left_out = [rel for path, _ in listing.skipped if (rel := os.path.relpath(path, root)).split(os.sep)[0] in selected]
    report.num_skipped += len(left_out)
    report.skipped.extend(left_out[: max(0, _MAX_REPORTED - len(report.skipped))])
    return report


@functools.lru_cache(maxsize=4)
def _shared_reader(rec_path: str, idx_path: str, version: tuple) -> RecordIOReader:
    # One reader per process and file version (mtime, size): each shard of stream_recordio would
    # otherwise re-parse the index (5.8M lines for MS1MV3). The reader reopens its file after a fork.
    return RecordIOReader(rec_path, idx_path)


def _generate_recordio(rec_path: str, idx_path: str, key_ranges: list[tuple[int, int]]) -> Iterator[dict]:
    versions = tuple((s.st_mtime_ns, s.st_size) for s in (os.stat(rec_path), os.stat(idx_path)))
    reader = _shared_reader(rec_path, idx_path, versions)
    for start, end in key_ranges:
        for key in reader.image_keys[start:end]:
            label, image = reader.read(key)
            yield {"image": {"bytes": image, "path": None}, "label": _integer_label(label, reader, key)}


def _generate_recordio_scan(rec_path: str) -> Iterator[dict]:
    # No index: one sequential pass; iterating a reader never builds the offset table.
    with RecordIOReader(rec_path) as reader:
        for offset, label, image in reader.scan():
            yield {"image": {"bytes": image, "path": None}, "label": _integer_label(label, reader, offset=offset)}


def stream_recordio(
    rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None, num_shards: int = 64
) -> datasets.IterableDataset:
    """A RecordIO file as a ``datasets.IterableDataset`` (``image``, ``label``) without converting it.

    With an index the image records are cut into ``num_shards`` contiguous ranges so
    ``.shuffle()`` and DataLoader workers see shards; without one the file is read in one
    sequential pass (one shard). Undecodable images are not filtered here.
    """
    reader = RecordIOReader(rec_path, idx_path)
    if reader.idx_path is None:
        return datasets.IterableDataset.from_generator(
            _generate_recordio_scan, features=RECORDIO_FEATURES, gen_kwargs={"rec_path": str(rec_path)}
        )
    count, resolved_idx = len(reader), reader.idx_path
    reader.close()
    bounds = np.linspace(0, count, min(max(num_shards, 1), max(count, 1)) + 1).astype(int)
    return datasets.IterableDataset.from_generator(
        _generate_recordio,
        features=RECORDIO_FEATURES,
        gen_kwargs={
            "rec_path": str(rec_path),
            "idx_path": str(resolved_idx),
            "key_ranges": [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])],
        },
    )
