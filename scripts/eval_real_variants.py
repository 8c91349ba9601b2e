"""LFW View 2 with the converted MobileFaceNet under alignment / preprocessing / scoring variants:
where does the gap between our ~98.6% and the checkpoint's claimed 99.30% come from?

    python scripts/eval_real_variants.py --shared ../shared --output /tmp/hf_facerec_eval \\
        --model /tmp/hf_facerec_eval/mobilefacenet [--variants yunet,yunet_std127.5,...]

Landmarks of the 7,701 pair images are computed once per detector and cached
(``OUTPUT/landmarks/*.npz``); each variant then warps every image to the 96x112 template and stores
the raw (un-normalised) features of the crop and of its mirror (``OUTPUT/variants/<name>.npz``), so
the scoring variants (flip none / sum / concat; subtracting the mean feature of the 9 training folds
before the cosine, as the source's evaluation does) cost nothing extra. Research data stays in
../shared; everything written goes under OUTPUT.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hf_facerec import FaceRecModel
from hf_facerec.data.align import NoFaceDetectedError, estimate_similarity_transform, get_template, select_face
from hf_facerec.data.detectors import build_detector
from hf_facerec.data.images import load_rgb
from hf_facerec.data.pairs import load_lfw_pairs
from hf_facerec.evaluation import best_threshold_accuracy, kfold_accuracy
from hf_facerec.benchmarks.cache import unique_pair_images

_SWAP = [1, 0, 2, 4, 3]  # landmark order of a mirrored face: left/right eyes and mouth corners swap
POLICIES = ("largest", "central", "highest_score")


@dataclass(frozen=True)
class Variant:
    """landmarks: ``yunet`` | ``yunet_flipavg`` | ``dlib`` | ``yunet_dlib_avg``; policy: which face
    of a multi-face photo; interpolation: ``linear`` | ``cubic`` | ``area2x`` (warp at 2x, then
    area-downscale); std: pixel divisor; points: template points used by the similarity fit."""

    landmarks: str = "yunet"
    policy: str = "central"
    interpolation: str = "linear"
    std: float = 128.0
    points: tuple[int, ...] = (0, 1, 2, 3, 4)


VARIANTS = {
    "yunet": Variant(),
    "yunet_std127.5": Variant(std=127.5),
    "yunet_largest": Variant(policy="largest"),
    "yunet_highest_score": Variant(policy="highest_score"),
    "dlib68": Variant(landmarks="dlib"),
    "yunet_flipavg": Variant(landmarks="yunet_flipavg"),
    "yunet_bicubic": Variant(interpolation="cubic"),
    "yunet_area2x": Variant(interpolation="area2x"),
    "yunet_dlib_avg": Variant(landmarks="yunet_dlib_avg"),
    "yunet_no_nose": Variant(points=(0, 1, 3, 4)),
    "dlib68_area2x": Variant(landmarks="dlib", interpolation="area2x"),
    "yunet_dlib_avg_area2x": Variant(landmarks="yunet_dlib_avg", interpolation="area2x"),
    "dlib68_no_nose": Variant(landmarks="dlib", points=(0, 1, 3, 4)),
}


def lfw_pairs(shared: Path):
    """(unique image paths (M,), index1 (P,), index2 (P,), labels (P,), folds (P,))."""
    import datasets

    lfw = shared / "data" / "lfw"
    pairs = load_lfw_pairs(lfw / "pairs.txt", lfw / "images")
    raw = pairs.cast_column("image1", datasets.Image(decode=False)).cast_column("image2", datasets.Image(decode=False))
    paths, i1, i2, _ = unique_pair_images([c["path"] for c in raw["image1"]], [c["path"] for c in raw["image2"]])
    return paths, i1, i2, np.asarray(pairs["is_same"]), np.asarray(pairs["fold"])


def _pick(detections, policy: str, image_size) -> np.ndarray:
    """(5, 2) landmarks of the face chosen by ``policy`` among detections with score >= 0.5, NaN if none."""
    try:
        return select_face(detections, image_size, policy, 0.5)[0].landmarks.copy()  # callers edit it
    except NoFaceDetectedError:
        return np.full((5, 2), np.nan)


def detect_landmarks(paths, detector_name: str, shared: Path, cache: Path) -> dict[str, np.ndarray]:
    """(M, 5, 2) landmarks (NaN when no face has score >= 0.5) per face-choice policy
    (``largest``, ``central``, ``highest_score``) and, for YuNet, ``<policy>_mirror``: the face
    found on the mirrored photo, mapped back. Cached per detector."""
    path = cache / f"{detector_name}.npz"
    if path.is_file():
        stored = np.load(path)
        row = {p: r for r, p in enumerate(stored["paths"].tolist())}
        if all(p in row for p in paths):
            rows = [row[p] for p in paths]
            return {key: stored[key][rows] for key in stored.files if key != "paths"}
    kwargs = {"model_path": next((shared / "models" / "yunet").glob("*.onnx"))} if detector_name == "yunet" else {}
    detector = build_detector(detector_name, **kwargs)
    found: dict[str, list] = {key: [] for key in (*POLICIES, *(f"{p}_mirror" for p in POLICIES))}
    for image_path in paths:
        rgb = np.asarray(load_rgb(image_path))
        size = (rgb.shape[1], rgb.shape[0])
        detections = detector.detect(rgb)
        for policy in POLICIES:
            found[policy].append(_pick(detections, policy, size))
        mirror_detections = detector.detect(np.ascontiguousarray(rgb[:, ::-1])) if detector_name == "yunet" else []
        for policy in POLICIES:
            mirrored = _pick(mirror_detections, policy, size)  # "central" is symmetric: the same face
            mirrored[:, 0] = rgb.shape[1] - 1 - mirrored[:, 0]
            found[f"{policy}_mirror"].append(mirrored[_SWAP])
    arrays = {key: np.stack(value) for key, value in found.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, paths=np.array(paths), **arrays)
    return arrays


def variant_landmarks(variant: "Variant", yunet: dict, dlib: dict | None) -> np.ndarray:
    """(M, 5, 2) landmarks of a variant; dlib misses fall back to YuNet's points."""
    base = yunet[variant.policy]
    if variant.landmarks == "yunet":
        return base
    if variant.landmarks == "yunet_flipavg":  # average with the mirrored detection: halves independent landmark noise
        mirror = yunet[f"{variant.policy}_mirror"]
        return np.where(np.isnan(mirror), base, (base + mirror) / 2)
    dlib_points = np.where(np.isnan(dlib[variant.policy]), base, dlib[variant.policy])
    return dlib_points if variant.landmarks == "dlib" else (base + dlib_points) / 2


def warp(rgb: np.ndarray, points: np.ndarray, variant: Variant) -> np.ndarray:
    """(112, 96, 3) uint8 crop: similarity fit of the chosen points to the 96x112 template."""
    import cv2

    template = get_template("96x112")
    idx = list(variant.points)
    if variant.interpolation == "area2x":
        # Template in the pixel-centre convention of a 2x grid: x2 = 2 x + 0.5.
        matrix = estimate_similarity_transform(points[idx], 2 * template[idx] + 0.5)
        big = cv2.warpAffine(rgb, matrix, (192, 224), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return cv2.resize(big, (96, 112), interpolation=cv2.INTER_AREA)
    flags = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[variant.interpolation]
    matrix = estimate_similarity_transform(points[idx], template[idx])
    return cv2.warpAffine(rgb, matrix, (96, 112), flags=flags, borderMode=cv2.BORDER_CONSTANT)


@torch.no_grad()
def raw_features(model, paths, landmarks: np.ndarray, variant: Variant, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Raw features (M, D) of the crops and of their mirrors (before any normalisation)."""
    feats, flipped = [], []
    for start in range(0, len(paths), batch_size):
        crops = np.stack([warp(np.asarray(load_rgb(p)), landmarks[start + k], variant)
                          for k, p in enumerate(paths[start : start + batch_size])])
        pixels = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / variant.std
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        feats.append(model(pixel_values=pixels).features.numpy())
        flipped.append(model(pixel_values=pixels.flip(-1)).features.numpy())
    return np.concatenate(feats), np.concatenate(flipped)


def features_reusing_baseline(model, paths, landmarks, variant: Variant, output: Path, yunet: dict):
    """Raw features of a variant; when it differs from the baseline ``yunet`` variant (YuNet, central
    face, bilinear, /128, 5 points) only in the landmarks of some images (another face policy),
    only those images are embedded again."""
    base_file = output / "variants" / "yunet.npz"
    same_warp = dataclasses.replace(variant, landmarks="yunet", policy="central") == VARIANTS["yunet"]
    if not (same_warp and base_file.is_file()):
        return raw_features(model, paths, landmarks, variant)
    stored = np.load(base_file)
    f, g = stored["features"].copy(), stored["flipped"].copy()
    changed = np.flatnonzero(np.abs(np.nan_to_num(landmarks - yunet["central"])).max(axis=(1, 2)) > 1e-6)
    if changed.size:
        f[changed], g[changed] = raw_features(model, [paths[k] for k in changed], landmarks[changed], variant)
    print(f"  re-embedded {changed.size} images whose landmarks differ from the baseline")
    return f, g


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mean_subtracted_kfold(emb: np.ndarray, i1, i2, labels, folds) -> tuple[float, float]:
    """The source's protocol: for each test fold, subtract the mean feature of the 9 training folds'
    pair images, L2-normalise, cosine; threshold = best accuracy on the training folds."""
    accuracies = []
    for k in np.unique(folds):
        train = folds != k
        mu = np.concatenate([emb[i1[train]], emb[i2[train]]]).mean(axis=0)
        centred = _unit(emb - mu)
        scores = np.einsum("nd,nd->n", centred[i1], centred[i2])
        _, threshold = best_threshold_accuracy(scores[train], labels[train])
        accuracies.append(np.mean((scores[~train] >= threshold) == labels[~train]))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def score_variants(f: np.ndarray, g: np.ndarray, i1, i2, labels, folds) -> dict[str, float]:
    """10-fold accuracy for flip none / sum / concat, without and with training-fold mean subtraction."""
    out = {}
    for flip, emb in (("none", f), ("sum", f + g), ("concat", np.concatenate([f, g], axis=1))):
        unit = _unit(emb)
        out[flip] = kfold_accuracy(np.einsum("nd,nd->n", unit[i1], unit[i2]), labels, folds)["mean"]
        out[f"{flip}+mean_sub"] = mean_subtracted_kfold(emb, i1, i2, labels, folds)[0]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="the converted MobileFaceNet folder")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    paths, i1, i2, labels, folds = lfw_pairs(args.shared)
    start = time.perf_counter()
    yunet = detect_landmarks(paths, "yunet", args.shared, args.output / "landmarks")
    needs_dlib = any("dlib" in VARIANTS[n].landmarks for n in names)
    dlib = detect_landmarks(paths, "dlib", args.shared, args.output / "landmarks") if needs_dlib else None
    misses = "" if dlib is None else f", dlib misses {int(np.isnan(dlib['largest'][:, 0, 0]).sum())} (YuNet points used)"
    print(f"landmarks of {len(paths)} images ready in {time.perf_counter() - start:.0f} s; YuNet misses "
          f"{int(np.isnan(yunet['largest'][:, 0, 0]).sum())}{misses}")
    model = FaceRecModel.from_pretrained(args.model).eval().to(memory_format=torch.channels_last)
    table = {}
    for name in names:
        variant, cached = VARIANTS[name], args.output / "variants" / f"{name}.npz"
        start = time.perf_counter()
        if cached.is_file():
            stored = np.load(cached)
            f, g = stored["features"], stored["flipped"]
        else:
            f, g = features_reusing_baseline(model, paths, variant_landmarks(variant, yunet, dlib), variant, args.output, yunet)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, features=f, flipped=g)
        table[name] = score_variants(f, g, i1, i2, labels, folds)
        row = "  ".join(f"{k} {100 * v:.2f}" for k, v in table[name].items())
        print(f"{name:>16} ({time.perf_counter() - start:4.0f} s): {row}", flush=True)
    (args.output / "variants" / "lfw_variants.json").write_text(json.dumps(table, indent=2))
    return table


if __name__ == "__main__":
    main()
