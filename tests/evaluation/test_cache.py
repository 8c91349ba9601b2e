"""The embedding cache never trusts its files: a changed, truncated or garbled entry is a miss
(one warning naming the file), never a wrong result or a crash (issue 13)."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

from hf_facerec.benchmarks.cache import EmbeddingCache, array_checksum


def _saved(tmp_path, rows=6, dim=4):
    cache = EmbeddingCache(tmp_path / "c")
    array = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    cache.save("k", array, {"n_no_face": 1})
    return cache, array, tmp_path / "c" / "k.npy", tmp_path / "c" / "k.json"


def _load_warns(cache, rows, caplog, *fragments):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_facerec.benchmarks.cache"):
        assert cache.load("k", rows) is None
    (record,) = caplog.records  # exactly one line per bad entry
    message = record.getMessage()
    assert "k.npy" in message and message.endswith("recomputing it")
    for fragment in fragments:
        assert fragment in message, message


def test_roundtrip_keeps_the_metadata_and_stores_a_checksum(tmp_path):
    cache, array, npy, sidecar = _saved(tmp_path)
    got, meta = cache.load("k", 6)
    assert np.array_equal(got, array) and meta == {"n_no_face": 1}
    assert json.loads(sidecar.read_text())["array_sha256"] == array_checksum(array)


def test_an_array_replaced_by_random_finite_values_is_recomputed(tmp_path, caplog):
    cache, array, npy, _ = _saved(tmp_path)
    np.save(npy, np.random.default_rng(1).normal(size=array.shape).astype(np.float32))  # same shape, dtype, all finite
    _load_warns(cache, 6, caplog, "does not match the checksum")
    np.save(npy, array.astype(np.float64))  # same values, another dtype: another array
    _load_warns(cache, 6, caplog, "checksum")


def test_truncated_or_garbled_npy_is_recomputed(tmp_path, caplog):
    cache, array, npy, _ = _saved(tmp_path)
    whole = npy.read_bytes()
    npy.write_bytes(whole[:-5])
    _load_warns(cache, 6, caplog, "unreadable", "header says (6, 4)", "91 bytes")
    npy.write_bytes(whole[:40])  # cut inside the header
    _load_warns(cache, 6, caplog, "unreadable")
    npy.write_bytes(b"\x00not a numpy file at all")
    _load_warns(cache, 6, caplog, "unreadable")
    np.save(npy, np.array([[object()]] * 6, dtype=object), allow_pickle=True)
    _load_warns(cache, 6, caplog, "Python objects")


def test_a_header_claiming_terabytes_allocates_nothing(tmp_path, caplog):
    # np.load would try to allocate 3.6 TiB for this 224-byte file (MemoryError, or worse under overcommit).
    cache, array, npy, _ = _saved(tmp_path)
    whole = npy.read_bytes()
    end = whole.index(b"\n")
    header = whole[10:end].replace(b"(6, 4)", b"(999999, 999999)")
    npy.write_bytes(whole[:10] + header.rstrip(b" ").ljust(end - 10, b" ") + whole[end:])
    _load_warns(cache, 6, caplog, "header says (999999, 999999)")


@pytest.mark.parametrize(
    "sidecar_bytes, fragment",
    [(b'{"n_no_face": 1', "JSONDecodeError"), (b"\xff\xfe garbage", "UnicodeDecodeError"), (b"[1, 2]", "not a JSON object"),
     (b'{"n_no_face": 1}', "checksum")],  # the last: an entry written before checksums (or its field deleted)
)
def test_truncated_garbled_or_unchecked_metadata_is_recomputed(tmp_path, caplog, sidecar_bytes, fragment):
    cache, _, _, sidecar = _saved(tmp_path)
    sidecar.write_bytes(sidecar_bytes)
    _load_warns(cache, 6, caplog, fragment)


def test_a_missing_sidecar_or_wrong_row_count_is_recomputed_and_a_missing_array_is_silent(tmp_path, caplog):
    cache, _, npy, sidecar = _saved(tmp_path)
    _load_warns(cache, 7, caplog, "shape (6, 4), expected (7, D)")
    sidecar.unlink()
    _load_warns(cache, 6, caplog, "unreadable", "FileNotFoundError")
    npy.unlink()
    caplog.clear()
    assert cache.load("k", 6) is None and caplog.records == []  # never cached: a plain miss


def test_checksum_cost_for_an_lfw_sized_cache_entry():
    # 13,233 LFW images x 512 float32 = 27 MB: measured ~20 ms (sha256) on the dev box; a loose bound here.
    array = np.ones((13233, 512), np.float32)
    start = time.perf_counter()
    array_checksum(array)
    assert time.perf_counter() - start < 1.0
