"""transformers pipelines for face models: ``face-verification`` and face embeddings.

Importing this module (``import hf_facerec.hub`` does) registers, through ``PIPELINE_REGISTRY``:

* ``face-verification`` (:class:`FaceVerificationPipeline`): two images -> cosine score and a decision at the
  threshold calibrated for the model (``config.verification_thresholds``, default FAR 1e-3), with the FAR and the
  pair set it was set on;
* ``face-feature-extraction`` (:class:`FaceFeatureExtractionPipeline`): one image -> its face embedding. The
  built-in ``image-feature-extraction`` task also returns the embedding of a FaceRec model (its first output) for
  aligned crops; pass ``pipeline_class=FaceFeatureExtractionPipeline`` to it for detection + alignment and flip TTA.

Input policy (``align``): an image whose size is the model's face size (width x height) is taken as an aligned crop;
any other image is detected and aligned when a detector is given (``detector="yunet", detector_model=path``, or a
`FaceDetector` / `FaceAligner`), to the template matching the model's input size. With several faces the
``policy`` picks one (default ``"largest"``: the biggest box) and the output says how many there were. Without a
detector such an image is a ``ValueError`` (``align="never"`` resizes it instead). ``align="always"`` detects on every
image.
"""

from __future__ import annotations

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ..data.images import load_rgb
from .calibration import stored_threshold

__all__ = ["ALIGN_MODES", "FaceFeatureExtractionPipeline", "FaceVerificationPipeline", "register_pipelines"]

ALIGN_MODES = ("auto", "always", "never")


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
        if not hasattr(self, "_aligner"):
            self._aligner, self._align, self._face_size = None, "auto", tuple(self.model.config.face_size)
            self._flip = getattr(self.model.config, "threshold_flip", None) or "none"
            if self.image_processor is None:
                from ..models import FaceRecImageProcessor

                height, width = self._face_size
                self.image_processor = FaceRecImageProcessor(size={"height": height, "width": width})
        if align is not None:
            if align not in ALIGN_MODES:
                raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
            self._align = align
        if flip is not None:
            from ..embedding import FLIP_MODES

            if flip not in FLIP_MODES:
                raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
            self._flip = flip
        if detector is not None:
            self._aligner = self._build_aligner(detector, detector_model, policy or "largest",
                                                0.5 if min_score is None else min_score)
        if self._align == "always" and self._aligner is None:
            raise ValueError("align='always' needs a detector (detector='yunet', detector_model=...)")

    def _build_aligner(self, detector, detector_model, policy, min_score):
        from ..data.align import FaceAligner

        if isinstance(detector, FaceAligner):
            return detector
        return FaceAligner.for_face_size(self._face_size, detector, detector_model, policy=policy, min_score=min_score)

    def _face(self, image) -> tuple[object, dict]:
        """(crop ready for the processor, info) for one input image (path, URL-less source, PIL, array)."""
        rgb = load_rgb(image)
        height, width = self._face_size
        is_crop = rgb.size == (width, height)
        if self._align == "never" or (self._align == "auto" and is_crop):
            return rgb, {"aligned": False, "num_faces": None}
        if self._aligner is None:
            raise ValueError(
                f"the image is {rgb.size[0]}x{rgb.size[1]}, not an aligned {width}x{height} (WxH) face crop: pass a "
                "detector (detector='yunet', detector_model=path) to detect and align it, or align='never' to resize"
            )
        face = self._aligner(rgb, return_detection=True)
        info = {"aligned": True, "num_faces": face.num_faces, "box": [round(v, 1) for v in face.detection.box.tolist()],
                "detection_score": face.detection.score, "policy": self._aligner.policy}
        return face.image, info

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
        crops, faces = zip(*(self._face(inputs[key]) for key in ("image1", "image2")))
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
        crop, face = self._face(image)
        return {"pixel_values": self._pixel_values([crop]), "face": face}

    def _forward(self, model_inputs: dict) -> dict:
        return {"embedding": self._embed(model_inputs["pixel_values"])[0]}

    def postprocess(self, model_outputs: dict, return_tensors: bool = False):
        embedding = model_outputs["embedding"].cpu()
        return embedding if return_tensors else embedding.tolist()


def register_pipelines() -> None:
    """Register ``face-verification`` and ``face-feature-extraction`` (idempotent)."""
    for task, pipeline_class in (("face-verification", FaceVerificationPipeline),
                                 ("face-feature-extraction", FaceFeatureExtractionPipeline)):
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=AutoModel, type="image")


register_pipelines()
