"""Throughput of the dataset readers: RecordIO write/read/scan, RecordIO -> Parquet, pair loaders.

    python scripts/bench_readers.py [--images 4000] [--ijb-pairs 2000000]

Synthetic 112x112 JPEGs (the InsightFace training size) are written to a temp folder; LFW is used
when ../shared/data is present (HF_FACEREC_DATA). Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hf_facerec.data.convert import recordio_to_parquet
from hf_facerec.data.folders import load_identity_folder
from hf_facerec.data.ijb import load_ijb
from hf_facerec.data.pairs import load_bin_pairs, load_lfw_pairs
from hf_facerec.data.recordio import RecordIOReader
from hf_facerec.data.recordio_write import write_recordio


def _faces(count: int) -> list[bytes]:
    """Smooth random 112x112 JPEGs (about the size of real aligned crops at quality 95)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((112, 112), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        out.append(buffer.getvalue())
    return out


def _timed(label: str, count: int, unit: str, function):
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    print(f"{label:<52s} {count / seconds:>10.0f} {unit}/s  ({seconds:.2f} s for {count})")
    return result


def bench_recordio(workdir: Path, count: int) -> None:
    images = _faces(count)
    print(f"synthetic JPEGs: {count}, mean {np.mean([len(b) for b in images]) / 1024:.1f} KiB")
    items = [(float(i // 10), image) for i, image in enumerate(images)]
    rec, idx = workdir / "train.rec", workdir / "train.idx"
    _timed("write_recordio", count, "img", lambda: write_recordio(rec, idx, items))
    reader = RecordIOReader(rec, idx)
    order = np.random.default_rng(1).permutation(reader.image_keys)
    _timed("indexed random read", count, "img", lambda: [reader.read(k) for k in order])
    _timed("sequential scan (no index)", count, "img", lambda: sum(1 for _ in RecordIOReader(rec)))
    for threads in (1, 2):
        _timed(
            f"recordio_to_parquet, decode check, {threads} thread(s)", count, "img",
            lambda: recordio_to_parquet(rec, idx, workdir / "pq", num_threads=threads, overwrite=True, progress=False),
        )  # fmt: skip
    _timed(
        "recordio_to_parquet, no decode check", count, "img",
        lambda: recordio_to_parquet(rec, idx, workdir / "pq", check_images=False, overwrite=True, progress=False),
    )  # fmt: skip


def bench_lfw(workdir: Path, data: Path) -> None:
    lfw = data / "lfw"
    if not lfw.is_dir():
        print("LFW absent: skipped")
        return
    pairs = _timed("load_lfw_pairs (6000 pairs, files checked)", 6000, "pair",
                   lambda: load_lfw_pairs(lfw / "pairs.txt", lfw / "images"))  # fmt: skip
    _timed("load_identity_folder (LFW, 13233 images)", 13233, "img", lambda: load_identity_folder(lfw / "images"))
    # The same pairs as an InsightFace .bin (temp file only): bytes of both images per pair.
    raw = pairs.cast_column("image1", pairs.features["image1"].__class__(decode=False))
    raw = raw.cast_column("image2", raw.features["image2"].__class__(decode=False))
    bins = [Path(p).read_bytes() for row in raw for p in (row["image1"]["path"], row["image2"]["path"])]
    (workdir / "lfw.bin").write_bytes(pickle.dumps((bins, list(pairs["is_same"])), protocol=4))
    _timed("load_bin_pairs (LFW-sized .bin, restricted unpickler)", 6000, "pair",
           lambda: load_bin_pairs(workdir / "lfw.bin"))  # fmt: skip


def bench_ijb(workdir: Path, num_pairs: int) -> None:
    base = workdir / "IJBC"
    (base / "meta").mkdir(parents=True)
    (base / "loose_crop").mkdir()
    rng = np.random.default_rng(0)
    (base / "meta" / "ijbc_face_tid_mid.txt").write_text("1.jpg 1 1\n")
    (base / "meta" / "ijbc_name_5pts_score.txt").write_text("1.jpg " + " ".join(["1.0"] * 11) + "\n")
    pairs = np.column_stack([rng.integers(1, 200_000, (num_pairs, 2)), rng.integers(0, 2, num_pairs)])
    np.savetxt(base / "meta" / "ijbc_template_pair_label.txt", pairs, fmt="%d")
    _timed("load_ijb template pairs", num_pairs, "pair", lambda: load_ijb(workdir, check_files=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--ijb-pairs", type=int, default=2_000_000)
    args = parser.parse_args()
    data = Path(os.environ.get("HF_FACEREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    print(f"CPU threads available: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_recordio(Path(tmp), args.images)
    with tempfile.TemporaryDirectory() as tmp:
        bench_lfw(Path(tmp), data)
    with tempfile.TemporaryDirectory() as tmp:
        bench_ijb(Path(tmp), args.ijb_pairs)


if __name__ == "__main__":
    main()
