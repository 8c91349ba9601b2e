"""Hostile RecordIO files (issue 13): each refusal is one RecordIOError naming the file and the byte offset."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
from PIL import Image

from hf_facerec.cli import main as cli_main
from hf_facerec.data.convert import recordio_to_parquet, stream_recordio
from hf_facerec.data.recordio import RECORDIO_MAGIC, RecordIOError, RecordIOReader, pack_record
from hf_facerec.data.recordio_write import _frame, write_recordio


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), seed, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def three(tmp_path):
    """A valid InsightFace .rec + .idx holding 3 images of 2 identities."""
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, [(0, _jpeg(1)), (0, _jpeg(2)), (1, _jpeg(3))])
    return rec, idx


def _convert_cli(source, out, capsys) -> tuple[int, str]:
    code = cli_main(["convert", str(source), str(out), "--quiet"])
    return code, capsys.readouterr().err


def test_empty_idx_beside_a_valid_rec_is_refused(three, tmp_path, capsys):
    rec, idx = three
    assert len(RecordIOReader(rec)) == 3 and sum(1 for _ in RecordIOReader(rec)) == 3
    idx.write_text("")
    with pytest.raises(RecordIOError, match=f"{idx} is empty but {rec} holds"):
        RecordIOReader(rec)  # the default <rec>.idx is picked up, so it is checked too
    code, err = _convert_cli(rec, tmp_path / "out", capsys)
    assert code == 2 and f"{idx} is empty" in err and "Traceback" not in err
    idx.unlink()  # no index: one sequential scan, all 3 images
    assert len(RecordIOReader(rec)) == 3


def test_index_of_another_file_is_refused(three, tmp_path):
    rec, idx = three
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines[:-2]) + "\n")  # an index missing the last records
    with pytest.raises(RecordIOError, match=rf"train.idx:\d+: the last indexed record .* ends at byte \d+ but .* holds"):
        RecordIOReader(rec)
    idx.write_text("\n".join(lines[1:]) + "\n")  # nothing at offset 0
    with pytest.raises(RecordIOError, match="no record at offset 0"):
        RecordIOReader(rec)


@pytest.mark.parametrize("offset, line", [(-8, 2), (10**15, 2), (6, 2)])
def test_index_offsets_outside_or_misaligned_are_refused_before_reading(three, offset, line):
    rec, idx = three
    lines = idx.read_text().splitlines()
    lines[1] = f"1\t{offset}"
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError, match=rf"train.idx:{line}: offset {offset} of key 1 lies outside .*train.rec"):
        RecordIOReader(rec)


def test_zero_byte_rec_is_an_error_not_an_empty_dataset(tmp_path, capsys):
    rec = tmp_path / "train.rec"
    rec.write_bytes(b"")
    with pytest.raises(RecordIOError, match=f"{rec}: empty RecordIO file \\(0 bytes\\)"):
        RecordIOReader(rec)
    with pytest.raises(RecordIOError, match=f"{rec}: empty RecordIO file"):
        recordio_to_parquet(rec, None, tmp_path / "o", progress=False)
    code, err = _convert_cli(rec, tmp_path / "o2", capsys)
    assert code == 2 and "empty RecordIO file" in err and "train.rec" in err


def _header_then_image(path, header_label) -> None:
    with open(path, "wb") as handle:
        handle.write(_frame(pack_record(np.asarray(header_label, np.float32), b"")))
        handle.write(_frame(pack_record(0.0, _jpeg(1))))


@pytest.mark.parametrize("first", [np.nan, np.inf, -3.0, 0.0, 2.5])
def test_bad_insightface_header_label_names_file_and_offset(tmp_path, first, capsys):
    rec = tmp_path / "train.rec"
    _header_then_image(rec, [first, 3.0])
    message = re.escape(f"{rec}: the InsightFace header (key 0, offset 0) gives {first!r} as the key after the images")
    with pytest.raises(RecordIOError, match=message):
        len(RecordIOReader(rec))
    with pytest.raises(RecordIOError, match="offset 0"):
        list(RecordIOReader(rec))
    code, err = _convert_cli(rec, tmp_path / "o", capsys)
    assert code == 2 and "InsightFace header (key 0, offset 0)" in err


@pytest.mark.parametrize("label", [np.nan, np.inf, -1.0, 0.5])
def test_bad_image_label_names_file_and_offset(tmp_path, label):
    rec = tmp_path / "train.rec"
    write_recordio(rec, tmp_path / "train.idx", [(0.0, _jpeg(1)), (label, _jpeg(2))], header_record=False)
    second = RecordIOReader(rec).offset_of(1)
    with pytest.raises(RecordIOError, match=rf"{rec}: record 1 at offset {second}: label .* not a non-negative"):
        recordio_to_parquet(rec, None, tmp_path / "o", progress=False)
    (tmp_path / "train.idx").unlink()  # the sequential (no index) stream names the offset too
    with pytest.raises(RecordIOError, match=rf"{rec}: record at offset {second}: label"):
        list(stream_recordio(rec))


def test_short_payload_and_absurd_lengths_name_file_and_offset(tmp_path):
    rec = tmp_path / "train.rec"
    good = _frame(pack_record(0.0, _jpeg(1)))
    rec.write_bytes(good + _frame(b"tiny"))  # a payload shorter than the 24-byte IRHeader
    with pytest.raises(RecordIOError, match=rf"{rec}: record at offset {len(good)}: payload of 4 bytes"):
        list(RecordIOReader(rec))
    # A part header announcing 2**29 - 1 bytes in a tiny file: refused from the header, nothing allocated.
    rec.write_bytes(good + struct.pack("<II", RECORDIO_MAGIC, (1 << 29) - 1) + b"\0" * 8)
    with pytest.raises(RecordIOError, match=rf"truncated RecordIO file {rec}: record at offset {len(good)} needs"):
        list(RecordIOReader(rec))
    # Labels announced beyond the payload.
    payload = struct.pack("<IfQQ", 10**6, 0.0, 0, 0) + b"abcd"
    rec.write_bytes(good + _frame(payload))
    with pytest.raises(RecordIOError, match=rf"offset {len(good)}: IRHeader announces 1000000 labels"):
        list(RecordIOReader(rec))
