"""The logic of the Gradio Space ``spaces/facerec-demo``: everything but the layout, testable without a browser.

(:mod:`.operating_points` holds the thresholds; :mod:`.uploads` and :mod:`.dashboard` the upload and bias-tab helpers.)

* :func:`load_demo` picks the model: ``$FACEREC_MODEL`` (a Hub id or a folder), else the main job's output
  ``outputs/quickstart/model`` when it exists, else a small UNTRAINED model built from a config (under a second;
  its scores mean nothing and the Space says so). The detector is YuNet when ``$FACEREC_DETECTOR_MODEL`` names an
  ONNX file, else dlib, whose weights come from PyPI: the Space starts with no network.
* :class:`FaceRecDemo` does the tabs' work: detect + align + embed (:meth:`~FaceRecDemo.find_faces`), verify two
  photos at an operating point (:meth:`~FaceRecDemo.verify`), build a per-session gallery and search it.
* Operating points (threshold + the FAR it was set for, + the pairs it was measured on) come from the model config's
  ``verification_thresholds`` (``hf_facerec.hub.calibration``) when present, else from the model's results JSON (bias
  reports' TAR@FAR thresholds, the EER threshold). Only the SYNTHETIC default model (the untrained fallback, or a
  quickstart model trained on synthetic faces) is calibrated on, and shows figures of, synthetic drawings
  (:func:`evaluate_synthetic`); any other model without calibration decides at an UNCALIBRATED custom threshold,
  and the Space says so.

Every problem a user can cause raises :class:`SpaceInputError` with a message written for them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hf_facerec.demo.operating_points import (
    UNCALIBRATED_THRESHOLD,
    FaceIndexError,
    OperatingPoint,
    SpaceInputError,
    operating_points_from_config,
    operating_points_from_results,
    trained_on_synthetic,
    uncalibrated_point,
    verification_reports,
    without_synthetic,
)
from hf_facerec.data.align import AlignedFace, FaceAligner
from hf_facerec.data.detectors.base import FaceDetector, build_detector
from hf_facerec.data.images import InvalidImageError, load_rgb

MODEL_ENV_VAR = "FACEREC_MODEL"
DETECTOR_ENV_VAR = "FACEREC_DETECTOR_MODEL"
#: The main job's model (``hf-facerec quickstart`` writes it), used when no model is named.
DEFAULT_MODEL_DIR = Path("outputs/quickstart/model")
#: Decoded pixels allowed per uploaded photo: 25 MP (a 6000x4000 camera photo); larger ones are refused.
MAX_IMAGE_PIXELS = 25_000_000
#: Images longer than this are shown downscaled (detection still runs at full resolution).
_PREVIEW_SIDE = 768

__all__ = [
    "DEFAULT_MODEL_DIR", "DETECTOR_ENV_VAR", "MAX_IMAGE_PIXELS", "MODEL_ENV_VAR", "UNCALIBRATED_THRESHOLD",
    "FaceIndexError", "FaceRecDemo", "FoundFaces", "Gallery", "OperatingPoint", "SpaceInputError", "VerifyResult",
    "build_untrained_model", "evaluate_synthetic", "face_number", "load_demo", "operating_points_from_config",
    "operating_points_from_results", "verification_reports",
]


# ---- model loading -------------------------------------------------------------------------------


def build_untrained_model(seed: int = 0):
    """A small FaceRec ViT (~0.3M parameters, 112x112 input, 128-d embeddings) with seeded random weights: the
    last-resort offline default. Building it takes milliseconds; its similarity scores carry no identity."""
    import torch
    from transformers import ViTConfig

    from hf_facerec.models import FaceRecConfig, FaceRecModel

    backbone = ViTConfig(image_size=112, patch_size=16, hidden_size=96, num_hidden_layers=2, num_attention_heads=3,
                         intermediate_size=192)
    torch.manual_seed(seed)
    return FaceRecModel(FaceRecConfig(backbone_config=backbone, embedding_size=128)).eval()


def _read_text(model: str, filename: str, parents: bool = False) -> str | None:
    """A text file of a model folder (or its parent, with ``parents``) or Hub repo; None when absent."""
    folder = Path(model)
    if folder.is_dir():
        for candidate in [folder / filename] + ([folder.parent / filename] if parents else []):
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8")
        return None
    try:  # a Hub id: the card and results are optional extras, never a reason to fail
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, filename)).read_text(encoding="utf-8")
    except Exception:  # noqa: BLE001 - offline, missing file, no such repo: all mean "no card/results"
        return None


def _default_detector(detector_model: str | os.PathLike | None) -> FaceDetector:
    path = detector_model or os.environ.get(DETECTOR_ENV_VAR)
    return build_detector("yunet", model_path=path) if path else build_detector("dlib")


def load_demo(
    model: str | os.PathLike | None = None,
    detector: FaceDetector | None = None,
    detector_model: str | os.PathLike | None = None,
    calibration_pairs: int = 200,
) -> FaceRecDemo:
    """Everything the Space needs, from a model name (see the module docstring for the fallbacks).

    Args:
        model: a Hub id or a folder; default ``$FACEREC_MODEL``, then :data:`DEFAULT_MODEL_DIR`, then an untrained model.
        detector: a ready detector (tests pass a stub); default from ``detector_model`` / ``$FACEREC_DETECTOR_MODEL``.
        calibration_pairs: synthetic pairs used to set operating points (and fill the bias and benchmark tables) of
            the untrained fallback model, the only model for which synthetic drawings are a fair test; 0 disables it.
    """
    from hf_facerec.embedding import FLIP_MODES, FaceEmbedder

    name = model or os.environ.get(MODEL_ENV_VAR) or (str(DEFAULT_MODEL_DIR) if DEFAULT_MODEL_DIR.is_dir() else None)
    if name is not None:
        embedder = FaceEmbedder.from_pretrained(os.fspath(name), flip="sum", batch_size=32)
        # calibrated thresholds hold only for scores made the same way: use the calibration's flip TTA
        flip = getattr(embedder.model.config, "threshold_flip", None)
        embedder.flip = flip if flip in FLIP_MODES else embedder.flip
        card = _read_text(os.fspath(name), "README.md") or f"No model card found for `{name}`."
        results_text = _read_text(os.fspath(name), "results.json", parents=True)
        results = json.loads(results_text) if results_text else None
        source, synthetic, hidden = os.fspath(name), trained_on_synthetic(results), []
        if not synthetic:  # drawings say nothing about a model for real photos: neither figures nor thresholds
            results, hidden = without_synthetic(results)
    else:
        embedder = FaceEmbedder(build_untrained_model(), flip="sum", batch_size=32)
        card = ("**Untrained demo model.** No `FACEREC_MODEL` was set and no `outputs/quickstart/model` exists, so the "
                "Space built a small ViT with random weights: every tab works, but the scores say nothing about "
                "identity. Set `FACEREC_MODEL` to a Hub id or a folder (e.g. the output of `hf-facerec quickstart`).")
        results, source, synthetic, hidden = None, "untrained ViT (random weights)", True, []
    points = operating_points_from_config(embedder.model.config)
    if results is not None and not points:
        points = operating_points_from_results(results)
    if synthetic and not points and results is None and calibration_pairs > 0:  # the synthetic model: measure a little
        results = evaluate_synthetic(embedder, n_pairs=calibration_pairs)
        eer = [p for p in operating_points_from_results(results) if p.name.startswith("EER")]
        points = operating_points_from_config(results, "synthetic pairs") + eer
    return FaceRecDemo(embedder, detector or _default_detector(detector_model), points, card, results, source,
                       synthetic=synthetic, hidden_benchmarks=hidden)


def evaluate_synthetic(embedder, n_pairs: int = 300, far: float = 0.1, seed: int = 0) -> dict:
    """A small verification + bias evaluation on SYNTHETIC pairs (groups A, B, C; aligned crops, no detector).

    Returns a quickstart-style summary: ``{"data", "benchmark_name", "results": {"verification", "bias"},
    "verification_thresholds": {far: threshold}}`` with thresholds at every FAR the impostor pairs can resolve.
    """
    from hf_facerec.data.pairs import pair_image_sources
    from hf_facerec.data.preprocess import build_preprocess
    from hf_facerec.data.synthetic import make_synthetic_pairs
    from hf_facerec.evaluation import (
        bias_report,
        groups_with_both_classes,
        pair_scores,
        threshold_at_far,
        verification_report,
    )

    if not 20 <= n_pairs <= 20_000:
        raise SpaceInputError(f"Use between 20 and 20000 synthetic pairs, got {n_pairs}.")
    per_fold = 2 * max(1, n_pairs // 20)
    pairs = make_synthetic_pairs(max(20, n_pairs // 5), pairs_per_fold=per_fold, seed=seed, groups=("A", "B", "C"))
    preprocess, _ = build_preprocess(embedder.model.config.face_size)  # centre crop to the model's aspect
    sources, first, second = pair_image_sources(pairs)
    scores = pair_scores(embedder(sources, progress=False, preprocess=preprocess), first, second)
    half = len(pairs)
    labels = np.asarray(pairs["is_same"], dtype=bool)
    folds, groups = np.asarray(pairs["fold"]), np.asarray(pairs["group"], dtype=object)
    # "mixed" cross-group impostors have no FNMR, and a tiny set may lack some classes
    paired = groups_with_both_classes(labels, groups)
    keep = np.isin(groups, paired)
    n_impostor = int(np.count_nonzero(~labels))
    fars = [f for f in (1e-1, 1e-2, 1e-3) if f * n_impostor >= 1]
    return {
        "data": f"{half} synthetic pairs (hf_facerec.data.synthetic, seed {seed}), groups A, B, C",
        "benchmark_name": "synthetic",
        "results": {"verification": verification_report(scores, labels, folds=folds),
                    "bias": bias_report(scores[keep], labels[keep], groups[keep], far=far, folds=folds[keep])
                    if len(paired) >= 2 else {"skipped": f"groups with genuine and impostor pairs: {paired.tolist()}"}},
        "verification_thresholds": {f"{f:.0e}": threshold_at_far(scores, labels, f) for f in fars},  # "1e-02"
    }


# ---- faces, verification, identification ---------------------------------------------------------


def face_number(value, what: str = "the photo") -> int:
    """A face number as typed (None / "" = 0, 2, 2.0, "2") -> int >= 0 (0 = the largest face, 1-based otherwise).

    Raises:
        FaceIndexError: NaN, a fraction, a negative number or text, naming the photo it was for.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number != int(number) or number < 0:
        raise FaceIndexError(f"The face number for {what} must be a whole number: 0 for the largest face, 1, 2, ... "
                             f"to pick another; got {value!r}.")
    return int(number)


@dataclass
class FoundFaces:
    """The faces of one photo: ``faces`` largest first, ``chosen`` the index used, ``note`` what the user should know."""

    image: Image.Image
    faces: list[AlignedFace]
    chosen: int
    note: str = ""

    @property
    def crop(self) -> Image.Image:
        return self.faces[self.chosen].image

    def annotated(self) -> Image.Image:
        """The photo (downscaled to at most ``_PREVIEW_SIDE``) with numbered boxes and landmarks, the chosen face green."""
        scale = min(1.0, _PREVIEW_SIDE / max(self.image.size))
        canvas = self.image.resize((round(self.image.width * scale), round(self.image.height * scale))) if scale < 1 else self.image.copy()
        draw = ImageDraw.Draw(canvas)
        width = max(2, round(max(canvas.size) / 200))
        for index, face in enumerate(self.faces):
            colour = (0, 200, 0) if index == self.chosen else (230, 160, 0)
            box = (face.detection.box * scale).tolist()
            draw.rectangle(box, outline=colour, width=width)
            draw.text((box[0] + 3, box[1] + 2), str(index + 1), fill=colour)
            for x, y in face.detection.landmarks * scale:
                draw.ellipse((x - width, y - width, x + width, y + width), fill=colour)
        return canvas


@dataclass
class VerifyResult:
    """One verification: cosine ``score`` of the two chosen faces and the decision at ``point``."""

    score: float
    point: OperatingPoint
    first: FoundFaces
    second: FoundFaces

    @property
    def same(self) -> bool:
        return self.score >= self.point.threshold

    def summary(self) -> str:
        verdict = "**Same person**" if self.same else "**Different people**"
        if self.point.calibrated:
            far = f"set for a false accept rate of {self.point.far:g}"
        else:  # a bare number: say so, so nobody reads it as a measured operating point
            far = "UNCALIBRATED: no false accept rate is known for this threshold"
        notes = "".join(f"\n\n{n}" for n in (self.first.note, self.second.note) if n)
        return (f"{verdict}: similarity {self.score:.3f} {'>=' if self.same else '<'} threshold {self.point.threshold:.3f} "
                f"({self.point.name}, {far}; {self.point.source}).{notes}")


@dataclass
class Gallery:
    """A per-session gallery: one pooled unit template per identity. ``templates`` (K, D); ``counts`` images per name."""

    names: list[str]
    templates: np.ndarray
    counts: list[int]
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"Gallery: {len(self.names)} identities from {sum(self.counts)} face images."
        return text + ("".join(f"\n- skipped {s}" for s in self.skipped[:20]) if self.skipped else "")


class FaceRecDemo:
    """Detector + aligner + embedder + operating points: the Space's verbs.

    Args:
        embedder: a :class:`~hf_facerec.FaceEmbedder` (flip TTA as configured there).
        detector: any :class:`~hf_facerec.data.detectors.base.FaceDetector`.
        operating_points: thresholds measured for this model, offered in the Verify tab (a custom, uncalibrated
            threshold is always possible; with none, it is the only choice).
        card, results, model_source: shown in the Model and Bias tabs.
        synthetic: the model is the synthetic default (untrained, or trained on synthetic faces): synthetic figures
            and the synthetic bias evaluation are shown for it only.
        hidden_benchmarks: synthetic benchmarks removed from ``results`` (the Model tab says so).
    """

    def __init__(self, embedder, detector: FaceDetector, operating_points: Sequence[OperatingPoint], card: str = "",
                 results: dict | None = None, model_source: str = "", min_score: float = 0.5,
                 max_pixels: int = MAX_IMAGE_PIXELS, synthetic: bool = False, hidden_benchmarks: Sequence[str] = ()):
        self.embedder, self.detector = embedder, detector
        self.aligner = FaceAligner.for_face_size(embedder.model.config.face_size, detector, policy="largest",
                                                 min_score=min_score)
        self.operating_points = list(operating_points)
        self.card, self.results, self.model_source, self.max_pixels = card, results, model_source, max_pixels
        self.synthetic, self.hidden_benchmarks = synthetic, list(hidden_benchmarks)

    @property
    def calibrated(self) -> bool:
        """True when some threshold was measured for this model."""
        return any(p.calibrated for p in self.operating_points)

    def point(self, choice: str | float | OperatingPoint | None) -> OperatingPoint:
        """An operating point from its label or name, a bare threshold (uncalibrated), or None (the first point;
        without any, the uncalibrated default :data:`UNCALIBRATED_THRESHOLD`)."""
        if isinstance(choice, OperatingPoint):
            return choice
        if isinstance(choice, (int, float)) and not isinstance(choice, bool):
            if not -1.0 <= choice <= 1.0:  # also refuses NaN
                raise SpaceInputError(f"A cosine threshold lies in [-1, 1]; got {choice}.")
            return uncalibrated_point(choice)
        for p in self.operating_points:
            if choice in (p.label, p.name):
                return p
        if choice:
            raise SpaceInputError(f"Unknown operating point {choice!r}; choose one of {[p.name for p in self.operating_points]}.")
        return self.operating_points[0] if self.operating_points else uncalibrated_point(UNCALIBRATED_THRESHOLD)

    def _load(self, source, what: str) -> Image.Image:
        if source is None:
            raise SpaceInputError(f"Please add {what}.")
        try:
            return load_rgb(source, max_pixels=self.max_pixels)
        except InvalidImageError as err:
            if "max_pixels" in str(err) or "bomb" in str(err):
                raise SpaceInputError(f"{what.capitalize()} is too large: at most {self.max_pixels / 1e6:g} megapixels, please.") from err
            raise SpaceInputError(f"{what.capitalize()} is not an image we can read (JPEG, PNG, WebP, ...).") from err

    def find_faces(self, source, what: str = "the photo", pick=0) -> FoundFaces:
        """Detect and align every face; keep face ``pick`` (1-based, largest first; 0 = the largest).

        Raises:
            FaceIndexError: ``pick`` is not a whole number >= 0 (checked before any detection) or beyond the faces found.
            SpaceInputError: no readable image or no face.
        """
        pick = face_number(pick, what)
        image = self._load(source, what)
        faces = sorted(self.aligner.align_all(image), key=lambda f: -f.detection.area)
        if not faces:
            raise SpaceInputError(f"No face found in {what}. Use a photo with a clear, roughly frontal face.")
        if pick > len(faces):
            raise FaceIndexError(f"Face number {pick} for {what}, which has {len(faces)} face(s): pick a face number "
                                 f"from 1 to {len(faces)} (0 = largest).")
        chosen = max(pick - 1, 0)
        note = ""
        if len(faces) > 1:
            note = (f"{len(faces)} faces found in {what}; using face {chosen + 1} (green, "
                    f"{'the largest' if pick == 0 else 'your pick'}). Set the face number to compare another one.")
        return FoundFaces(image, faces, chosen, note)

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) unit embeddings of aligned crops."""
        return self.embedder(list(crops), progress=False)

    def verify(self, source1, source2, point=None, pick1=0, pick2=0) -> VerifyResult:
        """Compare the chosen faces of two photos; decide at ``point`` (see :meth:`point`)."""
        operating_point = self.point(point)
        pick1, pick2 = face_number(pick1, "the first photo"), face_number(pick2, "the second photo")  # before any work
        first = self.find_faces(source1, "the first photo", pick1)
        second = self.find_faces(source2, "the second photo", pick2)
        embeddings = self.embed([first.crop, second.crop])
        return VerifyResult(float(embeddings[0] @ embeddings[1]), operating_point, first, second)

    def build_gallery(self, items: Sequence[tuple[str, object]]) -> Gallery:
        """A gallery from ``(identity, image source)`` items; images without a readable face are skipped (listed).

        Raises:
            SpaceInputError: no item, or no usable face at all.
        """
        from hf_facerec.evaluation.scoring import template_embeddings

        if not items:
            raise SpaceInputError("The gallery is empty: upload images named after the person (alice_1.jpg) or a zip with one folder per person.")
        names, crops, skipped = [], [], []
        for identity, source in items:
            try:
                crops.append(self.find_faces(source, f"image of {identity}").crop)
                names.append(identity)
            except SpaceInputError as err:
                skipped.append(f"{identity}: {err}")
        if not crops:
            raise SpaceInputError("No face found in any gallery image:\n" + "\n".join(skipped[:10]))
        ids, templates = template_embeddings(self.embed(crops), np.asarray(names))
        counts = np.unique(np.asarray(names), return_counts=True)[1]
        return Gallery([str(i) for i in ids], templates, counts.tolist(), skipped)

    def identify(self, probe, gallery: Gallery | None, k: int = 5, pick=0) -> tuple[FoundFaces, list[tuple[str, float]]]:
        """Top-``k`` identities of the probe's chosen face: ``[(name, cosine score)]``, best first."""
        from hf_facerec.evaluation.identification import top_k

        if gallery is None or not gallery.names:
            raise SpaceInputError("The gallery is empty: build it first (step 1).")
        found = self.find_faces(probe, "the probe photo", pick)
        scores, indices = top_k(self.embed([found.crop]), gallery.templates, k=k)
        return found, [(gallery.names[i], float(s)) for s, i in zip(scores[0], indices[0])]
