"""Write InsightFace / MXNet RecordIO (``.rec`` + ``.idx``) in the byte format of :mod:`hf_facerec.data.recordio`."""

from __future__ import annotations

import numbers
import os
import struct
from collections.abc import Iterable

import numpy as np

from .recordio import _MAGIC_BYTES, RECORDIO_MAGIC, Label, pack_record

__all__ = ["write_recordio"]

_FLOAT32_EXACT = 1 << 24  # header labels are float32: integers above this are not exact


def _frame(payload: bytes) -> bytes:
    """The on-disk bytes of one payload: magic-split parts, each with magic + lrecord, padded."""
    if len(payload) >= 1 << 29:
        raise ValueError(f"a RecordIO record holds < 2**29 bytes, got {len(payload)}")
    # Aligned positions where the magic appears inside the payload must become part boundaries.
    words = np.frombuffer(payload, dtype="<u4", count=len(payload) // 4)
    cuts = (np.flatnonzero(words == RECORDIO_MAGIC) * 4).tolist()
    chunks, start = [], 0
    for number, cut in enumerate(cuts):
        cflag = 1 if number == 0 else 2
        chunks += [_MAGIC_BYTES, struct.pack("<I", (cflag << 29) | (cut - start)), payload[start:cut]]
        start = cut + 4
    tail = len(payload) - start
    chunks += [_MAGIC_BYTES, struct.pack("<I", ((3 if cuts else 0) << 29) | tail), payload[start:]]
    chunks.append(b"\0" * (-tail % 4))  # earlier parts are multiples of 4 by construction
    return b"".join(chunks)


def _identity_ranges(labels: list[float]) -> list[tuple[int, int]] | None:
    """``(start, end)`` key ranges per identity (images at keys ``1..N``), or None if not contiguous."""
    values = np.asarray(labels, dtype=np.float64)
    if values.size == 0 or not np.all((values >= 0) & (values == np.round(values))):
        return None
    ids = values.astype(np.int64)
    boundaries = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(ids)]])
    if len(np.unique(ids[starts])) != len(starts):
        return None  # an identity's images are split into several runs
    return [(int(s) + 1, int(e) + 1) for s, e in zip(starts, ends)]


def write_recordio(
    rec_path: str | os.PathLike,
    idx_path: str | os.PathLike | None,
    items: Iterable[tuple[Label, bytes]],
    header_record: bool = True,
) -> int:
    """Write ``(label, image_bytes)`` items as a ``.rec`` (+ ``.idx``) in the real MXNet byte format.

    With ``header_record`` the layout is InsightFace's: key 0 is a header (``flag = 2``), images get
    keys ``1..N``, and when every image label is an integer identity whose images are contiguous,
    one record per identity follows (label ``(start, end)``) and the header label is
    ``(N + 1, N + 1 + num_identities)``; otherwise the header is ``(N + 1, N + 1)``. The header is
    patched in place at the end, so ``items`` is streamed (only the scalar labels are kept).
    Without ``header_record`` images get keys ``0..N-1``.

    Returns:
        the number of image records written.
    """
    offsets: list[int] = []
    identity_labels: list[float] = []
    with open(rec_path, "wb") as rec:

        def write(payload: bytes) -> None:
            offsets.append(rec.tell())
            rec.write(_frame(payload))

        if header_record:
            write(pack_record(np.zeros(2, np.float32), b""))
        for label, image_bytes in items:
            if header_record and len(offsets) >= _FLOAT32_EXACT - 1:
                raise ValueError(
                    f"an InsightFace header stores key counts as float32, exact only up to {_FLOAT32_EXACT}: "
                    "write this many images with header_record=False"
                )
            write(pack_record(label, image_bytes, record_id=len(offsets)))
            identity_labels.append(float(label) if isinstance(label, numbers.Number) else float(np.ravel(label)[0]))
        num_images = len(identity_labels)
        if header_record:
            ranges = _identity_ranges(identity_labels) or []
            for start, end in ranges:
                write(pack_record(np.array([start, end], np.float32), b""))
            header = pack_record(np.array([num_images + 1, num_images + 1 + len(ranges)], np.float32), b"")
            rec.seek(0)
            rec.write(_frame(header))  # same size as the placeholder: 24-byte IRHeader + 2 floats
    if idx_path is not None:
        with open(idx_path, "w", encoding="ascii") as idx:
            idx.writelines(f"{key}\t{offset}\n" for key, offset in enumerate(offsets))
    return num_images
