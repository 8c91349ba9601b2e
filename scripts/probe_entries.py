"""The public entry points ``probe_hostile.py`` feeds each hostile case to, with their oracles.

An entry point is ``fn(case, ctx) -> detail`` for a correct result, raises :class:`Wrong` for a result the
oracle knows is wrong, raises :class:`Skip` when the harness itself cannot build the input (not counted),
and lets every other exception out: the runner classifies it (clear refusal or traceback). CLI entry
points run ``hf_facerec.cli.main`` in the worker process (itself a capped subprocess) and turn its exit
status and last stderr line into the same outcomes (:class:`CliRefusal`, :class:`CliTraceback`).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np


class Wrong(Exception):
    """The entry point returned a result the oracle knows is wrong."""


class Skip(Exception):
    """The harness could not build this input (e.g. PIL cannot open it for the PIL-image entry point)."""


class CliRefusal(Exception):
    """A CLI exited 2 with this one-line message."""


class CliTraceback(Exception):
    """A CLI exited with a status outside {0, 2}, printed a traceback, or let an exception out."""


class Context:
    """Objects shared by the runs of one worker, built on first use from the corpus's tiny model."""

    def __init__(self, root: Path):
        self.root = root
        self.model_dir = root / "models" / "ok"
        self._cache: dict = {}
        self.scratch = root / "scratch"
        self.scratch.mkdir(exist_ok=True)

    def get(self, name: str, build):
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def embedder(self):
        from hf_facerec import FaceEmbedder

        return self.get("embedder", lambda: FaceEmbedder.from_pretrained(self.model_dir, batch_size=4))

    @property
    def processor(self):
        return self.embedder.image_processor

    def pipeline(self, task: str):
        from transformers import pipeline

        import hf_facerec.hub  # noqa: F401  (registers the pipelines)

        return self.get(task, lambda: pipeline(task, model=str(self.model_dir)))

    @property
    def demo(self):
        from hf_facerec.demo.core import load_demo

        return self.get("demo", lambda: load_demo(str(self.model_dir), detector=WholeImage(), calibration_pairs=0))

    def reference(self, truth: np.ndarray) -> np.ndarray:
        """The embedding of the true pixels (uint8 face crop), the oracle of every embedding entry point."""
        return self.embedder([truth], progress=False)[0]

    def fresh(self, name: str) -> Path:
        folder = self.scratch / name.replace(":", "_").replace("/", "_")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder


def _whole_image_detector():
    from hf_facerec.data.align import ARCFACE_TEMPLATE
    from hf_facerec.data.detectors import Detection, FaceDetector

    class WholeImageDetector(FaceDetector):
        """The Space's detector stand-in: one face filling the photo."""

        name = "whole"

        def _detect(self, rgb):
            h, w = rgb.shape[:2]
            scale = np.array([w / 112.0, h / 112.0])
            return [Detection([0, 0, w, h], 0.99, ARCFACE_TEMPLATE * scale)]

    return WholeImageDetector()


def WholeImage():  # noqa: N802 - reads like the class it builds
    return _whole_image_detector()


# ---- oracles ----------------------------------------------------------------------------------------------


def truth_of(case, ctx) -> np.ndarray | None:
    rel = case.oracle.get("truth")
    return None if rel is None else np.load(ctx.root / rel)


def check_pixels(pixels: np.ndarray, case, ctx, what: str) -> str:
    truth = truth_of(case, ctx)
    if truth is None:
        if case.expect == "refuse":
            raise Wrong(f"{what}: accepted an input that must be refused (shape {pixels.shape})")
        return f"{what} {pixels.shape}"
    if pixels.shape != truth.shape:
        raise Wrong(f"{what}: shape {pixels.shape}, truth {truth.shape}")
    error = float(np.abs(pixels.astype(np.float64) - truth).mean())
    if error > case.oracle.get("tol", 3.0):
        raise Wrong(f"{what}: mean |pixel - truth| = {error:.1f} (mean {pixels.mean():.1f} vs {truth.mean():.1f})")
    return f"{what} matches the truth (mean |diff| {error:.2f})"


def check_embedding(vector, case, ctx, what: str) -> str:
    vector = np.asarray(vector, dtype=np.float64).ravel()
    if not np.all(np.isfinite(vector)):
        raise Wrong(f"{what}: non-finite embedding")
    if abs(np.linalg.norm(vector) - 1) > 1e-3:
        raise Wrong(f"{what}: norm {np.linalg.norm(vector):.4f}")
    if case.expect == "refuse":
        raise Wrong(f"{what}: embedded an input that must be refused")
    truth = truth_of(case, ctx)
    if truth is None or truth.shape[:2] != (112, 112):
        return f"{what}: finite unit embedding (no face-size truth to compare)"
    cosine = float(vector @ ctx.reference(truth))
    if cosine < 0.995:
        raise Wrong(f"{what}: cosine {cosine:.3f} to the embedding of the true pixels")
    return f"{what}: cosine {cosine:.4f} to the truth"


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``hf-facerec ARGV`` in this process: (status, stdout, stderr); an escaping exception is a traceback."""
    from hf_facerec.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the CLI would print this as a traceback
        raise CliTraceback(f"{type(exc).__name__}: {exc}") from exc
    text = err.getvalue()
    if "Traceback (most recent call last)" in text:
        raise CliTraceback(text.strip().splitlines()[-1][:300])
    if status not in (0, 2):
        raise CliTraceback(f"exit status {status}: {text.strip().splitlines()[-1:] or ''}")
    if status == 2:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        raise CliRefusal(lines[-1] if lines else "(exit 2, no message)")
    return status, out.getvalue(), text


def from_json_output(text: str) -> dict:
    """The JSON object a command printed (``convert`` prints its report)."""
    start = text.index("{")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def copy_in(src: Path, dst: Path) -> None:
    """Copy a corpus file into a probe folder, keeping a symlink a symlink."""
    if src.is_symlink():
        dst.symlink_to(src.readlink())
    else:
        shutil.copyfile(src, dst)

