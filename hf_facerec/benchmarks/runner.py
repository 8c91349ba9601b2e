"""Benchmark runner: embed each benchmark's unique images once (cached on disk), score, report, plot.

``evaluate_model(model_or_path, ["lfw", "cfp_fp"], data_dir, output_dir)`` (and the CLI
``hf-facerec evaluate``) does, per benchmark of :mod:`~hf_facerec.benchmarks.registry`:

1. list the images of all pairs and keep each once (pairs share images: LFW's 6,000 pairs use
   7,701 images), keyed by absolute path + size + mtime, or by the SHA-1 of encoded bytes;
2. embed them with :class:`~hf_facerec.FaceEmbedder` (flip TTA), decoded + aligned in worker
   processes while the main one runs the forward passes (:mod:`~hf_facerec.benchmarks.pipeline`,
   bars "align" and "embed"), preprocessed by
   the benchmark's rule: ``.bin`` crops are centre-cropped to the model's aspect ratio, raw photos
   are detected + aligned (``align="yunet"|"dlib"``) to the template matching the model's input
   size, IJB crops are aligned with the protocol's own landmarks;
3. cache the (N, D) embeddings as ``.npy`` under a key of (model fingerprint = hash of config +
   weights + image-processor config, benchmark, image keys, flip, preprocessing), so a rerun with
   the same settings embeds nothing;
4. score pairs by cosine (IJB: template pooling first) and report with the metric core
   (:func:`verification_report`, :func:`bias_report` per grouping, :func:`identification_report`).

:mod:`~hf_facerec.benchmarks.cache` holds steps 1 and 3 (keys, fingerprints, cache);
:mod:`~hf_facerec.benchmarks.outputs` writes ``results.json``, ``results.md`` and the plots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hf_facerec._files import check_output_dir
from hf_facerec.data.pairs import pair_image_sources
from hf_facerec.data.preprocess import LandmarkedImage, detector_names
from hf_facerec.evaluation.bias_groups import grouped_bias_report
from hf_facerec.evaluation.identification import identification_report
from hf_facerec.evaluation.scoring import pair_scores, template_embeddings
from hf_facerec.evaluation.verification import verification_report

from .cache import EmbeddingCache, embed_images, image_key, model_fingerprint
from .pipeline import AlignSpec
from .registry import (
    BENCHMARKS,
    BenchmarkNotFoundError,
    IJBBenchmark,
    PairBenchmark,
    load_benchmark,
    load_csv_benchmark,
    load_group_file,
)

__all__ = ["evaluate_model"]

logger = logging.getLogger(__name__)


# ---- per-benchmark evaluation -------------------------------------------------------------------


def _evaluate_pairs(bench: PairBenchmark, embed, far: float) -> tuple[dict, dict]:
    sources, index1, index2 = pair_image_sources(bench.pairs)
    keys = [image_key(source) for source in sources]
    embeddings, info = embed(bench.name, sources, keys, detect=not bench.prealigned)
    scores = pair_scores(embeddings, index1, index2)
    labels = np.asarray(bench.pairs["is_same"], dtype=bool)
    folds = np.asarray(bench.pairs["fold"])
    folds = folds if np.unique(folds).size >= 2 else None  # no protocol folds: 10 contiguous ones
    result = {
        "kind": "pairs", "source": bench.source, "n_pairs": int(labels.size), "n_images": len(sources),
        "embedding_dim": int(embeddings.shape[1]), **info,
        "verification": verification_report(scores, labels, folds=folds),
        "bias": {},
    }
    for grouping, groups in bench.groupings.items():
        try:
            result["bias"][grouping] = grouped_bias_report(scores, labels, groups, far=far, folds=folds)
        except ValueError as err:  # e.g. a grouping with one group: report why, keep the other numbers
            logger.warning("%s: no %s bias report: %s", bench.name, grouping, err)
            result["bias"][grouping] = {"error": str(err)}
    return result, {"scores": scores, "labels": labels}


def _template_rows(template_ids: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Row of each wanted template id (any shape) in the sorted ``template_ids``."""
    rows = np.clip(np.searchsorted(template_ids, wanted), 0, template_ids.size - 1)
    missing = template_ids[rows] != wanted
    if missing.any():
        raise ValueError(f"{what} names template(s) without images, e.g. {np.asarray(wanted)[missing][:5].tolist()}")
    return rows


def _evaluate_ijb(bench: IJBBenchmark, embed) -> tuple[dict, dict]:
    """Template-level 1:1 (TAR@FAR, no folds) and, when the 1:N CSVs exist, probe-vs-gallery
    identification; image embeddings are pooled per media then per template."""
    protocol = bench.protocol
    sources = [LandmarkedImage(path, points) for path, points in zip(protocol.image_paths, protocol.landmarks)]
    embeddings, info = embed(bench.name, sources, [image_key(s) for s in sources], detect=False)
    template_ids, templates = template_embeddings(embeddings, protocol.template_ids, protocol.media_ids)
    rows = _template_rows(template_ids, protocol.pair_templates, "the 1:1 pair list")
    scores = pair_scores(templates, rows[:, 0], rows[:, 1])
    result = {
        "kind": "ijb", "source": bench.source, "n_pairs": int(scores.size), "n_images": len(sources),
        "n_templates": int(template_ids.size), "embedding_dim": int(embeddings.shape[1]), **info,
        "verification": verification_report(scores, protocol.pair_labels, n_folds=None),
        "identification": {},
    }
    sets = protocol.identification
    for probe_name in [name for name in sets if name.startswith("probe")]:
        probe = sets[probe_name]
        for gallery_name in [name for name in sets if name.startswith("gallery")]:
            gallery = sets[gallery_name]
            result["identification"][f"{probe_name}_vs_{gallery_name}"] = identification_report(
                templates[_template_rows(template_ids, probe.template_ids, probe_name)], probe.subject_ids,
                templates[_template_rows(template_ids, gallery.template_ids, gallery_name)], gallery.subject_ids,
            )
    return result, {"scores": scores, "labels": protocol.pair_labels}


# ---- the runner ---------------------------------------------------------------------------------


def _benchmark_names(benchmarks) -> list[str]:
    if isinstance(benchmarks, str):
        benchmarks = benchmarks.split(",")
    names = [name.strip() for name in benchmarks or [] if name.strip()]
    return list(dict.fromkeys(names))


def _load_embedder(model_or_path, image_processor, batch_size: int, flip: str, device):
    from hf_facerec.embedding import FaceEmbedder

    if isinstance(model_or_path, (str, os.PathLike)):
        embedder = FaceEmbedder.from_pretrained(os.fspath(model_or_path), batch_size=batch_size, flip=flip)
        if image_processor is not None:
            embedder.image_processor = image_processor
    else:
        embedder = FaceEmbedder(model_or_path, image_processor=image_processor, batch_size=batch_size, flip=flip)
    if device is not None:
        embedder.model.to(device)
        embedder.device = torch.device(device)
    return embedder


class _ChannelsLast:
    """On CPU, run the model with channels_last weights (oneDNN's preferred layout for convolutions;
    a no-op for ViTs), restoring the caller's model layout afterwards."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.active = model, device.type == "cpu"

    def __enter__(self):
        if self.active:
            self.model.to(memory_format=torch.channels_last)

    def __exit__(self, *exc):
        if self.active:
            self.model.to(memory_format=torch.contiguous_format)


def evaluate_model(
    model_or_path,
    benchmarks: str | Sequence[str],
    data_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    pairs_csv: str | os.PathLike | None = None,
    align: str = "none",
    detector_model: str | os.PathLike | None = None,
    align_policy: str = "central",
    flip: str = "sum",
    batch_size: int = 64,
    group_file: str | os.PathLike | None = None,
    group_column: str | None = None,
    far: float = 1e-3,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    image_processor=None,
    device: str | None = None,
    plots: bool = True,
    num_workers: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Evaluate a face model on benchmarks; write ``results.json``, ``results.md`` and PNG plots.

    Args:
        model_or_path: a FaceRec model object, a saved folder or a Hub id.
        benchmarks: names (``"lfw,cfp_fp"`` or a list) from :data:`~hf_facerec.benchmarks.registry.BENCHMARKS`.
            Absent ones are reported under ``skipped`` with the paths looked at.
        data_dir: the folder holding the benchmarks (may be None with only ``pairs_csv``).
        output_dir: where the reports, plots and (default) the embedding cache go.
        pairs_csv: an extra pair set (``path1,path2,label[,group,fold,identity1,identity2]``).
        align: ``"none"``, ``"yunet"``, ``"dlib"`` or ``"dlib,yunet"`` (tried in turn): how raw
            photos (not ``.bin`` crops, not IJB) are aligned (see :func:`hf_facerec.data.preprocess.build_preprocess`);
            ``detector_model`` / ``align_policy`` configure it. The default policy
            ``"central"`` keeps the face nearest the photo centre, where benchmark photos put their
            subject: on LFW "largest" picks another face in 28 of 7,701 photos and costs 0.3 points
            (98.32% vs 98.62%, scripts/eval_real_variants.py), "highest_score" 2 points.
        flip: ``"sum"``, ``"concat"`` or ``"none"`` flip TTA (see FaceEmbedder).
        group_file: ``identity,<group column>`` CSV; groups pairs that carry identity names
            (genuine: the identity's group; impostor: the shared group or ``"mixed"``).
        far: the FAR target of the bias reports' global threshold.
        cache_dir: embedding cache (default ``output_dir/embedding_cache``); ``use_cache=False`` disables it.
        num_workers: processes that decode + detect + align while this one runs the forward passes
            (default: one per spare core; 0: all in this process); see :mod:`~hf_facerec.benchmarks.pipeline`.
        progress: the "align" and "embed" bars (default: shown for more than four batches).
    Returns:
        The results dict written to ``results.json``: ``model``, ``model_fingerprint``,
        ``settings``, ``benchmarks`` (``{name: {"verification", "bias", ["identification"], ...}}``),
        ``skipped`` (``{name: {"reason", "expected"}}``), ``files``.
    """
    from .outputs import write_outputs

    names = _benchmark_names(benchmarks)
    if not names and pairs_csv is None:
        raise ValueError("no benchmark given: pass benchmark names and/or a pairs CSV")
    if names and data_dir is None:
        raise ValueError("data_dir is required to find the benchmarks " + ", ".join(names))
    detector_names(align)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:  # fail before any model loading
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)} (or pass a pairs CSV)")
    # Before the model loads and anything is embedded: a file, a read-only or uncreatable folder is one error.
    output_dir = check_output_dir(output_dir)
    if use_cache and cache_dir is not None:
        check_output_dir(cache_dir, "embedding cache folder")
    embedder = _load_embedder(model_or_path, image_processor, batch_size, flip, device)
    face_size = tuple(embedder.model.config.face_size)
    fingerprint = model_fingerprint(embedder.model, embedder.image_processor)
    cache = EmbeddingCache(cache_dir or output_dir / "embedding_cache") if use_cache else None
    group_map = load_group_file(group_file, group_column) if group_file is not None else None
    preprocessors: dict[bool, tuple] = {}

    def embed(name, sources, keys, detect: bool):
        if detect not in preprocessors:  # built here once for its description (cache key) and checks
            spec = AlignSpec(face_size, align if detect else "none",
                             None if detector_model is None else os.fspath(detector_model), align_policy)
            preprocessors[detect] = (spec, spec.build()[1])
        spec, describe = preprocessors[detect]
        describe = {**describe, "benchmark": name}
        embeddings, info = embed_images(embedder, sources, keys, spec, describe, cache, fingerprint,
                                        num_workers=num_workers, progress=progress)
        # What happened to the images, for the report: IJB sources carry landmarks (in their keys too).
        ijb = bool(sources) and isinstance(sources[0], LandmarkedImage)
        info["alignment"] = "protocol landmarks" if ijb else (describe["align"] if detect else "none (aligned crops)")
        return embeddings, info

    results = {
        "model": os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike))
        else type(model_or_path).__name__,
        "model_fingerprint": fingerprint,
        "settings": {"align": align, "align_policy": align_policy, "flip": flip, "far": far, "face_size": list(face_size),
                     "group_file": None if group_file is None else os.fspath(group_file)},
        "benchmarks": {}, "skipped": {},
    }
    curves: dict[str, dict] = {}
    loaders = [(name, lambda name=name: load_benchmark(name, data_dir, group_map)) for name in names]
    if pairs_csv is not None:
        loaders.append((Path(pairs_csv).stem, lambda: load_csv_benchmark(pairs_csv, group_map=group_map)))
    with _ChannelsLast(embedder.model, embedder.device):
        for name, load in loaders:
            try:
                bench = load()
            except BenchmarkNotFoundError as err:
                logger.warning("skipping %s: %s", name, err)
                results["skipped"][name] = {"reason": "not found", "expected": err.expected}
                continue
            if isinstance(bench, PairBenchmark):
                result, curves[name] = _evaluate_pairs(bench, embed, far)
                if group_map is not None and group_map[0] not in bench.groupings:
                    result["notes"] = ["group file ignored: the pairs carry no identity names"]
            else:
                result, curves[name] = _evaluate_ijb(bench, embed)
            results["benchmarks"][name] = result
    results["files"] = write_outputs(results, curves, output_dir, plots=plots)
    return results
