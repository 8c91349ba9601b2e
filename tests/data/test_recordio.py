"""RecordIO: the real MXNet byte format written and read back, truncation errors, Parquet conversion."""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

import datasets
from hf_facerec.cli import main as cli_main
from hf_facerec.data.convert import recordio_to_parquet, stream_recordio
from hf_facerec.data.recordio import (
    RECORDIO_MAGIC,
    RecordIOError,
    RecordIOReader,
    pack_record,
    unpack_record,
)
from hf_facerec.data.recordio_write import write_recordio

MAGIC = struct.pack("<I", RECORDIO_MAGIC)


def _encode(fmt: str, seed: int, size=(14, 10)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _png_holding_magic(seed: int) -> bytes:
    """A valid PNG whose bytes hold the RecordIO magic at a 4-aligned payload offset (in a tEXt chunk),
    so the writer must split its record into parts and the reader must glue them back."""
    from PIL.PngImagePlugin import PngInfo

    pixels = np.random.default_rng(seed).integers(0, 256, (14, 10, 3), dtype=np.uint8)
    for pad in range(4):
        info = PngInfo()
        info.add_text("k", "x" * pad + MAGIC.decode("latin1"))
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
        data = buffer.getvalue()
        if (24 + data.index(MAGIC)) % 4 == 0:  # the image starts after the 24-byte IRHeader
            return data
    raise AssertionError("unreachable: one of 4 paddings aligns the magic")


def _items():
    """Two identities' worth of PNG/JPEG images, a multi-label record and a payload holding the magic."""
    return [
        (0.0, _encode("PNG", 0)),
        (0.0, _encode("JPEG", 1)),
        (np.array([1.0, 7.5], np.float32), _encode("PNG", 2)),  # flag = 2: identity 1, an extra value
        (1.0, _png_holding_magic(3)),  # aligned magic -> a multi-part record
        (2.0, _encode("JPEG", 4)),
    ]


def _same_label(a, b) -> bool:
    return np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32)) and np.ndim(a) == np.ndim(b)


@pytest.fixture
def rec(tmp_path):
    rec_path, idx_path = tmp_path / "train.rec", tmp_path / "train.idx"
    assert write_recordio(rec_path, idx_path, _items()) == 5
    with open(rec_path, "rb") as handle:  # record 4 (the magic PNG) really is split into parts
        handle.seek(RecordIOReader(rec_path, idx_path).offset_of(4) + 4)
        assert struct.unpack("<I", handle.read(4))[0] >> 29 == 1
    return rec_path, idx_path


def test_single_record_bytes_known_answer(tmp_path):
    write_recordio(tmp_path / "a.rec", tmp_path / "a.idx", [(3.0, b"abc")], header_record=False)
    payload = struct.pack("<IfQQ", 0, 3.0, 0, 0) + b"abc"  # 27 bytes -> 1 padding byte
    assert (tmp_path / "a.rec").read_bytes() == MAGIC + struct.pack("<I", 27) + payload + b"\0"
    assert (tmp_path / "a.idx").read_text() == "0\t0\n"


def test_magic_inside_payload_is_split_like_dmlc(tmp_path):
    write_recordio(tmp_path / "m.rec", None, [(0.0, MAGIC + b"abcd")], header_record=False)
    head = struct.pack("<IfQQ", 0, 0.0, 0, 0)  # 24 bytes, so the magic sits at an aligned offset
    expected = MAGIC + struct.pack("<I", (1 << 29) | 24) + head + MAGIC + struct.pack("<I", (3 << 29) | 4) + b"abcd"
    assert (tmp_path / "m.rec").read_bytes() == expected
    assert RecordIOReader(tmp_path / "m.rec").read(0) == (0.0, MAGIC + b"abcd")


def test_pack_unpack_multi_label():
    label, image = unpack_record(pack_record(np.array([4, 2.5]), b"img"))
    assert label.dtype == np.float32 and label.tolist() == [4.0, 2.5] and image == b"img"
    with pytest.raises(RecordIOError, match="IRHeader"):
        unpack_record(b"short")
    with pytest.raises(ValueError, match="at least one"):
        pack_record(np.array([]), b"")


def test_reads_back_exactly(rec):
    rec_path, idx_path = rec
    with RecordIOReader(rec_path, idx_path) as reader:
        # header + 5 images + 3 identity records (images 1-2, 3-4, 5)
        assert reader.keys.tolist() == list(range(9))
        assert reader.image_keys.tolist() == [1, 2, 3, 4, 5] and len(reader) == 5
        assert reader.read_header().tolist() == [6.0, 9.0]
        assert [reader.read(k)[0].tolist() for k in (6, 7, 8)] == [[1, 3], [3, 5], [5, 6]]
        for key, (label, image) in zip(reader.image_keys, _items()):
            got_label, got_image = reader.read(key)
            assert _same_label(got_label, label) and got_image == image
        lines = [line.split("\t") for line in idx_path.read_text().splitlines()]
        assert [int(k) for k, _ in lines] == list(range(9))
        assert [reader.offset_of(int(k)) for k, _ in lines] == [int(o) for _, o in lines]
        with pytest.raises(KeyError, match="key 99"):
            reader.read(99)


def test_sequential_scan_equals_indexed_reads(rec):
    rec_path, idx_path = rec
    reader = RecordIOReader(rec_path, idx_path)
    scanned = list(reader)
    indexed = [reader.read(k) for k in reader.image_keys]
    assert len(scanned) == len(indexed) == 5
    assert all(_same_label(a[0], b[0]) and a[1] == b[1] for a, b in zip(scanned, indexed))
    assert reader[-1][1] == indexed[-1][1]
    # Without an index the offsets come from a header-only scan and must match the .idx ones.
    idx_path.unlink()
    unindexed = RecordIOReader(rec_path)
    assert unindexed.idx_path is None
    assert [unindexed.offset_of(k) for k in range(9)] == [reader.offset_of(k) for k in range(9)]
    # A pickled reader (DataLoader workers) reopens its file lazily.
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.read(3)[1] == indexed[2][1]


def test_without_header_record(tmp_path):
    write_recordio(tmp_path / "n.rec", tmp_path / "n.idx", _items(), header_record=False)
    reader = RecordIOReader(tmp_path / "n.rec")
    assert reader.read_header() is None and reader.image_keys.tolist() == [0, 1, 2, 3, 4]
    assert [image for _, image in reader] == [image for _, image in _items()]


def test_non_contiguous_identities_write_no_identity_records(tmp_path):
    items = [(0.0, b"a"), (1.0, b"b"), (0.0, b"c")]
    write_recordio(tmp_path / "s.rec", tmp_path / "s.idx", items)
    reader = RecordIOReader(tmp_path / "s.rec")
    assert reader.read_header().tolist() == [4.0, 4.0] and reader.keys.tolist() == [0, 1, 2, 3]


def test_header_counts_must_stay_exact_in_float32(tmp_path, monkeypatch):
    import hf_facerec.data.recordio_write as recordio_write

    monkeypatch.setattr(recordio_write, "_FLOAT32_EXACT", 4)  # stands in for 2**24 records
    with pytest.raises(ValueError, match="header_record=False"):
        write_recordio(tmp_path / "big.rec", None, [(0.0, b"x")] * 4)
    assert write_recordio(tmp_path / "big.rec", None, [(0.0, b"x")] * 4, header_record=False) == 4


def test_truncated_file_names_the_offset(rec):
    rec_path, idx_path = rec
    reader = RecordIOReader(rec_path, idx_path)
    last = reader.offset_of(8)
    data = rec_path.read_bytes()
    rec_path.write_bytes(data[:-2])  # the last record loses 2 bytes of its payload
    with pytest.raises(RecordIOError, match=f"truncated RecordIO file .* offset {last}"):
        RecordIOReader(rec_path, idx_path).read(8)
    cut = reader.offset_of(3) + 20  # inside image record 3
    rec_path.write_bytes(data[:cut])
    with pytest.raises(RecordIOError, match="lies outside"):
        RecordIOReader(rec_path, idx_path)  # the index points past the end
    idx_path.unlink()  # no index: the sequential scan meets the cut record
    with pytest.raises(RecordIOError, match=f"truncated RecordIO file .* offset {reader.offset_of(3)}"):
        list(RecordIOReader(rec_path))


def test_bad_magic_and_bad_index(rec, tmp_path):
    rec_path, idx_path = rec
    data = bytearray(rec_path.read_bytes())
    offset = RecordIOReader(rec_path, idx_path).offset_of(2)
    data[offset] ^= 0xFF
    rec_path.write_bytes(bytes(data))
    with pytest.raises(RecordIOError, match=f"bad RecordIO magic .* offset {offset}"):
        RecordIOReader(rec_path, idx_path).read(2)
    idx_path.write_text("0\tzero\n")
    with pytest.raises(RecordIOError, match="key<TAB>offset"):
        RecordIOReader(rec_path, idx_path)
    with pytest.raises(FileNotFoundError):
        RecordIOReader(tmp_path / "missing.rec")


def _decoded_rows(dataset):
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    return [(row["image"]["bytes"], row["label"]) for row in dataset]


def test_parquet_conversion_round_trips_and_skips_corrupt(tmp_path):
    good = _items()
    corrupt = (5.0, _encode("JPEG", 9)[:60])  # a JPEG cut short: the header parses, decoding fails
    items = good[:3] + [corrupt] + good[3:]
    write_recordio(tmp_path / "c.rec", tmp_path / "c.idx", items)
    out = tmp_path / "parquet"
    report = recordio_to_parquet(tmp_path / "c.rec", None, out, shard_size=2, row_group_size=3, progress=False)
    assert report.num_images == 5 and report.num_skipped == 1 and report.skipped == ["key 4"]
    assert report.num_classes == 3
    assert [p.rsplit("/", 1)[1] for p in report.shards] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    loaded = datasets.load_dataset("parquet", data_dir=str(out), split="train")
    assert loaded.features["image"] == datasets.Image() and loaded.features["label"] == datasets.Value("int64")
    assert _decoded_rows(loaded) == [(image, int(np.ravel(label)[0])) for label, image in good]
    assert loaded[2]["image"].size == (10, 14)
    # Threads give the same result; an occupied output folder needs overwrite=True.
    with pytest.raises(FileExistsError, match="overwrite"):
        recordio_to_parquet(tmp_path / "c.rec", None, out, progress=False)
    again = recordio_to_parquet(tmp_path / "c.rec", None, out, num_threads=2, overwrite=True, progress=False)
    assert again.num_images == 5 and len(again.shards) == 1


def test_conversion_rejects_non_integer_labels_and_bad_sizes(tmp_path):
    write_recordio(tmp_path / "f.rec", None, [(0.5, _encode("PNG", 0))], header_record=False)
    with pytest.raises(ValueError, match="not a non-negative integer"):
        recordio_to_parquet(tmp_path / "f.rec", None, tmp_path / "o1", progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        recordio_to_parquet(tmp_path / "f.rec", None, tmp_path / "o2", shard_size=0, progress=False)


def test_stream_recordio_matches_reader(rec):
    rec_path, idx_path = rec
    expected = [(image, int(np.ravel(label)[0])) for label, image in _items()]
    assert _decoded_rows(stream_recordio(rec_path, idx_path, num_shards=2)) == expected
    idx_path.unlink()
    assert _decoded_rows(stream_recordio(rec_path)) == expected


def test_cli_convert(rec, tmp_path, capsys):
    rec_path, _ = rec
    assert cli_main(["convert", str(rec_path.parent), str(tmp_path / "cli_out"), "--quiet", "--threads", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "recordio" and summary["num_images"] == 5 and summary["num_skipped"] == 0
    assert len(datasets.load_dataset("parquet", data_dir=str(tmp_path / "cli_out"), split="train")) == 5
