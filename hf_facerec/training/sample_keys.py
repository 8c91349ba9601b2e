"""Sample keys: each training image's augmentation is a pure function of ``(seed, sampler seed, epoch, index)``.

A resumed run must draw the same augmentations as the uninterrupted one. A generator that lives in a process (or
in a DataLoader worker) restarts with it, so instead nothing is kept: the sampler yields, with every dataset index,
the epoch and the seed its shuffle was drawn from, and the dataset hands these keys to the
:class:`~hf_facerec.data.augment.TrainTransform` the dataset was given with ``set_transform``. The keys travel with
the indices into the workers (persistent ones too), and each rank reads other indices, so augmentations differ
across samples, epochs, workers and ranks, while a 2-rank run augments a sample as a 1-rank run does.

``FaceRecTrainer.get_train_dataloader`` uses :func:`keyed_train_dataset` / :class:`KeyedSampler`; datasets
without a ``TrainTransform`` (tensors, a plain callable) train as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..data.augment import TrainTransform

__all__ = ["KeyedSampler", "KeyedTrainDataset", "keyed_train_dataset"]


class KeyedSampler(torch.utils.data.Sampler):
    """Yields ``(seed, epoch, index)`` for each index of ``sampler``; ``set_epoch`` reaches both.

    The epoch is counted as accelerate's ``SeedableRandomSampler`` counts it (set by ``set_epoch``, +1 after a
    complete pass), so it is the epoch the shuffle order was drawn for.
    """

    def __init__(self, sampler: Sequence[int] | torch.utils.data.Sampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, int(seed), 0

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next pass (forwarded to the wrapped sampler)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch = self.epoch
        for index in self.sampler:
            yield self.seed, epoch, int(index)
        self.epoch = epoch + 1


class KeyedTrainDataset(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` read by sample keys: rows ``index`` of the undecorated dataset, transformed by
    ``transform(batch, keys=keys)``. Returns one dict per row, as ``datasets.Dataset.__getitems__`` does."""

    def __init__(self, dataset, transform: TrainTransform) -> None:
        fmt = dataset.format
        self.dataset = dataset
        # The same columns the transform would get through set_transform, as python objects (images decoded).
        self._rows = dataset.with_format(None, columns=fmt["columns"], output_all_columns=fmt["output_all_columns"])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: Sequence[tuple[int, int, int]]) -> list[dict]:
        batch = self._rows[[key[-1] for key in keys]]
        out = self.transform(batch, keys=keys)
        return [{name: value[i] for name, value in out.items()} for i in range(len(keys))]

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        return self.__getitems__([key])[0]


def keyed_train_dataset(dataset) -> KeyedTrainDataset | None:
    """``dataset`` read by sample keys when it is a ``datasets.Dataset`` whose ``set_transform`` is a
    ``TrainTransform``; None otherwise (the Trainer then reads it as it is)."""
    fmt = getattr(dataset, "format", None)
    if not isinstance(fmt, dict) or not callable(getattr(dataset, "with_format", None)):
        return None
    transform = (fmt.get("format_kwargs") or {}).get("transform")
    if fmt.get("type") != "custom" or not isinstance(transform, TrainTransform):
        return None
    return KeyedTrainDataset(dataset, transform)
