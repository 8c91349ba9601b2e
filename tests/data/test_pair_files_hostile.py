"""Hostile pair lists (issue 13): folds never wrap, duplicated columns, BOMs, Latin-1, headers announcing 1e18 pairs.

Each refusal is one ValueError naming the file (and line or byte offset); each accepted variant gives the known pairs.
"""

from __future__ import annotations

import codecs
import pickle
import re

import numpy as np
import pytest

from hf_facerec.data._text import TextFileError
from hf_facerec.data.pairs import load_bin_pairs, load_csv_pairs, load_lfw_pairs, make_pair_dataset, pair_columns
from hf_facerec.data.pairset import FOLD_MAX

CSV = "path1,path2,label,fold\na.jpg,b.jpg,1,0\nc.jpg,d.jpg,0,1\n"


def _csv(tmp_path, text: str | bytes, name: str = "pairs.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _rows(dataset):
    return list(zip(*pair_columns(dataset), dataset["is_same"], dataset["fold"]))


@pytest.mark.parametrize("fold", ["99999999999", str(FOLD_MAX + 1), "9" * 5000, "\u00b2", "-1", "1.0"])
def test_csv_fold_out_of_range_is_refused_not_wrapped(tmp_path, fold):
    path = _csv(tmp_path, f"path1,path2,label,fold\na.jpg,b.jpg,1,0\nc.jpg,d.jpg,0,{fold}\n")
    with pytest.raises(ValueError, match=rf"{path}:3: fold must be an integer in \[0, {FOLD_MAX}\]"):
        load_csv_pairs(path, check_files=False)


def test_largest_fold_is_kept_exactly(tmp_path):
    path = _csv(tmp_path, f"path1,path2,label,fold\na.jpg,b.jpg,1,{FOLD_MAX}\n")
    assert load_csv_pairs(path, check_files=False)["fold"] == [FOLD_MAX]
    with pytest.raises(ValueError, match="fold 99999999999 is out of range"):  # int32 would give 1215752191
        make_pair_dataset(["a"], ["b"], [True], np.array([99999999999]))


def test_duplicated_column_is_refused_naming_it(tmp_path):
    path = _csv(tmp_path, "path1,path2,path1,label\na.jpg,b.jpg,c.jpg,1\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: column(s) ['path1'] appear more than once")):
        load_csv_pairs(path, check_files=False)
    # An unknown column given twice is ignored, as every unknown column is.
    path = _csv(tmp_path, "path1,path2,label,note,note\na.jpg,b.jpg,1,x,y\n")
    assert len(load_csv_pairs(path, check_files=False)) == 1


@pytest.mark.parametrize(
    "encode", [lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), lambda t: t.encode("utf-16")], ids=["utf-8 BOM", "utf-16"]
)
def test_excel_csv_with_a_bom_reads_like_plain_utf8(tmp_path, encode):
    expected = _rows(load_csv_pairs(_csv(tmp_path, CSV, "plain.csv"), check_files=False))
    path = _csv(tmp_path, encode(CSV.replace("\n", "\r\n")), "excel.csv")
    assert _rows(load_csv_pairs(path, check_files=False)) == expected
    assert expected == [(str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), True, 0),
                        (str(tmp_path / "c.jpg"), str(tmp_path / "d.jpg"), False, 1)]


def test_latin1_text_is_refused_naming_file_line_and_offset(tmp_path):
    text = "path1,path2,label\na.jpg,b.jpg,1\nJos\u00e9.jpg,d.jpg,0\n".encode("latin-1")
    path = _csv(tmp_path, text)
    offset = text.index(b"\xe9")
    with pytest.raises(TextFileError, match=rf"{path}:3: not UTF-8 text \(byte 0xe9 at offset {offset}\)"):
        load_csv_pairs(path, check_files=False)
    pairs_txt = tmp_path / "pairs.txt"
    pairs_txt.write_bytes("1 1\nJos\u00e9 1 2\nA 1 B 1\n".encode("latin-1"))
    with pytest.raises(TextFileError, match=rf"{pairs_txt}:2: not UTF-8 text \(byte 0xe9 at offset 7\)"):
        load_lfw_pairs(pairs_txt, tmp_path, check_files=False)
    assert issubclass(TextFileError, ValueError)


def test_pairs_txt_with_a_bom_reads_like_plain(tmp_path):
    body = "1 1\nAnn 1 2\nAnn 1 Bob 1\n"
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text(body)
    bom.write_bytes(codecs.BOM_UTF8 + body.encode())
    a, b = (load_lfw_pairs(p, tmp_path, check_files=False) for p in (plain, bom))
    assert a["identity1"] == b["identity1"] == ["Ann", "Ann"] and a["is_same"] == b["is_same"] == [True, False]


def test_40_byte_header_announcing_1e18_pairs_allocates_nothing(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("999999999 999999999\nAnn 1 2\nAnn 1 Bob 1\n")  # the file: MemoryError (1.73 EiB) before
    assert path.stat().st_size == 40
    with pytest.raises(ValueError, match=rf"{path}:1: header announces 999999999 fold\(s\) of 999999999 genuine"):
        load_lfw_pairs(path, tmp_path, check_files=False)


@pytest.mark.parametrize(
    "text, line",
    [("\u00b2 3\nAnn 1 2\n", 1), ("Ann 1 " + "9" * 5000 + "\n", 1), ("Ann 1 2\nAnn +1 Bob 1_0\n", 2), ("Ann 1 -2\n", 1)],
)
def test_pairs_txt_numbers_are_plain_non_negative_integers(tmp_path, text, line):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{path}:{line}: expected 'name n1 n2'"):
        load_lfw_pairs(path, tmp_path, check_files=False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("path1,path2,label\na.jpg,,1\n", ":2: path1 and path2 must not be empty"),
        ("path1,path2,label\na.jpg\n", ":2: path1 and path2 must not be empty"),  # a short row
        ("path1,path2,label\na.jpg,\"" + "x" * 200_000 + "\",1\n", ":2: not a readable CSV: field larger"),
    ],
)
def test_csv_rows_malformed(tmp_path, text, message):
    path = _csv(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{path}{message}")):
        load_csv_pairs(path, check_files=False)


def test_bin_errors_name_the_file(tmp_path):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c", b"d"], [[True], [True, False]])))
    with pytest.raises(ValueError, match=f"{path}: issame_list is not a list of booleans"):
        load_bin_pairs(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], ["yes"])))
    with pytest.raises(ValueError, match=f"{path}: is_same must hold booleans"):
        load_bin_pairs(path, num_folds=1)
    path.write_bytes(pickle.dumps(([b"a", b"b"], [True])))
    with pytest.raises(ValueError, match=f"{path}: num_folds must be in"):
        load_bin_pairs(path)  # 1 pair cannot make 10 folds
    path.write_bytes(pickle.dumps(([b"a", 3], [True])))
    with pytest.raises(ValueError, match=f"{path}: image 1 of the .bin is a int"):
        load_bin_pairs(path, num_folds=1)
