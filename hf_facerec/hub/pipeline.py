"""transformers pipelines for face models: ``face-verification`` and face embeddings.

Importing this module (``import hf_facerec.hub`` does) registers, through ``PIPELINE_REGISTRY``:

* ``face-verification`` (:class:`FaceVerificationPipeline`): two images -> cosine score and a decision at the
  threshold calibrated for the model (``config.verification_thresholds``, default FAR 1e-3), with the FAR and the
  pair set it was set on;
* ``face-feature-extraction`` (:class:`FaceFeatureExtractionPipeline`): one image -> its face embedding. The
  built-in ``image-feature-extraction`` task also returns the embedding of a FaceRec model (its first output) for
  aligned crops; pass ``pipeline_class=FaceFeatureExtractionPipeline`` to it for detection + alignment and flip TTA.

Inputs: paths, http(s) URLs, base64 strings, bytes, PIL images or arrays (``load_rgb``). Input policy (``align``,
:class:`~hf_facerec.data.preprocess.FaceInput`): an image whose size is the model's face size (width x height) is
taken as an aligned crop; any other image is detected and aligned to the template matching the model's input size,
by default with the package's default detector (``detector="auto"``: YuNet if ``$HF_FACEREC_YUNET`` is set, else
dlib, offline) or the one given (``detector="yunet", detector_model=path``, a `FaceDetector` or a `FaceAligner`).
With several faces the ``policy`` picks one (default ``"largest"``) and the output says how many there were and
which detector found it. ``align="never"`` resizes every image instead; ``align="always"`` detects on every image.

Without the package: :func:`add_pipeline_code` (and the pipelines' ``save_pretrained``) writes the pipeline code
flat next to the weights and ``custom_pipelines`` into ``config.json``, so
``pipeline("face-verification", model=folder, trust_remote_code=True)`` works where ``hf_facerec`` is not installed.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ..data.preprocess import ALIGN_MODES, FaceInput
from .calibration import stored_threshold

__all__ = ["ALIGN_MODES", "FaceFeatureExtractionPipeline", "FaceVerificationPipeline", "add_pipeline_code",
           "register_pipelines"]

class _FacePipelineMixin:
    """Shared by both pipelines: aligner set-up, image -> aligned crop, crops -> embeddings with flip TTA."""

    # Only the image processor: leaving the others unset makes pipeline() probe for a video processor, which asks
    # whether to trust the folder's remote code although the registered local classes are used.
    _load_processor = False
    _load_image_processor = True
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _configure_faces(self, detector=None, detector_model=None, policy=None, min_score=None, align=None,
                         flip=None) -> None:
        """Set (once, at construction or when passed again) how faces are found and embedded."""
        if not hasattr(self, "_faces"):
            self._face_size = tuple(self.model.config.face_size)
            self._flip = getattr(self.model.config, "threshold_flip", None) or "none"
            self._face_options = {"detector": "auto", "detector_model": None, "policy": "largest", "min_score": 0.5,
                                  "align": "auto"}
            self._faces = None
            if self.image_processor is None:
                from ..models.image_processing_facerec import FaceRecImageProcessor

                height, width = self._face_size
                self.image_processor = FaceRecImageProcessor(size={"height": height, "width": width})
        if flip is not None:
            from ..embedding import FLIP_MODES

            if flip not in FLIP_MODES:
                raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
            self._flip = flip
        given = {"detector": detector, "detector_model": detector_model, "policy": policy, "min_score": min_score,
                 "align": align}
        given = {key: value for key, value in given.items() if value is not None}
        if given or self._faces is None:
            self._face_options.update(given)
            self._faces = FaceInput(self._face_size, **self._face_options)  # checks align; builds the detector lazily

    def _face(self, image, key: str) -> tuple[object, dict]:
        """(crop ready for the processor, info) for one input image (path, URL, base64, bytes, PIL, array)."""
        name = f"{key} ({image!r})" if isinstance(image, (str, os.PathLike)) and len(str(image)) < 200 else None
        return self._faces.face(image, name or f"{key} ({type(image).__name__})")

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """Save the model, its image processor and the remote pipeline code (:func:`add_pipeline_code`)."""
        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        self.image_processor.save_pretrained(save_directory)
        add_pipeline_code(save_directory)

    def _pixel_values(self, crops: list) -> torch.Tensor:
        batch = self.image_processor(images=crops, return_tensors="pt")["pixel_values"]
        return batch.to(device=self.device, dtype=self.dtype if self.dtype.is_floating_point else torch.float32)

    def _embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D) unit embeddings (D doubles with flip "concat"): FaceEmbedder's flip TTA."""
        from ..embedding import FaceEmbedder

        embedder = FaceEmbedder(self.model, self.image_processor, flip=self._flip, device=self.device)
        return embedder.embed_pixel_values(pixel_values)


class FaceVerificationPipeline(_FacePipelineMixin, Pipeline):
    """Are two face images the same person?

    Example:
        >>> verify = pipeline("face-verification", model="org/name", detector="yunet", detector_model="yunet.onnx")
        >>> verify("a.jpg", "b.jpg")
        {'score': 0.62, 'is_same': True, 'threshold': 0.31, 'far': '1e-03', 'pair_set': '...', 'faces': [...]}

    Call arguments: two images (or a dict ``{"image1", "image2"}``, or a list of such dicts); ``far`` (a stored FAR,
    e.g. ``1e-2``) or ``threshold`` (explicit) override the operating point; construction arguments ``detector``,
    ``detector_model``, ``policy``, ``min_score``, ``align``, ``flip`` (default: the flip the thresholds were
    calibrated with). ``is_same``/``threshold`` are None when the model has no calibrated threshold and none is given.
    """

    def _sanitize_parameters(self, detector=None, detector_model=None, policy=None, min_score=None, align=None,
                             flip=None, far=None, threshold=None, **kwargs):
        self._configure_faces(detector, detector_model, policy, min_score, align, flip)
        postprocess = {}
        if far is not None:
            postprocess["far"] = far
        if threshold is not None:
            postprocess["threshold"] = float(threshold)
        return {}, {}, postprocess

    def __call__(self, image1, image2=None, **kwargs):
        if image2 is not None:
            image1 = {"image1": image1, "image2": image2}
        return super().__call__(image1, **kwargs)

    def preprocess(self, inputs) -> dict:
        if not isinstance(inputs, dict) or not {"image1", "image2"} <= set(inputs):
            raise ValueError("face-verification takes two images: verify(image1, image2) or {'image1', 'image2'}")
        crops, faces = zip(*(self._face(inputs[key], key) for key in ("image1", "image2")))
        return {"pixel_values": self._pixel_values(list(crops)), "faces": list(faces)}

    def _forward(self, model_inputs: dict) -> dict:
        embeddings = self._embed(model_inputs["pixel_values"])
        return {"score": float(embeddings[0] @ embeddings[1]), "faces": model_inputs["faces"]}

    def postprocess(self, model_outputs: dict, far=None, threshold=None) -> dict:
        result = {"score": model_outputs["score"], "is_same": None, "threshold": threshold, "far": None,
                  "pair_set": None, "flip": self._flip, "faces": model_outputs["faces"]}
        if threshold is None:
            config = self.model.config
            if far is not None or config.verification_thresholds:
                result["far"], result["threshold"] = stored_threshold(config, far)
                result["pair_set"] = config.threshold_pair_set
        if result["threshold"] is not None:
            result["is_same"] = bool(result["score"] >= result["threshold"])
        return result


class FaceFeatureExtractionPipeline(_FacePipelineMixin, Pipeline):
    """One image -> its face embedding (a list of D floats; a (D,) tensor with ``return_tensors=True``).

    Construction arguments as for :class:`FaceVerificationPipeline` (detector, policy, align, flip).
    """

    def _sanitize_parameters(self, detector=None, detector_model=None, policy=None, min_score=None, align=None,
                             flip=None, return_tensors=None, **kwargs):
        self._configure_faces(detector, detector_model, policy, min_score, align, flip)
        return {}, {}, ({"return_tensors": return_tensors} if return_tensors is not None else {})

    def preprocess(self, image) -> dict:
        crop, face = self._face(image, "image")
        return {"pixel_values": self._pixel_values([crop]), "face": face}

    def _forward(self, model_inputs: dict) -> dict:
        return {"embedding": self._embed(model_inputs["pixel_values"])[0]}

    def postprocess(self, model_outputs: dict, return_tensors: bool = False):
        embedding = model_outputs["embedding"].cpu()
        return embedding if return_tensors else embedding.tolist()


_TASKS = {"face-verification": "FaceVerificationPipeline", "face-feature-extraction": "FaceFeatureExtractionPipeline",
          "image-feature-extraction": "FaceFeatureExtractionPipeline"}
#: Module name of this file in a saved folder (transformers resolves ``custom_pipelines`` "module.Class" there).
REMOTE_MODULE = "pipeline_facerec"
# Package modules the pipeline never runs: their imports become an ImportError in the remote copy
# (data/pairs.py needs `datasets`; only calibration's calibrate_* functions import it).
_NOT_BUNDLED = ("data/pairs.py",)
_FROM_IMPORT = re.compile(r"from\s+[\w.]+\s+import")


def register_pipelines() -> None:
    """Register ``face-verification`` and ``face-feature-extraction`` (idempotent)."""
    for task, pipeline_class in (("face-verification", FaceVerificationPipeline),
                                 ("face-feature-extraction", FaceFeatureExtractionPipeline)):
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=AutoModel, type="image")


def add_pipeline_code(folder: str | os.PathLike) -> list[str]:
    """Make a saved model folder a self-contained pipeline: write this module (as ``pipeline_facerec.py``) and every
    package module it imports flat next to the weights, with the imports made single-dot, and ``custom_pipelines``
    into ``config.json``, so ``pipeline(task, model=folder, trust_remote_code=True)`` needs no ``hf_facerec``
    (for "face-verification", "face-feature-extraction" and "image-feature-extraction").

    Note: transformers then asks for ``trust_remote_code=True`` for these tasks even where the package is installed.

    Returns:
        The file names written (the module files, then ``config.json``).
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{folder} is not a saved model folder (no config.json): save the model there first")
    written = []
    for name, text in _bundle_sources().items():
        (folder / f"{name}.py").write_text(text, encoding="utf-8")
        written.append(f"{name}.py")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["custom_pipelines"] = {task: {"impl": f"{REMOTE_MODULE}.{class_name}", "pt": ["AutoModel"], "type": "image"}
                                  for task, class_name in _TASKS.items()}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [*written, "config.json"]


def _bundle_sources() -> dict[str, str]:
    """Flat module name -> source, for this file and the package modules it imports (at any depth, top-level or
    inside functions), each ``from <package module> import`` rewritten to ``from .<file stem> import``."""
    root = Path(__file__).resolve().parents[1]
    sources: dict[str, tuple[Path, str]] = {}
    todo = [Path(__file__).resolve()]
    while todo:
        path = todo.pop()
        name = REMOTE_MODULE if path == Path(__file__).resolve() else _flat_name(path)
        if name in sources:
            if sources[name][0] != path:  # two package files would land on one flat name
                raise RuntimeError(f"remote pipeline code: {path} and {sources[name][0]} share the name {name}.py")
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("hf_facerec")):
                continue
            target = _module_file(root, path, node)
            line = lines[node.lineno - 1]
            if target.relative_to(root).as_posix() in _NOT_BUNDLED:
                indent = line[: len(line) - len(line.lstrip())]
                lines[node.lineno - 1] = f'{indent}raise ImportError("this needs the hf_facerec package")\n'
                for extra in range(node.lineno, node.end_lineno):
                    lines[extra] = ""
                continue
            lines[node.lineno - 1] = _FROM_IMPORT.sub(f"from .{_flat_name(target)} import", line, count=1)
            todo.append(target)
        sources[name] = (path, "".join(lines))
    return {name: text for name, (_, text) in sources.items()}


def _flat_name(path: Path) -> str:
    """A module's name in the flat copy: its file stem; a package's ``__init__`` takes the package's name."""
    return path.parent.name if path.name == "__init__.py" else path.stem


def _module_file(root: Path, path: Path, node: ast.ImportFrom) -> Path:
    """The package file an import statement of ``path`` names (a module file or a package's ``__init__``)."""
    base = root.parent if node.level == 0 else path.parents[node.level - 1]
    target = base.joinpath(*[part for part in (node.module or "").split(".") if part])
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if node.module and candidate.is_file():
            return candidate
    raise RuntimeError(f"remote pipeline code: {path.name}:{node.lineno} imports {'.' * node.level}{node.module}, "
                       "which is not a package module file (write `from .module import name`)")


register_pipelines()
