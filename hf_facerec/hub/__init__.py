"""Sharing face models: Hub push with generated cards, calibrated thresholds, pipelines, ONNX.

Importing ``hf_facerec.hub`` registers the ``face-verification`` and ``face-feature-extraction`` pipelines.

* :func:`push_to_hub` / ``hf-facerec push``: weights, configs, remote code, card, results and plots in one commit.
* :func:`build_model_card` / :func:`write_model_card`: the card from a results summary.
* :func:`calibrate_thresholds`, :func:`store_thresholds`: thresholds at FAR 1e-2/1e-3/1e-4 on a named pair set.
* :func:`export_onnx` / ``hf-facerec export onnx`` and :class:`OnnxFaceEmbedder` (onnxruntime, CPU serving).
"""

from .calibration import (
    CALIBRATION_FARS,
    ThresholdCalibration,
    all_pairs,
    calibrate_embeddings,
    calibrate_pairs,
    calibrate_thresholds,
    store_thresholds,
    stored_threshold,
)
from .card import build_model_card, training_summary, write_model_card
from .onnx import OnnxExportError, OnnxFaceEmbedder, export_onnx
from .pipeline import FaceFeatureExtractionPipeline, FaceVerificationPipeline, register_pipelines
from .push import prepare_upload_folder, push_to_hub

__all__ = [
    "CALIBRATION_FARS",
    "FaceFeatureExtractionPipeline",
    "FaceVerificationPipeline",
    "OnnxExportError",
    "OnnxFaceEmbedder",
    "ThresholdCalibration",
    "all_pairs",
    "build_model_card",
    "calibrate_embeddings",
    "calibrate_pairs",
    "calibrate_thresholds",
    "export_onnx",
    "prepare_upload_folder",
    "push_to_hub",
    "register_pipelines",
    "store_thresholds",
    "stored_threshold",
    "training_summary",
    "write_model_card",
]
