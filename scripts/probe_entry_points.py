"""Every entry point of the probe, by input kind: ``ENTRY_POINTS[name] = (kinds, fn)`` (see probe_entries.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from probe_entries import Skip, Wrong, check_embedding, check_pixels, copy_in, from_json_output, run_cli, truth_of

# ---- images and arrays ------------------------------------------------------------------------------------


def load_rgb_entry(case, ctx):
    from hf_facerec.data.images import load_rgb

    source = np.load(case.path) if case.kind == "array" else case.path
    return check_pixels(np.asarray(load_rgb(source)), case, ctx, "load_rgb")


def embedder_entry(case, ctx):
    source = np.load(case.path) if case.kind == "array" else case.path
    return check_embedding(ctx.embedder([source], progress=False)[0], case, ctx, "FaceEmbedder")


def embedder_pil_entry(case, ctx):
    from PIL import Image

    try:
        image = Image.open(case.path)
    except Exception as exc:  # noqa: BLE001 - the harness cannot make a PIL image of it: not this entry's input
        raise Skip(f"PIL cannot open it: {type(exc).__name__}") from exc
    return check_embedding(ctx.embedder([image], progress=False)[0], case, ctx, "FaceEmbedder(PIL)")


def pipeline_features_entry(case, ctx):
    source = np.load(case.path) if case.kind == "array" else case.path
    if case.kind == "array":
        from PIL import Image

        try:
            source = Image.fromarray(source) if source.dtype == np.uint8 else source
        except (TypeError, ValueError) as exc:
            raise Skip(f"PIL cannot hold it: {exc}") from exc
    return check_embedding(ctx.pipeline("face-feature-extraction")(source), case, ctx, "face-feature-extraction")


def pipeline_verify_entry(case, ctx):
    other = ctx.root / "images" / "ok.png"
    result = ctx.pipeline("face-verification")(case.path, str(other))
    score = result["score"]
    if not np.isfinite(score):
        raise Wrong(f"face-verification: score {score}")
    if case.expect == "refuse":
        raise Wrong("face-verification: scored an input that must be refused")
    truth = truth_of(case, ctx)
    if truth is not None and truth.shape[:2] == (112, 112):
        expected = float(ctx.reference(truth) @ ctx.reference(np.load(ctx.root / "truth" / "ok.png.npy")))
        if abs(score - expected) > 5e-3:
            raise Wrong(f"face-verification: score {score:.4f}, truth {expected:.4f}")
    return f"score {score:.4f}"


def _transform(ctx):
    from hf_facerec.data.augment import make_train_transform

    return make_train_transform(ctx.processor, augmentation=None)


def _expected_pixels(ctx, truth: np.ndarray):
    return ctx.processor(images=[truth], return_tensors="pt")["pixel_values"][0].numpy()


def _check_pixel_values(values, case, ctx, what: str) -> str:
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise Wrong(f"{what}: non-finite pixel_values")
    if case.expect == "refuse":
        raise Wrong(f"{what}: produced pixels for an input that must be refused")
    truth = truth_of(case, ctx)
    if truth is None:
        return f"{what}: finite pixel_values"
    scale = 255.0 * float(np.mean(ctx.processor.image_std))  # normalised units -> 8-bit levels
    error = float(np.abs(values - _expected_pixels(ctx, truth)).mean()) * scale
    if error > case.oracle.get("tol", 3.0) + 1.0:
        raise Wrong(f"{what}: mean |pixel - truth| = {error:.1f} levels")
    return f"{what}: matches the truth ({error:.2f} levels)"


def train_row_entry(case, ctx):
    """make_train_transform on a datasets.Image row (with_train_transform, the training path), or an array row."""
    import datasets

    if case.kind == "array":
        batch = {"image": [np.load(case.path)], "label": [0]}
        return _check_pixel_values(_transform(ctx)(batch)["pixel_values"][0], case, ctx, "train transform (array)")
    from hf_facerec.data.augment import with_train_transform

    # a user's decoding Image column, attached the documented way (datasets would decode it before any transform)
    rows = datasets.Dataset.from_dict({"image": [case.path], "label": [0]}).cast_column("image", datasets.Image())
    rows = with_train_transform(rows, _transform(ctx))
    return _check_pixel_values(rows[0]["pixel_values"], case, ctx, "train transform")


def _identity_tree(case, ctx) -> tuple[Path, str]:
    root = ctx.fresh(f"tree_{case.id}")
    (root / "ann").mkdir()
    (root / "bob").mkdir()
    copy_in(ctx.root / "images" / "ok.png", root / "ann" / "a_ok.png")
    copy_in(ctx.root / "images" / "ok.jpg", root / "bob" / "b_ok.jpg")
    name = Path(case.path).name
    copy_in(Path(case.path), root / "ann" / name)
    return root, name


def _is_image_input(case) -> bool:
    """An input a folder lister must list (an image by content, a link or not)."""
    return case.expect in ("ok", "either") and case.oracle.get("truth") is not None


def train_folder_entry(case, ctx):
    """load_identity_folder + the train transform over every row: bad images skipped and counted, or named."""
    from hf_facerec.data.folders import load_identity_folder

    root, name = _identity_tree(case, ctx)
    rows = load_identity_folder(root)
    paths = [Path(cell["path"]).name for cell in rows.cast_column("image", __import__("datasets").Image(decode=False))["image"]]
    if _is_image_input(case) and name not in paths:
        raise Wrong(f"load_identity_folder dropped {name} silently ({len(paths)} rows)")
    rows.set_transform(_transform(ctx))
    values = [rows[i]["pixel_values"] for i in range(len(rows))]
    if name in paths:
        return _check_pixel_values(values[paths.index(name)], case, ctx, "identity folder row")
    return f"{name} left out of {len(paths)} rows"


def align_cli_entry(case, ctx):
    src, name = _identity_tree(case, ctx)
    dst = ctx.fresh(f"aligned_{case.id}")
    run_cli(["align", str(src), str(dst / "out"), "--workers", "1", "--no-progress"])
    report = json.loads((dst / "out" / "align_report.json").read_text())
    failures = (dst / "out" / "failures.csv").read_text().splitlines()[1:]
    mentioned = report["aligned"] + len(failures) + report.get("skipped_existing", 0)
    if report["total"] != 3 or mentioned != 3:
        raise Wrong(f"align: total {report['total']}, aligned {report['aligned']} + {len(failures)} failures: "
                    f"{name} not accounted for")
    return f"align: {report['aligned']} aligned, {len(failures)} failures listed"


def convert_folder_entry(case, ctx):
    src, name = _identity_tree(case, ctx)
    out = ctx.fresh(f"parquet_{case.id}")
    _, stdout, _ = run_cli(["convert", str(src), str(out / "shards"), "--format", "folder", "--quiet"])
    report = from_json_output(stdout)
    good = 3 if _is_image_input(case) else 2
    if report["num_images"] + report["num_skipped"] != 3 or report["num_images"] != good:
        raise Wrong(f"convert: {report['num_images']} written + {report['num_skipped']} skipped of 3 files "
                    f"(expected {good} written)")
    return f"convert: {report['num_images']} written, {report['num_skipped']} skipped"


def space_photo_entry(case, ctx):
    """The Space's photo handler: the upload read into memory, then find_faces."""
    from hf_facerec.demo.uploads import read_upload

    _, data = read_upload({"path": case.path, "orig_name": Path(case.path).name}, "the photo")
    found = ctx.demo.find_faces(data, "the photo")
    return check_pixels(np.asarray(found.image), case, ctx, "Space find_faces")


from probe_entry_files import FILE_ENTRY_POINTS  # noqa: E402  (the entry points of non-image files)

ENTRY_POINTS = {
    "load_rgb": (("image", "array"), load_rgb_entry),
    "FaceEmbedder": (("image", "array"), embedder_entry),
    "FaceEmbedder(PIL)": (("image",), embedder_pil_entry),
    "pipeline:face-feature-extraction": (("image", "array"), pipeline_features_entry),
    "pipeline:face-verification": (("image",), pipeline_verify_entry),
    "make_train_transform": (("image", "array"), train_row_entry),
    "load_identity_folder+train": (("image",), train_folder_entry),
    "cli:align": (("image",), align_cli_entry),
    "cli:convert(folder)": (("image",), convert_folder_entry),
    "space:photo": (("image",), space_photo_entry),
    **FILE_ENTRY_POINTS,
}
