"""Benchmark the synthetic face generator: speed, and how hard its identities are to verify.

    PYTHONPATH=. python scripts/bench_synthetic.py            # ~10 CPU-minutes (CNN: 300 ids x 20, 10 epochs)
    PYTHONPATH=. python scripts/bench_synthetic.py --quick    # ~3 CPU-minutes (150 ids, 4 epochs)

Prints: render speed on one core (render only, render + PNG, whole ``make_synthetic_faces``) and over all
cores (``render_synthetic_faces(num_workers=cpu_count)``, wall time), then
10-fold verification accuracy on ``make_synthetic_pairs`` (1,000 pairs by default, identities disjoint
from training) for raw-pixel cosine, a PCA+LDA linear probe on raw pixels, and a tiny CNN trained with
a CosFace loss on identity-balanced batches. The faces are SYNTHETIC (drawn from random numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the speed section measures one core

import numpy as np
import torch
from torch import nn

from hf_facerec.data.sampling import IdentityBalancedBatchSampler
from hf_facerec.data.synthetic import (
    SyntheticFaceConfig,
    identity_rng,
    image_rng,
    make_synthetic_faces,
    make_synthetic_pairs,
    render_identity_image,
    render_synthetic_faces,
    sample_identity,
)
from hf_facerec.data.synthetic.datasets import _encode_png


def ten_fold_correct(scores: np.ndarray, is_same: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """LFW protocol: each pair judged at the threshold that is best on the other folds; (N,) bool correct."""
    correct = np.zeros(len(scores), dtype=bool)
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        s, y = scores[train], is_same[train]
        order = np.argsort(-s)
        # Threshold just below the i-th highest score: the first i are called "same".
        tp = np.concatenate([[0], np.cumsum(y[order])])
        tn = (~y).sum() - np.concatenate([[0], np.cumsum(~y[order])])
        best = int(np.argmax(tp + tn))
        ranked = np.concatenate([[np.inf], s[order], [-np.inf]])
        threshold = (ranked[best] + ranked[best + 1]) / 2
        correct[test] = (scores[test] > threshold) == is_same[test]
    return correct


def ten_fold_accuracy(scores: np.ndarray, is_same: np.ndarray, folds: np.ndarray) -> float:
    """Mean over folds of the per-fold accuracy (folds have equal sizes here)."""
    correct = ten_fold_correct(scores, is_same, folds)
    return float(np.mean([correct[folds == f].mean() for f in np.unique(folds)]))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def pixels(images) -> np.ndarray:
    """(N, H*W*3) float32 from decoded images."""
    return np.stack([np.asarray(im, np.float32).ravel() for im in images])


def bench_speed(n_images: int) -> dict:
    """Images per second on one thread: per CPU-second (what a dedicated core gives) and per wall second."""
    ids = 100
    params = [sample_identity(identity_rng(0, i)) for i in range(ids)]
    out = {}

    def timed(name: str, fn) -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        out[f"{name}_img_per_cpu_s"] = n_images / (time.process_time() - cpu)
        out[f"{name}_img_per_wall_s"] = n_images / (time.perf_counter() - wall)
        return result

    images = timed("render", lambda: [render_identity_image(params[j % ids], image_rng(0, j % ids, j // ids))[0]
                                      for j in range(n_images)])
    timed("png", lambda: [_encode_png(im) for im in images])
    timed("make_synthetic_faces", lambda: make_synthetic_faces(num_identities=ids, images_per_identity=n_images // ids))
    # Parallel rendering (what quickstart does): wall time only, the workers' CPU is not this process's.
    workers = os.cpu_count() or 1
    wall = time.perf_counter()
    render_synthetic_faces(num_identities=ids, images_per_identity=n_images // ids, num_workers=workers)
    out[f"render_synthetic_faces_{workers}_workers_img_per_wall_s"] = n_images / (time.perf_counter() - wall)
    return out


class TinyCNN(nn.Module):
    """4 stride-2 conv blocks (32-64-128-256) -> global average -> 128-d embedding."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c in (32, 64, 128, 256):
            layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(256, dim), nn.BatchNorm1d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x).mean((2, 3), keepdim=True))


def to_tensor(images) -> torch.Tensor:
    x = np.stack([np.asarray(im, np.float32) for im in images]) / 127.5 - 1  # (N, H, W, 3)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def train_cnn(train, epochs: int, seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    x, y = to_tensor(train["image"]), torch.as_tensor(np.asarray(train["label"]))
    n_classes = int(y.max()) + 1
    model = TinyCNN()
    weight = nn.Parameter(torch.randn(n_classes, 128) * 0.01)
    opt = torch.optim.AdamW(list(model.parameters()) + [weight], lr=3e-3, weight_decay=5e-4)
    sampler = IdentityBalancedBatchSampler(y.numpy(), batch_size=128, images_per_identity=4, seed=seed)
    steps = epochs * len(sampler)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        model.train()
        for batch in sampler:
            xb, yb = x[batch], y[batch]
            flip = torch.rand(len(batch)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            logits = nn.functional.normalize(model(xb)) @ nn.functional.normalize(weight).T
            logits = 30.0 * (logits - 0.35 * nn.functional.one_hot(yb, n_classes))  # CosFace
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"  epoch {epoch + 1}/{epochs} loss {loss.item():.3f}", flush=True)
    return model.eval()


@torch.no_grad()
def embed(model: TinyCNN, images) -> np.ndarray:
    x = to_tensor(images)
    return torch.cat([model(x[i : i + 256]) + model(x[i : i + 256].flip(-1)) for i in range(0, len(x), 256)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-identities", type=int, default=None)
    parser.add_argument("--size", type=int, default=56, help="image size for the probe and the CNN")
    args = parser.parse_args()
    quick = args.quick
    n_train = args.train_identities or (150 if quick else 300)
    epochs = args.epochs or (4 if quick else 10)
    results: dict = {}

    torch.set_num_threads(1)
    results.update(bench_speed(300 if quick else 1000))
    for name in ("render", "png", "make_synthetic_faces"):
        print(f"speed, 1 thread, 112x112, {name}: {results[f'{name}_img_per_cpu_s']:.0f} img per CPU-second, "
              f"{results[f'{name}_img_per_wall_s']:.0f} img per wall second (load average {os.getloadavg()[0]:.1f})")
    parallel = next(key for key in results if key.startswith("render_synthetic_faces_"))
    print(f"speed, {parallel.split('_')[3]} processes, 112x112, render_synthetic_faces (arrays): "
          f"{results[parallel]:.0f} img per wall second")
    torch.set_num_threads(os.cpu_count() or 1)

    pairs112 = make_synthetic_pairs()  # 10 folds x 100 pairs, identities from 1,000,000 on
    same, folds = np.asarray(pairs112["is_same"]), np.asarray(pairs112["fold"])
    a, b = pixels(pairs112["image1"]), pixels(pairs112["image2"])
    results["raw_cosine_112"] = ten_fold_accuracy(cosine(a, b), same, folds)
    centred = cosine(a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True))
    results["raw_centred_cosine_112"] = ten_fold_accuracy(centred, same, folds)
    print(f"{len(same)} pairs, raw-pixel cosine @112: {results['raw_cosine_112']:.3f} "
          f"(mean-centred {results['raw_centred_cosine_112']:.3f})")

    size = args.size
    pairs = make_synthetic_pairs(image_size=size)
    a, b = pixels(pairs["image1"]), pixels(pairs["image2"])
    results[f"raw_cosine_{size}"] = ten_fold_accuracy(cosine(a, b), same, folds)
    t = time.perf_counter()
    train = make_synthetic_faces(num_identities=n_train, images_per_identity=20, image_size=size)
    print(f"train set: {n_train} identities x 20 images @{size} in {time.perf_counter() - t:.1f} s", flush=True)

    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x_train = pixels(train["image"])
    pca = PCA(n_components=200, random_state=0).fit(x_train)
    lda = LinearDiscriminantAnalysis(n_components=min(127, n_train - 1))
    lda.fit(pca.transform(x_train), np.asarray(train["label"]))
    pa, pb = lda.transform(pca.transform(a)), lda.transform(pca.transform(b))
    results[f"pca_lda_probe_{size}"] = ten_fold_accuracy(cosine(pa, pb), same, folds)
    print(f"raw-pixel cosine @{size}: {results[f'raw_cosine_{size}']:.3f}; "
          f"PCA(200)+LDA linear probe: {results[f'pca_lda_probe_{size}']:.3f}")

    t = time.perf_counter()
    model = train_cnn(train, epochs)
    results["cnn_train_s"] = time.perf_counter() - t
    cnn_scores = cosine(embed(model, pairs["image1"]), embed(model, pairs["image2"]))
    results[f"tiny_cnn_{size}"] = ten_fold_accuracy(cnn_scores, same, folds)
    print(f"tiny CNN ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, {epochs} epochs, "
          f"{results['cnn_train_s']:.0f} s): {results[f'tiny_cnn_{size}']:.3f}")

    # The bias knobs: groups A, B, C spread light -> dark over the skin-tone ramp; then C with twice the nuisances.
    for tag, config in (("tone_only", None), ("C_difficulty_2", SyntheticFaceConfig(group_difficulty={"C": 2.0}))):
        grouped = make_synthetic_pairs(image_size=size, groups=("A", "B", "C"), config=config,
                                       same_group_impostor_fraction=1.0)
        scores = cosine(embed(model, grouped["image1"]), embed(model, grouped["image2"]))
        correct = ten_fold_correct(scores, np.asarray(grouped["is_same"]), np.asarray(grouped["fold"]))
        group = np.asarray(grouped["group"])
        for g in "ABC":
            results[f"tiny_cnn_{size}_{tag}_group_{g}"] = float(correct[group == g].mean())
        print(f"tiny CNN per group, {tag}: "
              + ", ".join(f"{g} {correct[group == g].mean():.3f} ({(group == g).sum()} pairs)" for g in "ABC"))
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
