"""The restricted unpickler of pair ``.bin`` files (issue 13): no allowed global allocates from a number in the
file, no uninitialised array, everything built bounded by the file size; real ``pickle.dump`` output still loads."""

from __future__ import annotations

import codecs
import io
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from hf_facerec.data._safe_pickle import UnsafePickleError, load_restricted_pickle
from hf_facerec.data.pairs import load_bin_pairs

_reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), seed, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


class _Call:
    """Pickles as ``function(*args)`` (with an optional BUILD ``state``): how a crafted file calls a global."""

    def __init__(self, function, *args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def _write(tmp_path, content, protocol: int):
    path = tmp_path / "hostile.bin"
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    "payload, refused",
    [
        (_Call(bytes, 300_000_000), r"refused bytes\(int\)"),  # the 93-byte file: +1.4 GB before
        (_Call(bytearray, 300_000_000), r"refused bytearray\(int\)"),
        (_Call(bytes, [1] * 8), r"refused bytes\(list\)"),
        (_Call(np.ndarray, (4, 4096)), "uninitialised memory"),  # the 53-byte file: heap contents
        (_Call(_reconstruct, np.ndarray, (1 << 30,), b"b"), r"shape \(1073741824,\)"),
        (_Call(np.dtype, "(1000000000,)u1", False, True), "refused dtype"),
        (_Call(np.dtype, "V8", False, True), "refused dtype"),
        (_Call(np.dtype, "U4", False, True), "refused dtype"),
        (_Call(codecs.encode, "abc", "rot13"), "_codecs.encode"),
    ],
)
def test_allocating_or_uninitialised_constructors_are_refused(tmp_path, protocol, payload, refused):
    path = _write(tmp_path, ([_jpeg(0), payload], [True]), protocol)
    assert path.stat().st_size < 1200
    with pytest.raises(UnsafePickleError, match=f"{path}: .*{refused}"):
        load_bin_pairs(path)


def test_a_scalar_needs_exactly_its_bytes(tmp_path):
    scalar = (getattr(np, "_core", None) or np.core).multiarray.scalar
    path = _write(tmp_path, ([_jpeg(0), _jpeg(1)], [_Call(scalar, np.dtype("i8"), b"\x01")]), 4)
    with pytest.raises(UnsafePickleError, match=f"{path}: refused a numpy int64 scalar from 1 bytes"):
        load_bin_pairs(path)


def _shared_data_array(data: bytes):
    """An array whose BUILD copies ``data``: many of them share one memoised ``data`` in the file."""
    return _Call(_reconstruct, np.ndarray, (0,), b"b", state=(1, (len(data),), np.dtype("u1"), False, data))


@pytest.mark.parametrize(
    "make, shared",
    [
        (_shared_data_array, lambda data: data),
        (lambda text: _Call(codecs.encode, text, "latin1"), lambda data: data.decode("latin1")),
        (lambda data: _Call(bytes, data), lambda data: data),
    ],
    ids=["ndarray BUILD", "_codecs.encode", "bytes"],
)
def test_one_memoised_object_reused_cannot_build_more_than_the_file(tmp_path, make, shared):
    data = shared(bytes(range(256)) * 1024)  # 256 KiB, stored once in the file (one object: memoised)
    items = [make(data) for _ in range(64)]  # 64 references: 16 MiB built from a ~260 KiB file
    path = _write(tmp_path, (items, [True] * 32), 4)
    assert path.stat().st_size < 600_000
    with pytest.raises(UnsafePickleError, match=f"{path}: refused .*builds more bytes than its file can hold"):
        load_restricted_pickle(path)
    # The same object used once stays within the budget (a real file stores each array's data once).
    path = _write(tmp_path, ([make(data)], [True]), 4)
    assert len(load_restricted_pickle(path)[0]) == 1


def test_a_length_field_beyond_memory_names_the_file(tmp_path):
    path = tmp_path / "huge.bin"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc")  # BINBYTES8 of 4 EiB, 14 bytes
    with pytest.raises(ValueError, match=f"{path} is not a readable pickle"):
        load_bin_pairs(path)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("bins_kind", ["bytes", "uint8 arrays", "bytes array", "bytearray"])
def test_real_pickle_dump_output_loads(tmp_path, protocol, bins_kind):
    # Exactly what ``pickle.dump((bins, issame_list), f, protocol=...)`` writes, with numpy arrays of bytes.
    images = [_jpeg(i) for i in range(20)]
    bins = {
        "bytes": images,
        "uint8 arrays": [np.frombuffer(image, np.uint8) for image in images],
        "bytes array": np.array(images),  # dtype S<longest>: numpy strips the padding on access
        "bytearray": [bytearray(image) for image in images],
    }[bins_kind]
    issame = np.array([i % 2 == 0 for i in range(10)])
    path = _write(tmp_path, (bins, issame), protocol)
    dataset = load_bin_pairs(path)
    raw = dataset.cast_column("image1", dataset.features["image1"].__class__(decode=False))
    assert [row["image1"]["bytes"] for row in raw] == images[0::2]
    assert dataset["is_same"] == issame.tolist()


def _py2_str(data: bytes) -> bytes:
    return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING: a Python 2 str


def test_python2_numpy_pickle_loads(tmp_path):
    # What Python 2 + numpy 1.x write for ([img, img], [numpy.bool_(True)], numpy.array([True, False])).
    dtype_b1 = b"cnumpy\ndtype\nq\x02" + _py2_str(b"b1") + b"K\x00K\x01\x87Rq\x03(K\x03" + _py2_str(b"|")
    dtype_b1 += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    scalar = b"cnumpy.core.multiarray\nscalar\nq\x01" + dtype_b1 + _py2_str(b"\x01") + b"\x86R"
    array = b"cnumpy.core.multiarray\n_reconstruct\nq\x04cnumpy\nndarray\nq\x05K\x00\x85" + _py2_str(b"b")
    array += b"\x87R(K\x01K\x02\x85h\x03\x89" + _py2_str(b"\x01\x00") + b"tb"
    images = b"](" + _py2_str(b"\xff\xd8") + _py2_str(b"\xff\xd9") + b"e"
    path = tmp_path / "py2.bin"
    path.write_bytes(b"\x80\x02" + images + b"](" + scalar + b"e" + array + b"\x87.")
    bins, issame, extra = load_restricted_pickle(path, "bytes")
    assert bins == [b"\xff\xd8", b"\xff\xd9"] and issame == [True] and np.asarray(extra).tolist() == [True, False]


def test_a_dtype_from_the_file_is_never_numpys_global_singleton(tmp_path):
    # np.dtype("b1", copy=False) is numpy's shared bool dtype; a BUILD opcode on it would change it process-wide.
    path = _write(tmp_path, _Call(np.dtype, "b1", False, False), 2)
    loaded = load_restricted_pickle(path)
    assert loaded == np.dtype(bool) and loaded is not np.dtype(bool)
