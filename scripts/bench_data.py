"""Data-pipeline throughput on real photos; every number in the data docs comes from here.

Prints
  1. decode + detect + align images/s per detector backend on LFW photos (250x250),
  2. FaceRecImageProcessor images/s on the aligned 112x112 crops,
  2b. make_train_transform (decode + augmentation + processor) images/s on the same crops, per input kind,
  3. RecordIO read images/s (bytes only, and bytes + JPEG decode) from a temporary .rec,
  4. (--compare-dlib N) how far crops aligned from dlib landmark variants fall from YuNet's,
  5. (--bulk-align DST) a full ``hf-facerec align`` run over LFW into DST (never the repo).

Usage: python scripts/bench_data.py [--lfw DIR] [--yunet FILE] [--n 200] [--records 3000]
       [--compare-dlib 500] [--bulk-align /tmp/lfw_aligned --workers 2]
LFW defaults to $HF_FACEREC_DATA/lfw, else ../shared/data/lfw next to the repo; YuNet to
$HF_FACEREC_YUNET, else the first .onnx in ../shared/models/yunet.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"

from hf_facerec.data.align import TEMPLATE_96x112, align_face, estimate_similarity_transform, select_face  # noqa: E402
from hf_facerec.data.detectors import build_detector  # noqa: E402
from hf_facerec.data.images import load_rgb  # noqa: E402


def _default_lfw() -> Path:
    return Path(os.environ["HF_FACEREC_DATA"]) / "lfw" if "HF_FACEREC_DATA" in os.environ else SHARED / "data" / "lfw"


def _default_yunet() -> Path | None:
    if os.environ.get("HF_FACEREC_YUNET"):
        return Path(os.environ["HF_FACEREC_YUNET"])
    found = sorted((SHARED / "models" / "yunet").glob("*.onnx"))
    return found[0] if found else None


def _best_seconds(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed calls: the least disturbed by other processes on the machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _sample(lfw: Path, n: int) -> list[Path]:
    """n LFW images spread evenly over the sorted list (deterministic, many identities)."""
    files = sorted((lfw / "images").rglob("*.jpg"))
    if not files:
        sys.exit(f"no LFW images under {lfw / 'images'}")
    return [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).astype(int)]


def bench_alignment(files: list[Path], yunet: Path | None) -> list:
    """Section 1; returns the YuNet (else dlib) crops for sections 2 and 3."""
    print(f"== 1. decode + detect + align, {len(files)} LFW images, one process, 112x112 ArcFace crops")
    crops_by_backend = {}
    for name, kwargs in (("yunet", {"model_path": yunet}), ("dlib", {})):
        if name == "yunet" and yunet is None:
            print("yunet: skipped (no model file)")
            continue
        t0 = time.perf_counter()
        detector = build_detector(name, **kwargs)
        load_s = time.perf_counter() - t0
        decode = detect = warp = 0.0
        crops, missed = [], 0
        for path in files:
            t0 = time.perf_counter()
            rgb = load_rgb(path)
            t1 = time.perf_counter()
            detections = detector.detect(rgb)
            t2 = time.perf_counter()
            if detections:  # what FaceAligner(policy="central") does, timed stage by stage
                chosen, _ = select_face(detections, rgb.size, "central", 0.5)
                crops.append(align_face(rgb, chosen.landmarks))
            else:
                missed += 1
            t3 = time.perf_counter()
            decode, detect, warp = decode + t1 - t0, detect + t2 - t1, warp + t3 - t2
        total = decode + detect + warp
        print(
            f"{name:6s}: {len(files) / total:7.1f} images/s  (decode {1e3 * decode / len(files):.2f} ms, "
            f"detect {1e3 * detect / len(files):.2f} ms, align {1e3 * warp / len(files):.2f} ms per image; "
            f"no face: {missed}; model load {load_s:.2f} s)"
        )
        crops_by_backend[name] = crops
    return crops_by_backend.get("yunet") or crops_by_backend.get("dlib") or []


def bench_processor(crops: list) -> None:
    print(f"== 2. FaceRecImageProcessor on {len(crops)} aligned 112x112 crops, batches of 64")
    try:
        from hf_facerec.models.image_processing_facerec import FaceRecImageProcessor
    except ImportError as exc:
        print(f"skipped ({exc})")
        return
    processor = FaceRecImageProcessor()
    processor(images=crops[:8], return_tensors="pt")  # warm-up
    for flip in (False, True):

        def run(flip: bool = flip) -> None:
            for i in range(0, len(crops), 64):
                processor(images=crops[i : i + 64], return_tensors="pt", flip_tta=flip)

        print(f"flip_tta={flip!s:5s}: {len(crops) / _best_seconds(run):8.1f} images/s")


def bench_train_transform(crops: list) -> None:
    """Section 2b: the training batch transform on PIL crops, uint8 arrays and undecoded PNG dicts."""
    print(f"== 2b. make_train_transform on {len(crops)} aligned 112x112 crops, batches of 64")
    try:
        from hf_facerec.data.augment import default_train_augmentation, make_train_transform
        from hf_facerec.models.image_processing_facerec import FaceRecImageProcessor
    except ImportError as exc:
        print(f"skipped ({exc})")
        return
    encoded = []
    for crop in crops:
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    kinds = {"PIL RGB": crops, "uint8 array": [np.asarray(c) for c in crops], "PNG dict": encoded}
    processor = FaceRecImageProcessor()
    for augmentation in (None, default_train_augmentation("light", seed=0)):
        transform = make_train_transform(processor, augmentation, label_column=None)
        for kind, images in kinds.items():

            def run(images: list = images) -> None:
                for i in range(0, len(images), 64):
                    transform({"image": images[i : i + 64]})

            label = "none" if augmentation is None else "light"
            print(f"augmentation={label:5s} {kind:12s}: {len(images) / _best_seconds(run):8.1f} images/s")


def bench_recordio(crops: list, records: int) -> None:
    print(f"== 3. RecordIO read, {records} JPEG records (quality 95, 112x112)")
    try:
        from hf_facerec.data.recordio import RecordIOReader
        from hf_facerec.data.recordio_write import write_recordio
    except ImportError as exc:
        print(f"skipped ({exc})")
        return
    encoded = []
    for crop in crops[: min(len(crops), 200)]:
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=95)
        encoded.append(buffer.getvalue())
    items = [(float(i // 10), encoded[i % len(encoded)]) for i in range(records)]
    with tempfile.TemporaryDirectory() as tmp:
        rec, idx = Path(tmp) / "train.rec", Path(tmp) / "train.idx"
        write_recordio(rec, idx, items)
        reader = RecordIOReader(rec, idx)
        keys = np.arange(1, records + 1)
        for order, key_list in (("sequential", keys), ("random", np.random.default_rng(0).permutation(keys))):
            read_s = _best_seconds(lambda keys=key_list: [reader.read(int(k)) for k in keys])
            decode_s = _best_seconds(lambda keys=key_list: [load_rgb(reader.read(int(k))[1]) for k in keys])
            print(
                f"{order:10s}: {records / read_s:9.0f} records/s read, {records / decode_s:7.0f} images/s read + decode"
            )
        print(f"file size {rec.stat().st_size / 2**20:.1f} MiB")


def compare_dlib_variants(files: list[Path], yunet: Path) -> None:
    """Section 4: mean distance (96x112 crop px) between where each variant's crop puts the
    template points and where YuNet's crop puts them. YuNet's crops give 98.62% LFW accuracy."""
    import dlib

    from hf_facerec.data.detectors.dlib_hog import find_dlib_predictor, five_from_68

    print(f"== 4. dlib landmark variants vs YuNet, {len(files)} LFW images (mean offset of the template points)")
    p68_path = find_dlib_predictor()
    hog, p68 = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(p68_path))
    p5 = dlib.shape_predictor(str(p68_path.with_name("shape_predictor_5_face_landmarks.dat")))
    corrected = np.array([[29.37, 53.98], [64.49, 53.52], [47.39, 80.46]])  # STACK_NOTES, 3 points
    yunet_det = build_detector("yunet", model_path=yunet)
    labels = (
        "dlib 68-point, 5 template points",
        "dlib 5-point, corrected 3-pt template",
        "dlib 5-point, nose base as tip",
    )
    offsets: dict[str, list[float]] = {label: [] for label in labels}
    for path in files:
        rgb = np.asarray(load_rgb(path))
        faces, rects = yunet_det.detect(rgb), hog(rgb, 0)
        if not faces or len(rects) == 0:
            continue
        reference = min(faces, key=lambda d: np.sum((d.center - 125) ** 2)).landmarks
        rect = min(rects, key=lambda r: (r.center().x - 125) ** 2 + (r.center().y - 125) ** 2)
        five = np.array([(p.x, p.y) for p in p5(rgb, rect).parts()], np.float64)
        three = np.stack([(five[2] + five[3]) / 2, (five[0] + five[1]) / 2, five[4]])  # eye midpoints, nose base
        sixty_eight = np.array([(p.x, p.y) for p in p68(rgb, rect).parts()], np.float64)
        variants = dict(zip(labels, [(five_from_68(sixty_eight), TEMPLATE_96x112), (three, corrected),
                                     (three, TEMPLATE_96x112[:3])], strict=True))  # fmt: skip
        to_yunet_crop = estimate_similarity_transform(reference, TEMPLATE_96x112)
        for label, (points, template) in variants.items():
            crop_to_image = np.linalg.inv(np.vstack([estimate_similarity_transform(points, template), [0, 0, 1]]))[:2]
            in_image = TEMPLATE_96x112 @ crop_to_image[:, :2].T + crop_to_image[:, 2]
            in_yunet_crop = in_image @ to_yunet_crop[:, :2].T + to_yunet_crop[:, 2]
            offsets[label].append(float(np.linalg.norm(in_yunet_crop - TEMPLATE_96x112, axis=1).mean()))
    for label, values in offsets.items():
        print(f"{label:40s}: mean {np.mean(values):.2f} px, median {np.median(values):.2f} px ({len(values)} faces)")


def bulk_align(lfw: Path, yunet: Path, dst: Path, workers: int) -> None:
    from hf_facerec.data.align_folder import align_folder

    print(f"== 5. hf-facerec align {lfw / 'images'} -> {dst} (yunet, {workers} workers)")
    report = align_folder(lfw / "images", dst, detector_kwargs={"model_path": yunet}, workers=workers, progress=False)
    counts = report.counts()
    print(
        f"{report.total} images: {report.aligned} aligned, {report.skipped_existing} already done, "
        f"{counts['no_face']} without a face, {counts['invalid_image']} unreadable, "
        f"{report.multiple_faces} with several faces; {report.seconds:.1f} s "
        f"({report.aligned / max(report.seconds, 1e-9):.1f} images/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lfw", type=Path, default=_default_lfw())
    parser.add_argument("--yunet", type=Path, default=_default_yunet())
    parser.add_argument("--n", type=int, default=200, help="LFW images for sections 1-3")
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--compare-dlib", type=int, default=0, metavar="N", help="run section 4 on N images")
    parser.add_argument("--bulk-align", type=Path, default=None, metavar="DST", help="run section 5 into DST")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV/torch threads (1: per-core figures)")
    args = parser.parse_args()
    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"cpu cores {os.cpu_count()}, threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    crops = bench_alignment(_sample(args.lfw, args.n), args.yunet)
    bench_processor(crops)
    bench_train_transform(crops)
    bench_recordio(crops, args.records)
    if args.compare_dlib and args.yunet is not None:
        compare_dlib_variants(_sample(args.lfw, args.compare_dlib), args.yunet)
    if args.bulk_align is not None:
        if REPO in args.bulk_align.resolve().parents:
            sys.exit("--bulk-align must point outside the repository (aligned LFW is research-only data)")
        bulk_align(args.lfw, args.yunet, args.bulk_align, args.workers)


if __name__ == "__main__":
    main()
