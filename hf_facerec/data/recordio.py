"""InsightFace / MXNet RecordIO (``train.rec`` + ``train.idx``) read and written without mxnet.

Byte format (dmlc-core ``recordio.h``), little-endian:

* a record is ``uint32 magic (0xced7230a)``, ``uint32 lrecord``, ``payload``, zero padding to a
  multiple of 4 bytes; ``lrecord`` holds ``cflag`` in its upper 3 bits and the payload length in
  its lower 29 bits;
* the writer never lets a 4-byte-aligned magic appear inside a payload: it cuts the payload at
  each such magic and writes the pieces as parts with ``cflag`` 1 (first), 2 (middle) and 3 (last);
  the reader glues them back, re-inserting the magic between parts (``cflag`` 0 = whole record);
* a payload (``mx.recordio.pack``) is the ``IRHeader`` struct ``<IfQQ`` (flag, label, id, id2),
  then ``flag`` float32 labels when ``flag > 0`` (the scalar ``label`` is then unused), then the
  encoded image;
* ``.idx`` is text, one ``key<TAB>byte offset`` line per record.

InsightFace training sets (``MXFaceDataset``) put a header at key 0 whose ``label[0]`` is the
first key after the images, so the image keys are ``range(1, int(label[0]))``; the keys after
hold one record per identity whose label is the ``(start, end)`` key range of its images.

This module is the format and the reader; :mod:`hf_facerec.data.recordio_write` writes the same bytes.
"""

from __future__ import annotations

import numbers
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["RECORDIO_MAGIC", "RecordIOError", "RecordIOReader", "pack_record", "unpack_record"]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2: 24 bytes, no padding either way
_LENGTH_MASK = (1 << 29) - 1

Label = float | np.ndarray


class RecordIOError(ValueError):
    """A RecordIO file (or its index) is malformed or truncated; the message names the offset."""


def pack_record(label: Label, image_bytes: bytes, record_id: int = 0, record_id2: int = 0) -> bytes:
    """Encode one payload like ``mx.recordio.pack``.

    Args:
        label: a number (stored in the header, ``flag = 0``) or a 1-D array of K labels (stored as
            K float32 after the header, ``flag = K``).
        image_bytes: the encoded image (JPEG/PNG), or ``b""``.
    """
    if isinstance(label, numbers.Number):
        return _IR_HEADER.pack(0, float(label), record_id, record_id2) + bytes(image_bytes)
    labels = np.asarray(label, dtype="<f4").reshape(-1)
    if labels.size == 0:
        raise ValueError("an array label needs at least one value")
    return _IR_HEADER.pack(labels.size, 0.0, record_id, record_id2) + labels.tobytes() + bytes(image_bytes)


def unpack_record(payload: bytes) -> tuple[Label, bytes]:
    """Decode one payload like ``mx.recordio.unpack``: ``(label, image_bytes)``.

    ``label`` is a Python float when ``flag == 0``, else a float32 array of shape ``(flag,)``.
    """
    if len(payload) < _IR_HEADER.size:
        raise RecordIOError(f"payload of {len(payload)} bytes is shorter than the {_IR_HEADER.size}-byte IRHeader")
    flag, label, _, _ = _IR_HEADER.unpack_from(payload)
    start = _IR_HEADER.size
    if flag == 0:
        return float(label), bytes(payload[start:])
    end = start + 4 * flag
    if end > len(payload):
        raise RecordIOError(f"IRHeader announces {flag} labels but the payload holds {len(payload) - start} bytes")
    return np.frombuffer(payload, dtype="<f4", count=flag, offset=start).astype(np.float32), bytes(payload[end:])


class RecordIOReader:
    """Random-access and sequential reader of a ``.rec`` file, without mxnet.

    Args:
        rec_path: the ``.rec`` file.
        idx_path: its ``.idx``; defaults to ``rec_path`` with suffix ``.idx`` when that exists,
            otherwise the offsets are found by one sequential scan (keys ``0..N-1``). An index that
            does not fit the file is refused, never silently rebuilt (it may belong to another file):
            empty beside a non-empty ``.rec``, an offset outside the file or not 4-byte aligned, no
            record at offset 0, or a last record not ending at the file's end raise RecordIOError.

    Every RecordIOError names the file and the byte offset of the record (or the index line).

    Attributes:
        keys: ``(R,)`` int64 array, every key of the index in file order (header and identity
            records included).
        image_keys: ``(N,)`` int64 array, the keys of image records: ``range(1, label[0])`` when
            key 0 is an InsightFace header (``flag > 0``, empty image), otherwise all keys.
            ``len(reader)`` is ``N``.

    Keys and offsets live in numpy arrays (not a dict): 5.8M records (MS1MV3) cost about 90 MB.
    The file is opened lazily and re-opened in a forked process (DataLoader workers), and reads use
    ``os.pread`` where available, so one reader can be shared by threads and worker processes.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"RecordIO file not found: {self.rec_path}")
        self._file_size = self.rec_path.stat().st_size
        if self._file_size == 0:  # an empty file is no dataset: say so rather than read 0 images
            raise RecordIOError(f"{self.rec_path}: empty RecordIO file (0 bytes): an interrupted copy or download?")
        self._file = None
        self._pid = None
        self._lock = threading.Lock()
        default_idx = self.rec_path.with_suffix(".idx")
        if idx_path is None and default_idx.is_file():
            idx_path = default_idx
        self.idx_path = None if idx_path is None else Path(idx_path)
        self._keys: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._contiguous = False
        self._image_keys: np.ndarray | None = None
        if self.idx_path is not None:
            self._set_index(*self._read_index(self.idx_path))  # read now: a bad index fails early

    # ---- index ------------------------------------------------------------------------------
    def _read_index(self, idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
        if not idx_path.is_file():
            raise FileNotFoundError(f"RecordIO index not found: {idx_path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": checked below
                table = np.loadtxt(idx_path, dtype=np.int64, ndmin=2)
        except ValueError as error:
            raise RecordIOError(f"{idx_path}: not a 'key<TAB>offset' index: {error}") from None
        if table.size == 0:
            if self._file_size:
                raise RecordIOError(
                    f"{idx_path} is empty but {self.rec_path} holds {self._file_size} bytes of records: "
                    "a wrong or unfinished index; delete it (the reader then scans the .rec) or regenerate it"
                )
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if table.shape[1] != 2:
            raise RecordIOError(f"{idx_path}: expected 2 columns (key, offset), found {table.shape[1]}")
        keys, offsets = table[:, 0], table[:, 1]
        # Records start 4-byte aligned (the writer pads), so any other offset is not a record.
        bad = np.flatnonzero((offsets < 0) | (offsets > self._file_size - 8) | (offsets % 4 != 0))
        if bad.size:
            line = int(bad[0])
            raise RecordIOError(
                f"{idx_path}:{line + 1}: offset {offsets[line]} of key {keys[line]} lies outside {self.rec_path} "
                f"({self._file_size} bytes) or is not 4-byte aligned: truncated .rec or wrong index"
            )
        self._check_index_covers_file(idx_path, keys, offsets)
        return keys, offsets

    def _check_index_covers_file(self, idx_path: Path, keys: np.ndarray, offsets: np.ndarray) -> None:
        """An index must span the whole .rec: a record at offset 0 and one ending at the last byte.

        Two header reads catch an index of another (or a truncated or appended) file; a wrong offset in
        between still fails at its read, naming that offset.
        """
        if int(offsets.min()) != 0:
            raise RecordIOError(f"{idx_path}: no record at offset 0 of {self.rec_path}: the index is not this file's")
        last = int(np.argmax(offsets))
        end = self._record_parts(int(offsets[last]))[1]
        if end != self._file_size:
            raise RecordIOError(
                f"{idx_path}:{last + 1}: the last indexed record (key {keys[last]}, offset {offsets[last]}) ends at "
                f"byte {end} but {self.rec_path} holds {self._file_size}: the index does not cover the file "
                "(records added after it was written, or another file's index)"
            )

    def _set_index(self, keys: np.ndarray, offsets: np.ndarray) -> None:
        if np.unique(keys).size != keys.size:
            raise RecordIOError(f"duplicate keys in the index of {self.rec_path}")
        self._keys, self._offsets = keys, offsets
        # The usual index is keys 0..R-1 in order: then a key is its own row, no search needed.
        self._contiguous = bool(np.array_equal(keys, np.arange(keys.size)))
        if not self._contiguous:
            self._order = np.argsort(keys, kind="stable")
            self._sorted_keys = keys[self._order]

    def _ensure_index(self) -> None:
        if self._keys is None:
            offsets = np.fromiter((offset for offset, _ in self._scan()), dtype=np.int64)
            self._set_index(np.arange(offsets.size, dtype=np.int64), offsets)

    @property
    def keys(self) -> np.ndarray:
        self._ensure_index()
        return self._keys

    @property
    def image_keys(self) -> np.ndarray:
        if self._image_keys is None:
            header = self.read_header()
            keys = self.keys
            self._image_keys = keys if header is None else keys[(keys >= 1) & (keys < int(header[0]))]
        return self._image_keys

    def offset_of(self, key: int) -> int:
        """Byte offset of record ``key`` in the ``.rec`` file (KeyError when absent)."""
        self._ensure_index()
        key = int(key)
        if self._contiguous:
            if 0 <= key < self._keys.size:
                return int(self._offsets[key])
        else:
            row = int(np.searchsorted(self._sorted_keys, key))
            if row < self._sorted_keys.size and self._sorted_keys[row] == key:
                return int(self._offsets[self._order[row]])
        raise KeyError(f"key {key} is not in the index of {self.rec_path}")

    # ---- low-level reading ------------------------------------------------------------------
    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for the reader's life
            self._pid = os.getpid()
        return self._file

    def _read_at(self, offset: int, size: int) -> bytes:
        handle = self._handle()
        if hasattr(os, "pread"):
            return os.pread(handle.fileno(), size, offset)
        with self._lock:
            handle.seek(offset)
            return handle.read(size)

    def _record_parts(self, offset: int) -> tuple[list[tuple[int, int]], int]:
        """Locate the (possibly multi-part) record at ``offset`` from its part headers alone.

        Returns ``([(body offset, length) per part], offset of the next record)``.
        """
        parts: list[tuple[int, int]] = []
        position = offset
        while True:
            head = self._read_at(position, 8)
            if len(head) < 8:
                raise RecordIOError(
                    f"truncated RecordIO file {self.rec_path}: record header at offset {position} needs 8 bytes, "
                    f"file ends at {self._file_size}"
                )
            magic, lrecord = struct.unpack("<II", head)
            if magic != RECORDIO_MAGIC:
                raise RecordIOError(f"bad RecordIO magic 0x{magic:08x} at offset {position} of {self.rec_path}")
            cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
            # A record is one part with cflag 0, or parts flagged 1, 2, ..., 2, 3.
            if cflag > 3 or (cflag in (2, 3)) != bool(parts):
                raise RecordIOError(f"unexpected RecordIO part flag {cflag} at offset {position} of {self.rec_path}")
            padded = (length + 3) & ~3
            if position + 8 + padded > self._file_size:
                raise RecordIOError(
                    f"truncated RecordIO file {self.rec_path}: record at offset {position} needs {padded} bytes "
                    f"after its header, only {self._file_size - position - 8} left"
                )
            parts.append((position + 8, length))
            position += 8 + padded
            if cflag in (0, 3):
                return parts, position

    def _read_payload(self, offset: int) -> bytes:
        """The payload of the record at ``offset``."""
        return self._join_parts(self._record_parts(offset)[0])

    def _join_parts(self, parts: list[tuple[int, int]]) -> bytes:
        """Read the parts of one record and glue them back with the magic between them."""
        if len(parts) == 1:
            return self._read_at(*parts[0])
        # Parts are contiguous on disk (only 8-byte part headers between them): one read, then cut.
        first, (last_offset, last_length) = parts[0][0], parts[-1]
        blob = self._read_at(first, last_offset + last_length - first)
        return _MAGIC_BYTES.join(blob[o - first : o - first + n] for o, n in parts)

    def _scan(self) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        """``(offset, parts)`` of every record in file order, reading only the 8-byte part headers."""
        offset = 0
        while offset < self._file_size:
            parts, next_offset = self._record_parts(offset)
            yield offset, parts
            offset = next_offset

    def _unpack(self, payload: bytes, offset: int) -> tuple[Label, bytes]:
        """:func:`unpack_record`, its errors naming this file and the record's byte offset."""
        try:
            return unpack_record(payload)
        except RecordIOError as error:
            raise RecordIOError(f"{self.rec_path}: record at offset {offset}: {error}") from None

    def _header_end(self, label: Label, image: bytes, offset: int) -> int | None:
        """The key after the images when the record at ``offset`` (key 0) is an InsightFace header, else None."""
        if not isinstance(label, np.ndarray) or image:
            return None
        value = float(label[0])
        if not (np.isfinite(value) and value >= 1 and value == int(value)):
            raise RecordIOError(
                f"{self.rec_path}: the InsightFace header (key 0, offset {offset}) gives {value!r} as the key after "
                "the images: not a positive integer"
            )
        return int(value)

    # ---- public API ---------------------------------------------------------------------------
    def read(self, key: int) -> tuple[Label, bytes]:
        """``(label, image_bytes)`` of record ``key``; see :func:`unpack_record` for the label type."""
        offset = self.offset_of(key)
        return self._unpack(self._read_payload(offset), offset)

    def read_header(self) -> np.ndarray | None:
        """The label array of the InsightFace header record (key 0), or None when there is none.

        Raises RecordIOError (naming the offset) when the header's first label is not a positive integer.
        """
        try:
            label, image = self.read(0)
        except KeyError:
            return None
        return None if self._header_end(label, image, self.offset_of(0)) is None else label

    def __len__(self) -> int:
        return len(self.image_keys)

    def __getitem__(self, index: int) -> tuple[Label, bytes]:
        """The ``index``-th image record (``-N <= index < N``)."""
        return self.read(int(self.image_keys[index]))

    def __iter__(self) -> Iterator[tuple[Label, bytes]]:
        """Sequential scan of the image records, ``(label, image_bytes)``; needs no index (see :meth:`scan`)."""
        for _, label, image in self.scan():
            yield label, image

    def scan(self) -> Iterator[tuple[int, Label, bytes]]:
        """Sequential scan of the image records, ``(byte offset, label, image_bytes)``; needs no index.

        Follows the same rule as :attr:`image_keys`: a leading InsightFace header is skipped and
        the scan stops at the key it names (the identity records after are not images).
        """
        end = None
        for position, (offset, parts) in enumerate(self._scan()):
            if end is not None and position >= end:
                return
            label, image = self._unpack(self._join_parts(parts), offset)
            if position == 0:
                end = self._header_end(label, image, offset)
                if end is not None:
                    continue
            yield offset, label, image

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # Picklable for DataLoader workers: drop the open handle (reopened lazily).
        state = self.__dict__.copy()
        state.update(_file=None, _pid=None, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RecordIOReader({str(self.rec_path)!r}, images={len(self)}, records={len(self.keys)})"
