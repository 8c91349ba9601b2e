"""Entry points of the probe for non-image files: pair files, RecordIO, models, zips, JSON, metrics, uploads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from probe_entries import Wrong, check_embedding, from_json_output, run_cli


def _refuse_or(case, detail: str) -> str:
    """A result came back: wrong for a case that must be refused, else ``detail``."""
    if case.expect == "refuse":
        raise Wrong(f"accepted an input that must be refused: {detail}")
    return detail


def _check_pairs(case, pairs, what: str) -> str:
    n = len(pairs)
    if case.expect == "refuse":
        raise Wrong(f"{what}: accepted an input that must be refused ({n} pairs)")
    if case.oracle.get("pairs") is not None and n != case.oracle["pairs"]:
        raise Wrong(f"{what}: {n} pairs, expected {case.oracle['pairs']}")
    folds = case.oracle.get("folds")
    if folds is not None and "fold" in pairs.column_names and list(pairs["fold"]) != folds:
        raise Wrong(f"{what}: folds {list(pairs['fold'])[:4]}, expected {folds[:4]}")
    if "image1" in pairs.column_names and case.kind == "bin":
        from hf_facerec.data.images import load_rgb
        from hf_facerec.data.pairs import pair_columns

        for source in pair_columns(pairs)[0]:
            load_rgb(source)  # uninitialised memory would not decode
    return _refuse_or(case, f"{what}: {n} pairs")


def bin_entry(case, ctx):
    from hf_facerec.data.pairs import load_bin_pairs

    return _check_pairs(case, load_bin_pairs(case.path), "load_bin_pairs")


def pair_file_entry(case, ctx):
    from hf_facerec.data.pairs import load_pair_file

    return _check_pairs(case, load_pair_file(case.path), "load_pair_file")


def evaluate_csv_entry(case, ctx):
    out = ctx.fresh(f"eval_{case.id}")
    run_cli(["evaluate", "--model", str(ctx.model_dir), "--pairs-csv", case.path, "--output", str(out), "--no-plots",
             "--num-workers", "0", "--no-cache", "--flip", "none"])
    results = json.loads((out / "results.json").read_text())
    bench = results["benchmarks"].get(Path(case.path).stem, {})
    n = bench.get("n_pairs", bench.get("verification", {}).get("n_genuine", 0) + bench.get("verification", {}).get(
        "n_impostor", 0))
    if case.oracle.get("pairs") is not None and n and n != case.oracle["pairs"]:
        raise Wrong(f"evaluate: {n} pairs, expected {case.oracle['pairs']}")
    return _refuse_or(case, f"evaluate: exit 0, {n} pairs")


def recordio_reader_entry(case, ctx):
    from hf_facerec.data.recordio import RecordIOReader

    with RecordIOReader(case.path) as reader:
        n = len(reader)
        records = list(reader)
    if n != len(records):
        raise Wrong(f"RecordIOReader: len {n} but iteration yields {len(records)} records")
    for label, _ in records:
        if not np.all(np.isfinite(np.asarray(label, dtype=np.float64))):
            raise Wrong(f"RecordIOReader: non-finite label {label}")
    expected = case.oracle.get("images")
    if expected is not None and case.expect != "refuse" and n != expected:
        raise Wrong(f"RecordIOReader: {n} images, expected {expected}")
    return _refuse_or(case, f"RecordIOReader: {n} images")


def convert_recordio_entry(case, ctx):
    out = ctx.fresh(f"rec_{case.id}")
    _, stdout, _ = run_cli(["convert", case.path, str(out / "shards"), "--quiet"])
    report = from_json_output(stdout)
    expected = case.oracle.get("decodable", case.oracle.get("images"))
    if report["num_images"] == 0:
        raise Wrong("convert: exit 0 with 0 images")
    if expected is not None and case.expect != "refuse" and report["num_images"] != expected:
        raise Wrong(f"convert: {report['num_images']} images, expected {expected}")
    return _refuse_or(case, f"convert: {report['num_images']} images, {report['num_skipped']} skipped")


def _faces(ctx) -> list[str]:
    return [str(ctx.root / "images" / "ok.png"), str(ctx.root / "images" / "bmp.bmp")]


def model_load_entry(case, ctx):
    import torch

    from hf_facerec import FaceRecModel

    model = FaceRecModel.from_pretrained(case.path).eval()
    height, width = model.config.face_size
    if height * width > 4096**2:
        raise Wrong(f"FaceRecModel: loaded a config with face_size {height}x{width}")
    with torch.no_grad():
        features = model(pixel_values=torch.zeros(1, 3, height, width)).features
    if not torch.isfinite(features).all():
        raise Wrong("FaceRecModel: non-finite features")
    thresholds = model.config.verification_thresholds or {}
    if any(not isinstance(v, (int, float)) or not np.isfinite(v) for v in thresholds.values() if v is not None):
        raise Wrong(f"FaceRecModel: loaded thresholds {thresholds}")
    detail = f"FaceRecModel: features {tuple(features.shape)}"
    return detail if case.oracle.get("processor_only") else _refuse_or(case, detail)  # the model itself is fine


def model_embedder_entry(case, ctx):
    from hf_facerec import FaceEmbedder

    embedder = FaceEmbedder.from_pretrained(case.path, detector=None)
    vectors = embedder(_faces(ctx), progress=False)
    for vector in vectors:
        check_embedding(vector, case.__class__(case.id, "model", case.path, "either"), ctx, "FaceEmbedder")
    return _refuse_or(case, f"FaceEmbedder.from_pretrained: {vectors.shape}")


def model_pipeline_entry(case, ctx):
    from transformers import pipeline

    import hf_facerec.hub  # noqa: F401

    result = pipeline("face-verification", model=case.path)(*_faces(ctx))
    if not np.isfinite(result["score"]):
        raise Wrong(f"face-verification: score {result['score']}")
    if result["threshold"] is not None and not np.isfinite(result["threshold"]):
        raise Wrong(f"face-verification: threshold {result['threshold']}, is_same {result['is_same']}")
    return _refuse_or(case, f"face-verification: score {result['score']:.3f}")


def model_space_entry(case, ctx):
    from hf_facerec.demo.core import load_demo
    from probe_entries import WholeImage

    demo = load_demo(case.path, detector=WholeImage(), calibration_pairs=0)
    result = demo.verify(*_faces(ctx))
    if not np.isfinite(result.score):
        raise Wrong(f"Space verify: score {result.score}")
    threshold = getattr(result.point, "threshold", 0.0)
    if threshold is not None and not np.isfinite(threshold):
        raise Wrong(f"Space verify: threshold {threshold}")
    return _refuse_or(case, f"Space verify: score {result.score:.3f}")


def model_evaluate_entry(case, ctx):
    out = ctx.fresh(f"evalm_{case.id}")
    csv = ctx.root / "pairs" / "csv_ok" / "pairs.csv"
    run_cli(["evaluate", "--model", case.path, "--pairs-csv", str(csv), "--output", str(out), "--no-plots",
             "--num-workers", "0", "--no-cache", "--flip", "none"])
    text = (out / "results.json").read_text()
    if "NaN" in text or "Infinity" in text:
        raise Wrong("evaluate: NaN/inf in results.json")
    return _refuse_or(case, "evaluate: exit 0")


def zip_entry(case, ctx):
    from hf_facerec.demo.uploads import gallery_items

    items, skipped = gallery_items([{"path": case.path, "orig_name": Path(case.path).name}])
    if case.oracle.get("images") is not None and len(items) != case.oracle["images"]:
        raise Wrong(f"gallery_items: {len(items)} images, expected {case.oracle['images']}")
    return _refuse_or(case, f"gallery: {len(items)} images, {len(skipped)} skipped")


def json_entry(case, ctx):
    from hf_facerec.demo.dashboard import parse_results

    results = parse_results(Path(case.path).read_bytes())
    return _refuse_or(case, f"parse_results: {sorted(results)}")


def metric_entry(case, ctx):
    from hf_facerec.evaluation.bias import bias_report
    from hf_facerec.evaluation.verification import verification_report
    from hf_facerec.metrics import load_metric

    inputs = json.loads(Path(case.path).read_text())
    name = case.oracle["metric"]
    module = ctx.get(f"metric:{name}", lambda: load_metric(name))
    result = module.compute(**inputs)
    if case.expect == "refuse":
        raise Wrong(f"{name}: computed {str(result)[:80]} for an input the core refuses")
    core = (bias_report if name == "face_bias" else verification_report)(
        *[np.asarray(inputs[k]) for k in ("predictions", "references", "groups") if k in inputs])
    for key, value in core.items():
        if isinstance(value, float) and not (np.isclose(value, result.get(key), rtol=1e-9, atol=1e-12)):
            raise Wrong(f"{name}: {key} = {result.get(key)}, the numpy core says {value}")
    return f"{name}: matches the core"


def upload_entry(case, ctx):
    from hf_facerec.demo.uploads import read_upload

    url = Path(case.path).read_text()
    _, data = read_upload({"path": None, "url": url, "orig_name": "photo.png"}, "the photo")
    found = ctx.demo.find_faces(data, "the photo")
    return _refuse_or(case, f"Space: decoded {found.image.size} from a {len(url) / 2**20:.0f} MB request")


def cache_entry(case, ctx):
    """Evaluate, tamper with the cached .npy (random finite values), evaluate again: same results or refused."""
    out = ctx.fresh("cache")
    argv = ["evaluate", "--model", case.oracle["model"], "--pairs-csv", case.path, "--output", str(out), "--no-plots",
            "--num-workers", "0", "--flip", "none"]
    run_cli(argv)
    first = json.loads((out / "results.json").read_text())
    for npy in (out / "embedding_cache").rglob("*.npy"):
        array = np.load(npy)
        np.save(npy, np.random.default_rng(0).standard_normal(array.shape).astype(array.dtype))
    run_cli(argv)
    second = json.loads((out / "results.json").read_text())
    stem = Path(case.path).stem
    if json.dumps(first["benchmarks"][stem], sort_keys=True, default=str) != json.dumps(
            second["benchmarks"][stem], sort_keys=True, default=str):
        raise Wrong("evaluate: a tampered cache changed the results with exit 0")
    return "evaluate: tampered cache detected (same results)"


FILE_ENTRY_POINTS = {
    "load_bin_pairs": (("bin",), bin_entry),
    "load_pair_file": (("bin", "pairs_txt", "pairs_csv"), pair_file_entry),
    "cli:evaluate(pairs)": (("pairs_csv",), evaluate_csv_entry),
    "RecordIOReader": (("recordio",), recordio_reader_entry),
    "cli:convert(recordio)": (("recordio",), convert_recordio_entry),
    "FaceRecModel.from_pretrained": (("model",), model_load_entry),
    "FaceEmbedder.from_pretrained": (("model",), model_embedder_entry),
    "pipeline(model)": (("model",), model_pipeline_entry),
    "space:load_demo": (("model",), model_space_entry),
    "cli:evaluate(model)": (("model",), model_evaluate_entry),
    "space:gallery_items": (("zip",), zip_entry),
    "space:parse_results": (("json",), json_entry),
    "metrics:compute": (("metric",), metric_entry),
    "space:data_url": (("data_url",), upload_entry),
    "cli:evaluate(cache)": (("cache",), cache_entry),
}
