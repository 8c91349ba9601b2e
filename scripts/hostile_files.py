"""The non-image half of the hostile corpus (see hostile_corpus.py): pickles, RecordIO, pair lists, model
folders, zips, JSON, metric inputs, the embedding cache and Space uploads. Generated at run time."""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from hostile_corpus import SENTINEL_NAME, SIDE, base_face


def _jpeg(seed: int) -> bytes:
    """A distinct face-size JPEG per seed (a shifted, tinted base face)."""
    face = np.roll(base_face(), seed * 7, axis=1).astype(np.int16)
    face = np.clip(face + (seed * 37 % 90) - 45, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


# ---- malicious and broken pickles (.bin) -----------------------------------------------------------------


def _pickles(w, sentinel: Path) -> None:
    s = str(sentinel).encode()
    touch = b"open('" + s + b"','w').close()"
    import pickle

    valid = pickle.dumps(([_jpeg(i % 4) for i in range(20)], [i % 2 == 0 for i in range(10)]), protocol=2)  # 10 pairs
    ten_true = b"(" + b"I01\n" * 10 + b"l"  # [True] * 10: the issame list of 10 pairs
    bins = {
        # name: (bytes, expect, note)
        "ok.bin": (valid, "ok", "a valid 2-pair .bin"),
        "os_system.bin": (b"cos\nsystem\n(S'touch " + s + b"'\ntR.", "refuse", "os.system reduce"),
        "posix_system.bin": (b"cposix\nsystem\n(S'touch " + s + b"'\ntR.", "refuse", "posix.system reduce"),
        "eval.bin": (b"cbuiltins\neval\n(S\"" + touch + b"\"\ntR.", "refuse", "builtins.eval"),
        "exec.bin": (b"c__builtin__\nexec\n(S\"" + touch + b"\"\ntR.", "refuse", "__builtin__.exec (protocol 0 name)"),
        "getattr_import.bin": (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'touch " + s
                               + b"'\ntR.", "refuse", "getattr(__import__('os'), 'system')"),
        "subprocess.bin": (b"csubprocess\ncall\n((S'touch'\nS'" + s + b"'\nltR.", "refuse", "subprocess.call"),
        "codecs_trick.bin": (b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.", "refuse", "_codecs.encode with rot13"),
        "object_dtype.bin": (b"cnumpy\ndtype\n(S'O'\ntR.", "refuse", "numpy object dtype"),
        "matrix_subtype.bin": (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nmatrix\n(I0\ntS'b'\ntR.", "refuse",
                               "ndarray reconstruction of a subclass"),
        "bytes_alloc.bin": (b"((cbuiltins\nbytes\n(I300000000\ntRp0\n" + b"g0\n" * 19 + b"l" + ten_true + b"t.", "refuse",
                            "93 bytes asking bytes(3e8) through an allowed global"),
        "bytearray_alloc.bin": (b"((cbuiltins\nbytearray\n(I20000000000\ntRp0\n" + b"g0\n" * 19 + b"l" + ten_true + b"t.", "refuse",
                                "bytearray(2e10) through an allowed global"),
        "ndarray_uninit.bin": (b"(cnumpy\nndarray\n((I20\nI4096\ntcnumpy\ndtype\n(S'u1'\ntRtR" + ten_true + b"t.", "refuse",
                               "np.ndarray((20, 4096), u1): uninitialised heap memory as images"),
        "truncated.bin": (valid[: len(valid) // 2], "refuse", "a valid .bin cut in half"),
        "empty.bin": (b"", "refuse", "0 bytes"),
        "count_mismatch.bin": (pickle.dumps(([_jpeg(0)] * 3, [True, False]), protocol=2), "refuse", "3 images, 2 pairs"),
        "not_pickle.bin": (bytes(range(256)) * 4, "refuse", "random bytes"),
        "wrong_shape.bin": (pickle.dumps({"bins": [], "issame": []}), "refuse", "a dict instead of (bins, issame)"),
    }
    for name, (data, expect, note) in bins.items():
        path = w.file(f"bins/{name}", data)
        w.add(f"bin:{name}", "bin", path, expect, note, pairs=10 if expect == "ok" else None)


# ---- RecordIO -------------------------------------------------------------------------------------------


def _recordio(w) -> None:
    from hf_facerec.data.recordio_write import write_recordio

    def fresh(name: str) -> tuple[Path, Path]:
        folder = w.root / "rec" / name
        folder.mkdir(parents=True, exist_ok=True)
        rec, idx = folder / "train.rec", folder / "train.idx"
        write_recordio(rec, idx, [(float(i // 2), _jpeg(i)) for i in range(3)])
        return rec, idx

    rec, _ = fresh("ok")
    w.add("rec:ok", "recordio", rec, "ok", "3 images with an InsightFace header", images=3)
    rec, idx = fresh("empty_idx")
    idx.write_bytes(b"")
    w.add("rec:empty_idx", "recordio", rec, "either", "valid .rec, empty .idx", images=3)
    rec, idx = fresh("zero_rec")
    rec.write_bytes(b"")
    idx.unlink()
    w.add("rec:zero_rec", "recordio", rec, "refuse", "0-byte .rec, no .idx", images=0)
    rec, _ = fresh("nan_header")
    data = bytearray(rec.read_bytes())
    data[32:36] = struct.pack("<f", float("nan"))  # the header's first label: (N + 1, ...)
    rec.write_bytes(bytes(data))
    w.add("rec:nan_header", "recordio", rec, "refuse", "header label NaN")
    rec, idx = fresh("len_past_eof")
    offset = int(idx.read_text().split("\n")[1].split("\t")[1])  # key 1
    data = bytearray(rec.read_bytes())
    data[offset + 4 : offset + 8] = struct.pack("<I", 0x0FFFFFFF)
    rec.write_bytes(bytes(data))
    w.add("rec:len_past_eof", "recordio", rec, "refuse", "a record length past the end of the file")
    rec, idx = fresh("truncated")
    rec.write_bytes(rec.read_bytes()[:-300])
    idx.unlink()
    w.add("rec:truncated", "recordio", rec, "either", "last record cut, no .idx (scan)", images=2)
    rec, idx = fresh("bad_magic")
    rec.write_bytes(b"\x00" * 64 + rec.read_bytes()[64:])
    idx.unlink()
    w.add("rec:bad_magic", "recordio", rec, "refuse", "garbage instead of the first record")
    rec, idx = fresh("idx_garbage")
    idx.write_text("key offset\nzero 0\n")
    w.add("rec:idx_garbage", "recordio", rec, "refuse", "an .idx of text")
    rec, idx = fresh("idx_past_eof")
    idx.write_text(idx.read_text() + "99\t999999999\n")
    w.add("rec:idx_past_eof", "recordio", rec, "refuse", "an .idx offset past the end of the .rec")
    folder = w.root / "rec" / "corrupt_image"
    folder.mkdir(parents=True, exist_ok=True)
    write_recordio(folder / "train.rec", folder / "train.idx",
                   [(0.0, _jpeg(0)), (0.0, b"not a jpeg at all"), (1.0, _jpeg(1))])
    w.add("rec:corrupt_image", "recordio", folder / "train.rec", "ok", "one record is not an image", images=3,
          decodable=2)


# ---- pair lists -----------------------------------------------------------------------------------------


def _pair_lists(w) -> None:
    def lfw(name: str, text: str, expect: str, note: str, **oracle) -> None:
        folder = w.root / "pairs" / name
        for person in ("Ann", "Bob"):
            for n in (1, 2):
                w.file(f"pairs/{name}/images/{person}/{person}_{n:04d}.jpg", _jpeg(n + (person == "Bob") * 2))
        path = w.file(f"pairs/{name}/pairs.txt", text.encode())
        w.add(f"pairs:{name}", "pairs_txt", path, expect, note, folder=str(folder), **oracle)

    lfw("txt_ok", "1 1\nAnn 1 2\nAnn 1 Bob 1\n", "ok", "LFW View 2 layout, 1 fold of 1+1", pairs=2)
    lfw("txt_huge_header", "999999999 999999999\nAnn 1 2\n", "refuse", "a 40-byte header claiming 1e18 pairs")
    lfw("txt_bad_int", "Ann x 2\n", "refuse", "a non-integer image number")
    lfw("txt_latin1", "", "refuse", "Latin-1 name of a person with no folder")
    (w.root / "pairs" / "txt_latin1" / "pairs.txt").write_bytes("1 1\nAnn 1 2\nAnn 1 Jos\xe9 1\n".encode("latin-1"))
    lfw("txt_nul", "1 1\nAnn 1 2\x00\nAnn 1 Bob 1\n", "either", "a NUL byte", pairs=2)

    def csv_case(name: str, data: bytes, expect: str, note: str, **oracle) -> None:
        for n in range(1, 5):
            w.file(f"pairs/{name}/img{n}.jpg", _jpeg(n))
        path = w.file(f"pairs/{name}/pairs.csv", data)
        w.add(f"pairs:{name}", "pairs_csv", path, expect, note, **oracle)

    body = "img1.jpg,img2.jpg,1\nimg3.jpg,img4.jpg,0\nimg1.jpg,img3.jpg,0\nimg2.jpg,img1.jpg,1\n" * 5  # 20: 10 folds
    csv_case("csv_ok", ("path1,path2,label\n" + body).encode(), "ok", "20 pairs", pairs=20, folds=[0] * 20)
    csv_case("csv_bom", ("\ufeffpath1,path2,label\n" + body).encode("utf-8"), "ok", "UTF-8 BOM (Excel)", pairs=20)
    csv_case("csv_crlf", ("path1,path2,label\n" + body).replace("\n", "\r\n").encode(), "ok", "CRLF lines", pairs=20)
    csv_case("csv_fold_huge", b"path1,path2,label,fold\nimg1.jpg,img2.jpg,1,99999999999\nimg3.jpg,img4.jpg,0,0\n",
             "either", "fold 99999999999 (wraps in int32)", pairs=2, folds=[99999999999, 0])
    csv_case("csv_dup_column", b"path1,path2,label,path1\nimg1.jpg,img2.jpg,1,img3.jpg\nimg3.jpg,img4.jpg,0,img1.jpg\n",
             "refuse", "path1 twice: ambiguous")
    w.file("pairs/csv_latin1/Jos\xe9.jpg", _jpeg(9))
    csv_case("csv_latin1", "path1,path2,label\nJos\xe9.jpg,img2.jpg,1\nimg3.jpg,img4.jpg,0\n".encode("latin-1"),
             "either", "Latin-1 text", pairs=2)
    csv_case("csv_empty", b"", "refuse", "0 bytes")
    csv_case("csv_bad_label", b"path1,path2,label\nimg1.jpg,img2.jpg,maybe\n", "refuse", "label 'maybe'")
    csv_case("csv_missing_file", b"path1,path2,label\nimg1.jpg,nope.jpg,1\n", "refuse", "an image that does not exist",
             token="nope.jpg")
    csv_case("csv_nul", b"path1,path2,label\nimg1.jpg,img2.jpg,1\x00\n", "refuse", "a NUL byte")
    csv_case("csv_huge_line", b"path1,path2,label\n" + b"a" * 300_000 + b",img2.jpg,1\n", "refuse",
             "a 300 kB field (over csv's field limit)")


# ---- model folders --------------------------------------------------------------------------------------


def _tiny_model():
    import torch
    from transformers import ViTConfig

    from hf_facerec.models import FaceRecConfig, FaceRecModel

    backbone = ViTConfig(image_size=SIDE, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)
    torch.manual_seed(0)
    config = FaceRecConfig(backbone_config=backbone, embedding_size=8, embedding_head="linear", image_size=SIDE)
    return FaceRecModel(config).eval()


def _models(w) -> Path:
    import torch

    from hf_facerec.models import FaceRecImageProcessor

    ok = w.root / "models" / "ok"
    model = _tiny_model()
    model.save_pretrained(ok)
    FaceRecImageProcessor(size={"height": SIDE, "width": SIDE}).save_pretrained(ok)
    w.add("model:ok", "model", ok, "ok", "the probe's tiny ViT FaceRec model")

    def variant(name: str, expect: str, note: str, edit=None, json_edits: dict | None = None, **oracle) -> None:
        folder = w.root / "models" / name
        shutil.copytree(ok, folder)
        for filename, changes in (json_edits or {}).items():
            data = json.loads((folder / filename).read_text())
            data.update(changes)
            (folder / filename).write_text(json.dumps(data))
        if edit is not None:
            edit(folder)
        w.add(f"model:{name}", "model", folder, expect, note, **oracle)

    variant("image_size_huge", "refuse", "config image_size 10**6", json_edits={"config.json": {"image_size": 10**6}})
    variant("preprocessor_size_huge", "refuse", "preprocessor size 1e5",
            json_edits={"preprocessor_config.json": {"size": {"height": 100000, "width": 100000}}}, processor_only=True,
            token="preprocessor_config.json")
    variant("nan_thresholds", "refuse", "verification_thresholds {'1e-03': 'NaN'}",
            json_edits={"config.json": {"verification_thresholds": {"1e-03": "NaN"}, "threshold_pair_set": "x"}})
    variant("image_std_zero", "refuse", "preprocessor image_std 0 (inf pixels)",
            json_edits={"preprocessor_config.json": {"image_std": [0.0, 0.0, 0.0]}}, processor_only=True,
            token="preprocessor_config.json")
    variant("missing_weights", "refuse", "no model.safetensors", edit=lambda f: (f / "model.safetensors").unlink())
    variant("truncated_weights", "refuse", "model.safetensors cut in half", edit=lambda f: (f / "model.safetensors")
            .write_bytes((f / "model.safetensors").read_bytes()[: (f / "model.safetensors").stat().st_size // 2]))
    variant("bad_config_json", "refuse", "config.json is not JSON", edit=lambda f: (f / "config.json").write_text("{"))
    variant("deep_config_json", "refuse", "config.json nested 100k deep",
            edit=lambda f: (f / "config.json").write_text("[" * 100_000 + "]" * 100_000))
    variant("unknown_model_type", "either", "model_type 'nope'", json_edits={"config.json": {"model_type": "nope"}})
    nan_model = _tiny_model()
    with torch.no_grad():
        next(nan_model.parameters()).fill_(float("nan"))
    folder = w.root / "models" / "nan_weights"
    nan_model.save_pretrained(folder)
    FaceRecImageProcessor(size={"height": SIDE, "width": SIDE}).save_pretrained(folder)
    w.add("model:nan_weights", "model", folder, "refuse", "weights holding NaN: embeddings must never be NaN")
    return ok


# ---- zips, JSON, metric inputs, cache, uploads ------------------------------------------------------------


def _zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _zips(w) -> None:
    ok = _zip_bytes({"ann/1.jpg": _jpeg(1), "bob/1.jpg": _jpeg(2)})
    zips = {
        "ok.zip": (ok, "ok", "two identities"),
        "traversal.zip": (_zip_bytes({"../../evil.jpg": _jpeg(1), "ann/1.jpg": _jpeg(2), "bob/1.jpg": _jpeg(3)}), "ok",
                          "a ../ member (skipped and reported) beside two good ones"),
        "bomb.zip": (_zip_bytes({"ann/1.jpg": b"\0" * 150 * 2**20}), "refuse", "150 MB of zeros"),
        "not_a_zip.zip": (b"PK\x03\x04 but not really", "refuse", "PK magic, nothing else"),
        "many_members.zip": (_zip_bytes({f"p{i}/{i}.jpg": b"x" for i in range(600)}, zipfile.ZIP_STORED), "refuse",
                             "600 members"),
    }
    lying = bytearray(_zip_bytes({"ann/1.jpg": _jpeg(1)}, zipfile.ZIP_STORED))
    lying[200] ^= 0xFF  # a byte of the stored JPEG: the CRC lies
    zips["lying_crc.zip"] = (bytes(lying), "refuse", "CRC-32 does not match the data")
    encrypted = bytearray(ok)
    for magic, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # general-purpose flag bit 0: encrypted
        for start in [i for i in range(len(encrypted) - 4) if encrypted[i : i + 4] == magic]:
            encrypted[start + flag_at] |= 1
    zips["encrypted.zip"] = (bytes(encrypted), "refuse", "members flagged encrypted")
    for name, (data, expect, note) in zips.items():
        w.add(f"zip:{name}", "zip", w.file(f"zips/{name}", data), expect, note, images=2 if expect == "ok" else None)


def _jsons(w) -> None:
    report = {"groups": {"A": {"tar": 0.9}, "B": {"tar": 0.8}}}
    ok = {"benchmarks": {"lfw": {"accuracy": 0.99, "bias": {"gender": report}}}}
    jsons = {
        "results_ok.json": (json.dumps(ok).encode(), "ok"),
        "deep.json": (b"[" * 100_000 + b"]" * 100_000, "refuse"),
        "latin1.json": ('{"a": "Jos\xe9"}'.encode("latin-1"), "refuse"),
        "nan.json": (b'{"benchmarks": NaN}', "refuse"),
    }
    for name, (data, expect) in jsons.items():
        w.add(f"json:{name}", "json", w.file(f"json/{name}", data), expect, f"{len(data)} bytes")


def _metric_inputs(w) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(40)
    labels = (np.arange(40) % 2).astype(float)
    cases = {
        "reference_0.7": ({"predictions": scores.tolist(), "references": [0.7] + labels[1:].tolist()}, "refuse"),
        "reference_1.5": ({"predictions": scores.tolist(), "references": [1.5] + labels[1:].tolist()}, "refuse"),
        "float64_close": ({"predictions": (0.5 + np.arange(40) * 1e-10).tolist(), "references": labels.tolist()}, "ok"),
        "nan_prediction": ({"predictions": [float("nan")] + scores[1:].tolist(), "references": labels.tolist()}, "refuse"),
        "groups_none": ({"predictions": scores.tolist(), "references": labels.tolist(),
                         "groups": [None] + ["A", "B"] * 19 + ["A"]}, "refuse"),
        "ok": ({"predictions": scores.tolist(), "references": labels.tolist()}, "ok"),
    }
    for name, (inputs, expect) in cases.items():
        metric = "face_bias" if "groups" in inputs else "face_verification"
        path = w.file(f"metrics/{name}.json", json.dumps(inputs).encode())
        w.add(f"metric:{name}", "metric", path, expect, metric, metric=metric)


def _uploads(w, quick: bool) -> None:
    side = 800 if quick else 4500
    noise = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=0)
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    size = len(buffer.getvalue())
    path = w.file("uploads/big_data_url.txt", url.encode())
    w.add("upload:big_data_url", "data_url", path, "refuse" if size > 50 * 2**20 else "ok",
          f"{size / 2**20:.0f} MB image as a data: URL", bytes=size)
    flat = io.BytesIO()
    Image.new("RGB", (6000, 5000), (90, 90, 90)).save(flat, format="PNG")
    path = w.file("uploads/30mp_data_url.txt", ("data:image/png;base64," + base64.b64encode(flat.getvalue()).decode())
                  .encode())
    w.add("upload:30mp_data_url", "data_url", path, "refuse", "30 MP image (over the 25 MP limit) as a data: URL")
    w.add("upload:garbled_data_url", "data_url", w.file("uploads/garbled.txt", b"data:image/png;base64,%%%%"),
          "refuse", "not base64")


def other_files(w, quick: bool = False) -> None:
    """Every non-image case: writes the files and adds the cases to writer ``w``."""
    sentinel = w.root / SENTINEL_NAME
    _pickles(w, sentinel)
    _recordio(w)
    _pair_lists(w)
    ok_model = _models(w)
    _zips(w)
    _jsons(w)
    _metric_inputs(w)
    _uploads(w, quick)
    csv = w.root / "pairs" / "csv_ok" / "pairs.csv"
    w.add("cache:tampered_npy", "cache", csv, "ok", "evaluate twice; the cached .npy replaced by random values between",
          model=str(ok_model))
