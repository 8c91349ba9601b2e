"""Pair readers: the one schema, safe .bin loading, LFW pairs.txt, CSV and RFW layouts."""

from __future__ import annotations

import builtins
import codecs
import io
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

import datasets
from hf_facerec.data.pairs import (
    PAIR_FEATURES,
    UnsafePickleError,
    load_bin_pairs,
    load_csv_pairs,
    load_lfw_pairs,
    load_rfw_pairs,
    make_pair_dataset,
)
from hf_facerec.data.pairset import contiguous_folds


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _raw(dataset):
    return dataset.cast_column("image1", datasets.Image(decode=False)).cast_column("image2", datasets.Image(decode=False))


# ---- schema ----------------------------------------------------------------------------------------


def test_make_pair_dataset_schema_and_storage():
    dataset = make_pair_dataset(["a.jpg", b"\xff\xd8"], [b"xy", "b.jpg"], [1, 0], [0, 3], "g", ["A", "B"], None)
    assert dataset.features == PAIR_FEATURES
    row = _raw(dataset)[0]
    assert row["image1"] == {"bytes": None, "path": "a.jpg"} and row["image2"] == {"bytes": b"xy", "path": None}
    assert dataset["is_same"] == [True, False] and dataset["fold"] == [0, 3]
    assert dataset["group"] == ["g", "g"] and dataset["identity1"] == ["A", "B"] and dataset["identity2"] == ["", ""]
    assert make_pair_dataset([], [], np.zeros(0, bool)).num_rows == 0


@pytest.mark.parametrize(
    "args, message",
    [
        ((["a"], ["b", "c"], [True]), "images2"),
        ((["a"], ["b"], [2]), "is_same"),
        ((["a"], ["b"], [True, False]), "shape"),
        ((["a"], ["b"], [True], [-1]), "folds"),
        ((["a"], ["b"], [True], [0.5]), "folds"),
        ((["a"], ["b"], [True], None, ["x", "y"]), "groups"),
        (([3], ["b"], [True]), "file path or encoded bytes"),
    ],
)
def test_make_pair_dataset_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        make_pair_dataset(*args)


def test_contiguous_folds_match_kfold():
    assert contiguous_folds(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    from sklearn.model_selection import KFold

    for count in (6000, 7001):
        expected = np.empty(count, int)
        for fold, (_, test) in enumerate(KFold(10, shuffle=False).split(np.arange(count))):
            expected[test] = fold
        assert np.array_equal(contiguous_folds(count), expected)
    with pytest.raises(ValueError, match="num_folds"):
        contiguous_folds(5, 10)


# ---- .bin ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("issame_kind", ["bool", "numpy_bool", "ndarray"])
def test_bin_round_trip(tmp_path, protocol, issame_kind):
    images = [_jpeg(i) for i in range(40)]
    issame = [i % 3 == 0 for i in range(20)]
    stored = {"bool": issame, "numpy_bool": [np.bool_(v) for v in issame], "ndarray": np.array(issame)}[issame_kind]
    bins = images[:39] + [np.frombuffer(images[39], np.uint8)]  # some .bin files hold uint8 arrays
    path = tmp_path / "set.bin"
    path.write_bytes(pickle.dumps((bins, stored), protocol=protocol))
    dataset = load_bin_pairs(path)
    raw = _raw(dataset)
    assert [row["image1"]["bytes"] for row in raw] == images[0::2]
    assert [row["image2"]["bytes"] for row in raw] == images[1::2]
    assert dataset["is_same"] == issame and dataset["fold"] == contiguous_folds(20).tolist()
    assert dataset[0]["image1"].size == (8, 8)


def _python2_pickle(bins: list[bytes], issame: list[bool]) -> bytes:
    """The bytes Python 2's ``pickle.dump((bins, issame), f, protocol=2)`` writes: str is BINSTRING."""
    out = [b"\x80\x02", b"]", b"("]
    for data in bins:
        out.append(b"T" + struct.pack("<I", len(data)) + data)
    out += [b"e", b"]", b"("] + [b"\x88" if v else b"\x89" for v in issame] + [b"e", b"\x86", b"."]
    return b"".join(out)


def test_bin_python2_file_needs_bytes_encoding(tmp_path):
    images = [_jpeg(i) for i in range(4)]  # JPEG bytes are not ASCII
    path = tmp_path / "py2.bin"
    path.write_bytes(_python2_pickle(images, [True, False]))
    for encoding in ("auto", "bytes", "latin1"):
        dataset = load_bin_pairs(path, encoding=encoding, num_folds=2)
        assert _raw(dataset)[1]["image2"]["bytes"] == images[3] and dataset["fold"] == [0, 1]
    with pytest.raises(UnicodeDecodeError):
        load_bin_pairs(path, encoding="ASCII")


class _Evil:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "make_payload, refused",
    [
        (lambda marker: _Evil(os.system, f"touch {marker}"), r"(posix|os)\.system"),
        (lambda marker: _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()"), r"(builtins|__builtin__)\.exec"),
        (lambda marker: _Evil(subprocess.call, ["touch", str(marker)]), r"(subprocess|commands)\.call"),  # protocol 2 writes Python 2 names
        (lambda marker: _Evil(builtins.eval, "1"), r"(builtins|__builtin__)\.eval"),
        (lambda marker: _Evil(codecs.encode, "abc", "rot13"), "_codecs.encode"),
        (lambda marker: np.array([b"a", b"b"], dtype=object), "object dtype"),
    ],
)
@pytest.mark.parametrize("where", ["image", "issame", "top"])
def test_malicious_bin_executes_nothing(tmp_path, make_payload, refused, where):
    marker = tmp_path / "pwned"
    payload = make_payload(marker)
    content = {
        "image": ([_jpeg(0), payload], [True]),
        "issame": ([_jpeg(0), _jpeg(1)], [payload]),
        "top": payload,
    }[where]
    for protocol in (2, 4):
        path = tmp_path / "evil.bin"
        path.write_bytes(pickle.dumps(content, protocol=protocol))
        with pytest.raises(UnsafePickleError, match=refused):
            load_bin_pairs(path)
        assert not marker.exists()
    assert issubclass(UnsafePickleError, ValueError)


def test_the_malicious_payload_is_live_under_plain_pickle(tmp_path):
    # Guards the test above: the same bytes DO run code under pickle.load, so "nothing ran" means something.
    marker = tmp_path / "ran"
    data = pickle.dumps(([_jpeg(0), _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()")], [True]))
    pickle.loads(data)
    assert marker.exists()


def test_malformed_bin(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        load_bin_pairs(path)
    path.write_bytes(pickle.dumps([b"a"]))
    with pytest.raises(ValueError, match=r"\(bins, issame_list\)"):
        load_bin_pairs(path)
    path.write_bytes(pickle.dumps((b"ab", [True])))
    with pytest.raises(ValueError, match="bins must be a list"):
        load_bin_pairs(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], [True]))[:-5])
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_bin_pairs(path)
    path.write_bytes(pickle.dumps(([b"a", "é"], [True]), protocol=4))  # a text str is not an image
    assert _raw(load_bin_pairs(path, num_folds=1))[0]["image2"]["bytes"] == "é".encode("latin1")
    path.write_bytes(pickle.dumps(([1, 2], [True])))
    with pytest.raises(ValueError, match="expected encoded bytes"):
        load_bin_pairs(path, num_folds=1)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_bin_pairs(path)
    with pytest.raises(FileNotFoundError):
        load_bin_pairs(tmp_path / "missing.bin")


# ---- LFW pairs.txt ---------------------------------------------------------------------------------


def _make_images(root, names_numbers):
    for name, number in names_numbers:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"{name}_{number:04d}.jpg").write_bytes(b"jpeg")


def test_lfw_pairs_small(tmp_path):
    images = tmp_path / "images"
    _make_images(images, [("Ann", 1), ("Ann", 2), ("Bo", 1), ("Cy", 3), ("Cy", 4), ("Di", 1)])
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t2\tBo\t1\nCy\t3\t4\nCy\t3\tDi\t1\n")
    dataset = load_lfw_pairs(tmp_path / "pairs.txt", images)
    assert dataset["is_same"] == [True, False, True, False] and dataset["fold"] == [0, 0, 1, 1]
    assert dataset["identity1"] == ["Ann", "Ann", "Cy", "Cy"] and dataset["identity2"] == ["Ann", "Bo", "Cy", "Di"]
    assert _raw(dataset)[1]["image2"]["path"] == str(images / "Bo" / "Bo_0001.jpg")
    (images / "Di" / "Di_0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 pair image\(s\) missing .*Di_0001.jpg"):
        load_lfw_pairs(tmp_path / "pairs.txt", images)
    assert len(load_lfw_pairs(tmp_path / "pairs.txt", images, check_files=False)) == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("2\t1\nAnn\t1\t2\nAnn\t2\tBo\t1\n", "header announces 2 fold"),
        ("1\t2\nAnn\t1\t2\nAnn\t2\tBo\t1\n", "header announces 1 fold"),
        ("1\t1\nAnn\t1\nAnn\t2\tBo\t1\n", ":2: expected"),
        ("1\t1\nAnn\tx\t2\nAnn\t2\tBo\t1\n", ":2: expected"),
        ("", "no pairs"),
    ],
)
def test_lfw_pairs_malformed(tmp_path, text, message):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_lfw_pairs(tmp_path / "pairs.txt", tmp_path, check_files=False)


def test_real_lfw_pairs(shared_data):
    lfw = shared_data / "lfw"
    dataset = load_lfw_pairs(lfw / "pairs.txt", lfw / "images")  # checks every image exists
    assert len(dataset) == 6000
    folds, same = np.array(dataset["fold"]), np.array(dataset["is_same"])
    assert np.bincount(folds).tolist() == [600] * 10
    assert [int(same[folds == f].sum()) for f in range(10)] == [300] * 10
    identity1, identity2 = np.array(dataset["identity1"]), np.array(dataset["identity2"])
    assert np.array_equal(identity1 == identity2, same)
    first = _raw(dataset)[0]  # pairs.txt line 2: "Abel_Pacheco 1 4"
    assert first["image1"]["path"].endswith("Abel_Pacheco/Abel_Pacheco_0001.jpg")
    assert first["image2"]["path"].endswith("Abel_Pacheco/Abel_Pacheco_0004.jpg")


# ---- CSV -------------------------------------------------------------------------------------------


def test_csv_pairs(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"x")
    absolute = tmp_path / "imgs" / "c.jpg"
    (tmp_path / "pairs.csv").write_text(
        f"path1, path2, label, group, fold, extra\nimgs/a.jpg,imgs/b.jpg,1,f,2,z\nimgs/a.jpg,{absolute},false,m,0,z\n"
    )
    dataset = load_csv_pairs(tmp_path / "pairs.csv")
    assert dataset["is_same"] == [True, False] and dataset["group"] == ["f", "m"] and dataset["fold"] == [2, 0]
    raw = _raw(dataset)
    assert raw[0]["image1"]["path"] == str(tmp_path / "imgs" / "a.jpg") and raw[1]["image2"]["path"] == str(absolute)
    assert dataset["identity1"] == ["", ""]
    (tmp_path / "rel.csv").write_text("path1,path2,label,identity1,identity2\na.jpg,b.jpg,same,A,B\n")
    other = load_csv_pairs(tmp_path / "rel.csv", root=tmp_path / "imgs")
    assert _raw(other)[0]["image2"]["path"] == str(tmp_path / "imgs" / "b.jpg")
    assert other["fold"] == [0] and other["group"] == [""] and other["identity2"] == ["B"]


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("path1,label\na,1\n", ValueError, r"missing column\(s\) \['path2'\]"),
        ("path1,path2,label\na,b,maybe\n", ValueError, ":2: label"),
        ("path1,path2,label,fold\na,b,1,-1\n", ValueError, ":2: fold"),
        ("path1,path2,label\n", ValueError, "no pairs"),
        ("path1,path2,label\nnope.jpg,b,1\n", FileNotFoundError, "nope.jpg"),
    ],
)
def test_csv_pairs_errors(tmp_path, text, error, message):
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(error, match=message):
        load_csv_pairs(tmp_path / "pairs.csv")


# ---- RFW -------------------------------------------------------------------------------------------


def test_rfw_pairs(tmp_path):
    for race in ("African", "Asian"):
        lines, names = [], []
        for fold in range(2):  # RFW files have no count line: folds come from the genuine/impostor runs
            a, b, c = (f"m.{race[:2]}{fold}{k}" for k in "abc")
            lines += [f"{a}\t1\t2", f"{b}\t1\t2", f"{a}\t1\t{c}\t1", f"{b}\t2\t{c}\t1"]
            names += [(a, 1), (a, 2), (b, 1), (b, 2), (c, 1)]
        (tmp_path / "txts" / race).mkdir(parents=True)
        (tmp_path / "txts" / race / f"{race}_pairs.txt").write_text("\n".join(lines) + "\n")
        _make_images(tmp_path / "data" / race, names)
    dataset = load_rfw_pairs(tmp_path, races=("African", "Asian"))
    assert len(dataset) == 16 and dataset.features == PAIR_FEATURES
    assert dataset["group"] == ["African"] * 8 + ["Asian"] * 8
    assert dataset["fold"] == [0, 0, 0, 0, 1, 1, 1, 1] * 2
    assert dataset["is_same"] == [True, True, False, False] * 4
    assert _raw(dataset)[8]["image1"]["path"] == str(tmp_path / "data" / "Asian" / "m.As0a" / "m.As0a_0001.jpg")
    with pytest.raises(FileNotFoundError, match="Caucasian_pairs.txt"):
        load_rfw_pairs(tmp_path)
    with pytest.raises(ValueError, match="at least one race"):
        load_rfw_pairs(tmp_path, races=())
