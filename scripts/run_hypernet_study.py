"""The hypernetwork-verifier study on real faces (skips without ../shared): train h on LFW folds 1-5 identities with
the converted CASIA MobileFaceNet as h_bb, then

* LFW folds 6-10 pairs (identity-disjoint from training): symmetrised verifier accuracy (5-fold protocol over the
  test folds), TAR@FAR, AUC, against h_bb's cosine on the same pairs;
* ORL (40 people, never seen in training): identification enrolling 1 and 5 images per person, probing with the
  rest: closed-set rank-1 (all 40 enrolled) and open-set TPIR@FPIR (s1-s30 enrolled, s31-s40 non-mated), against
  cosine to the mean enrolment embedding;
* the ablation table (KCS off, schedule off, norm penalty off), params / FLOPs / latency per verifier.

    python scripts/run_hypernet_study.py --budget small --out /tmp/hypernet_study

Faces: YuNet (score >= 0.5, the central face) aligned to MobileFaceNet's 96x112 template; photos where it finds no
face fall back to the centre crop (counted). Embeddings and f's 32x32 inputs are computed once and cached in --out.
Results: results.json and results.md in --out (outside the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

BUDGETS = {  # train identities (>= 2 images), images per identity, steps, episodes per step, test pairs per fold
    "smoke": dict(identities=40, per_identity=4, steps=20, episodes=8, pairs_per_fold=20),
    "small": dict(identities=300, per_identity=5, steps=300, episodes=16, pairs_per_fold=200),
    "medium": dict(identities=None, per_identity=5, steps=2000, episodes=16, pairs_per_fold=600),
    "full": dict(identities=None, per_identity=None, steps=4000, episodes=32, pairs_per_fold=600),
}
RUNS = {"full": {}, "kcs_off": {"kcs": False}, "schedule_off": {"objective_schedule": False},
        "norm_penalty_off": {"norm_penalty": 0.0}}


def _prepare(paths, faces, embedder, target, cache: Path):
    """(N, D) h_bb embeddings, (N, 1, 32, 32) f inputs and the no-face count of `paths`, cached in `cache`."""
    import torch
    from tqdm.auto import tqdm

    from hf_facerec.data.align import NoFaceDetectedError
    from hf_facerec.data.images import load_rgb
    from hf_facerec.data.preprocess import crop_to_aspect
    from hf_facerec.hypernet.verifiers import target_pixels

    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved["paths"] == list(paths):
            return saved["embeddings"], saved["pixels"], int(saved["no_face"])
    embeddings, pixels, no_face = [], [], 0
    for start in tqdm(range(0, len(paths), 64), desc=cache.stem, unit="batch"):
        crops = []
        for path in paths[start:start + 64]:
            try:
                crops.append(faces.face(path)[0])
            except NoFaceDetectedError:
                crops.append(crop_to_aspect(load_rgb(path), faces.face_size))
                no_face += 1
        pv = embedder.image_processor(images=crops, return_tensors="pt")["pixel_values"]
        embeddings.append(embedder.embed_pixel_values(pv))
        pixels.append(target_pixels(crops, target))
    embeddings, pixels = torch.cat(embeddings), torch.cat(pixels)
    torch.save({"paths": list(paths), "embeddings": embeddings, "pixels": pixels, "no_face": no_face}, cache)
    return embeddings, pixels, no_face


def _lfw(shared: Path, budget: dict, seed: int):
    """(train image paths, their identity labels, test pairs (paths1, paths2, same, fold))."""
    import numpy as np

    from hf_facerec.data.folders import list_identity_images
    from hf_facerec.data.pairs import load_lfw_pairs
    from hf_facerec.data.pairset import pair_columns
    from hf_facerec.data.protocols import split_identities_by_folds

    root = shared / "data" / "lfw" / "images"
    pairs = load_lfw_pairs(shared / "data" / "lfw" / "pairs.txt", root, check_files=False)
    folds = np.asarray(pairs["fold"])
    train_names = {n for f, a, b in zip(folds, pairs["identity1"], pairs["identity2"]) if f < 5 for n in (a, b)}
    images = {name: list_identity_images(root / name) for name in sorted(train_names)}
    split = split_identities_by_folds(pairs, range(0, 5), range(5, 10), {n: len(v) for n, v in images.items()},
                                      min_images=2)
    rng = np.random.default_rng(seed)
    names = list(split.train)
    if budget["identities"] and len(names) > budget["identities"]:
        names = sorted(rng.choice(names, budget["identities"], replace=False).tolist())
    paths, labels = [], []
    for name in names:
        chosen = images[name][: budget["per_identity"]] if budget["per_identity"] else images[name]
        paths += chosen
        labels += [name] * len(chosen)
    p1, p2 = pair_columns(pairs)
    same = np.asarray(pairs["is_same"], dtype=bool)
    keep = []
    for fold in range(5, 10):
        rows = np.flatnonzero(folds == fold)
        genuine, impostor = rows[same[rows]], rows[~same[rows]]
        k = budget["pairs_per_fold"] // 2
        keep += genuine[:k].tolist() + impostor[:k].tolist()
    keep = np.asarray(keep)
    return paths, np.asarray(labels), ([p1[i] for i in keep], [p2[i] for i in keep], same[keep], folds[keep]), \
        split.summary()


def _orl(shared: Path):
    from hf_facerec.data.folders import list_identity_images

    root = shared / "data" / "orl" / "orl_faces"
    people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))
    paths, labels, index = [], [], []
    for person in people:
        for i, path in enumerate(sorted(list_identity_images(person), key=lambda p: int(Path(p).stem))):
            paths.append(path)
            labels.append(person.name)
            index.append(i)
    return paths, labels, index


def _identification(scores_fn, cosine_fn, labels, index, k: int) -> dict:
    """Closed set (all enrolled) and open set (s1-s30 enrolled, s31-s40 non-mated) for one enrolment count."""
    import numpy as np

    labels, index = np.asarray(labels), np.asarray(index)
    people = sorted(set(labels.tolist()), key=lambda s: int(s[1:]))
    probes = np.flatnonzero(index >= k)
    out = {}
    for setting, enrolled in (("closed_set", people), ("open_set", people[:30])):
        enrol = [np.flatnonzero((labels == person) & (index < k)) for person in enrolled]
        out[setting] = {"verifiers": scores_fn(enrol, probes, enrolled), "cosine": cosine_fn(enrol, probes, enrolled)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    parser.add_argument("--out", type=Path, default=Path("/tmp/hypernet_study"))
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("HF_FACEREC_SHARED", REPO.parent / "shared")))
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {list(RUNS)}")
    parser.add_argument("--steps", type=int, help="override the budget's training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: f's small ops spin with more on a shared CPU; measured ~2x faster)")
    args = parser.parse_args(argv)
    yunet = args.shared / "models" / "yunet" / "face_detection_yunet_2026may.onnx"
    checkpoint = args.shared / "models" / "mobilefacenet_casia" / "068.ckpt"
    if not (args.shared / "data" / "lfw").is_dir() or not checkpoint.is_file() or not yunet.is_file():
        print(f"skipped: needs {args.shared}/data/lfw, {checkpoint} and {yunet}")
        return 0
    budget = dict(BUDGETS[args.budget])
    if args.steps:
        budget["steps"] = args.steps
    import numpy as np
    import torch

    import hf_facerec.models  # noqa: F401
    from convert_mobilefacenet import main as convert
    from hf_facerec.data.preprocess import FaceInput
    from hf_facerec.embedding import FaceEmbedder
    from hf_facerec.evaluation.scoring import pair_scores as cosine_pair_scores
    from hf_facerec.evaluation.verification import verification_report
    from hf_facerec.evaluation.identification import identification_report
    from hf_facerec.data.pairset import unique_images
    from hf_facerec.hypernet import FaceRecHyperNetwork, count_flops, count_parameters
    from hf_facerec.hypernet.evaluate import identification_from_scores, pair_scores, verifier_scores
    from hf_facerec.hypernet.sampling import EpisodeConfig, EpisodeDataset
    from hf_facerec.hypernet.trainer import HyperNetTrainer, HyperNetTrainingArguments, calibrate_align_threshold
    from hf_facerec.hypernet.verifiers import HyperNetEnroller
    from hf_facerec.models import FaceRecModel
    from transformers import AutoImageProcessor

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    mfn = args.out / "mobilefacenet"
    if not (mfn / "config.json").is_file():
        convert(["--checkpoint", str(checkpoint), "--output", str(mfn)])
    backbone, processor = FaceRecModel.from_pretrained(mfn).eval(), AutoImageProcessor.from_pretrained(mfn)
    face_size = tuple(backbone.config.face_size)
    embedder = FaceEmbedder(backbone, processor, detector=None)
    faces = FaceInput(face_size, "yunet", str(yunet), policy="central", align="always")
    template = FaceRecHyperNetwork.from_backbone(backbone)
    target = template.config.target_config
    results = {"budget": args.budget, **budget, "params_per_verifier": count_parameters(target),
               "flops_per_verifier": count_flops(target), "hypernetwork_trainable_params":
               sum(p.numel() for p in template.parameters() if p.requires_grad)}

    start = time.perf_counter()
    train_paths, train_labels, (p1, p2, same, folds), split = _lfw(args.shared, budget, args.seed)
    sources, i1, i2 = unique_images(p1, p2)
    train_emb, train_pix, nf_train = _prepare(train_paths, faces, embedder, target, args.out / f"lfw_train_{args.budget}.pt")
    test_emb, test_pix, nf_test = _prepare(sources, faces, embedder, target, args.out / f"lfw_test_{args.budget}.pt")
    orl_paths, orl_labels, orl_index = _orl(args.shared)
    orl_emb, orl_pix, nf_orl = _prepare(orl_paths, faces, embedder, target, args.out / "orl.pt")
    results["data"] = {**split, "train_identities_used": len(set(train_labels.tolist())),
                       "train_images_used": len(train_paths), "test_pairs": len(p1), "test_images": len(sources),
                       "no_face_fallbacks": {"lfw_train": nf_train, "lfw_test": nf_test, "orl": nf_orl},
                       "prepare_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(results["data"]), flush=True)

    cos = cosine_pair_scores(test_emb.numpy(), i1, i2)
    results["lfw_cosine"] = verification_report(cos, same, folds=folds, fars=(1e-2, 1e-1))
    threshold = calibrate_align_threshold(train_emb.numpy(), train_labels, seed=args.seed)
    results["align_threshold"] = threshold

    def orl_cosine(enrol, probes, enrolled):
        gallery = torch.nn.functional.normalize(torch.stack([orl_emb[e].mean(0) for e in enrol]), dim=1).numpy()
        return identification_report(orl_emb[probes].numpy(), np.asarray(orl_labels)[probes], gallery,
                                     np.asarray(enrolled), ks=(1, 5), fpirs=(1e-1,))

    results["runs"] = {}
    for name in args.runs.split(","):
        settings = dict(RUNS[name])
        episodes = EpisodeConfig(max_enrol=3, kcs=settings.pop("kcs", True), n_clusters=16, seed=args.seed)
        data = EpisodeDataset(train_emb, train_pix, train_labels, episodes, budget["steps"], budget["episodes"])
        model = FaceRecHyperNetwork.from_backbone(FaceRecModel.from_pretrained(mfn).eval())
        training = HyperNetTrainingArguments(
            output_dir=str(args.out / "runs" / name), max_steps=budget["steps"],
            per_device_train_batch_size=budget["episodes"], learning_rate=2e-3, warmup_steps=0.05,
            weight_decay=0.0, logging_steps=max(1, budget["steps"] // 10), use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0, seed=args.seed, align_threshold=threshold, **settings)
        tick = time.perf_counter()
        trainer = HyperNetTrainer(model=model, args=training, train_dataset=data)
        trainer.train()
        train_seconds = time.perf_counter() - tick
        model.eval()
        scores = pair_scores(model, test_emb, test_pix, i1, i2)
        row = {"train_seconds": round(train_seconds, 1),
               "lfw": verification_report(scores, same, folds=folds, fars=(1e-2, 1e-1)),
               "log": [e for e in trainer.state.log_history if "loss" in e][-1:]}

        def orl_verifiers(enrol, probes, enrolled, model=model):
            emb = torch.nn.utils.rnn.pad_sequence([orl_emb[e] for e in enrol], batch_first=True)
            if any(len(e) != len(enrol[0]) for e in enrol):
                raise ValueError("ORL enrolment counts differ")
            s = verifier_scores(model, emb, orl_pix[probes])
            return identification_from_scores(s, np.asarray(orl_labels)[probes], np.asarray(enrolled), ks=(1, 5),
                                              fpirs=(1e-1,))

        row["orl"] = {f"enrol_{k}": _identification(orl_verifiers, orl_cosine, orl_labels, orl_index, k) for k in (1, 5)}
        results["runs"][name] = row
        if name == "full":
            model.save_pretrained(args.out / "hypernet")
            processor.save_pretrained(args.out / "hypernet")
            enroller = HyperNetEnroller(model, processor, detector=faces.aligner)
            verifier = enroller.enroll_embeddings("lfw_0", test_emb[:1])
            one = test_pix[:1]
            tick = time.perf_counter()
            for _ in range(100):
                verifier.logits(one)
            results["verify_ms_torch"] = round((time.perf_counter() - tick) * 10, 3)
            tick = time.perf_counter()
            for _ in range(20):
                enroller.enroll_embeddings("x", test_emb[:1])
            results["enrol_generate_ms"] = round((time.perf_counter() - tick) * 50, 3)
            results["onnx_max_abs_diff"] = verifier.export_onnx(args.out / "verifier.onnx")
        print(name, json.dumps({"lfw_accuracy": row["lfw"]["accuracy"], "train_seconds": row["train_seconds"]}),
              flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _markdown(results: dict) -> str:
    cos = results["lfw_cosine"]
    lines = [f"LFW folds 6-10 ({results['data']['test_pairs']} pairs), h trained on {results['data']['train_identities_used']} "
             f"identities / {results['data']['train_images_used']} images of folds 1-5, {results['steps']} steps x "
             f"{results['episodes']} episodes; f: {results['params_per_verifier']} params, "
             f"{results['flops_per_verifier'] / 1e6:.2f} MFLOPs", "",
             "| run | LFW acc % | TAR@FAR=1e-2 % | AUC | ORL rank-1 (1 img) | ORL rank-1 (5 img) | ORL TPIR@FPIR=0.1 (1 / 5 img) | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def orl(run_orl, who):
        r1 = [run_orl[f"enrol_{k}"]["closed_set"][who]["rank_1"] for k in (1, 5)]
        tp = [run_orl[f"enrol_{k}"]["open_set"][who]["tpir_at_fpir"].get("1e-01") for k in (1, 5)]
        return f"{_pct(r1[0])} | {_pct(r1[1])} | {_pct(tp[0])} / {_pct(tp[1])}"

    first = next(iter(results["runs"].values()), None)
    lines.append(f"| h_bb cosine (MobileFaceNet, 128-d) | {_pct(cos['accuracy'])} | {_pct(cos['tar_at_far'].get('1e-02'))} | "
                 f"{cos['auc']:.4f} | {orl(first['orl'], 'cosine') if first else 'n/a | n/a | n/a'} | - |")
    for name, row in results["runs"].items():
        lfw = row["lfw"]
        lines.append(f"| verifiers: {name} | {_pct(lfw['accuracy'])} | {_pct(lfw['tar_at_far'].get('1e-02'))} | "
                     f"{lfw['auc']:.4f} | {orl(row['orl'], 'verifiers')} | {row['train_seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
