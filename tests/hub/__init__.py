"""Tests of hf_facerec.hub: cards, push (against a local Hub stand-in), calibration, pipelines, ONNX."""

from __future__ import annotations

import torch

from hf_facerec.models import FaceRecConfig, FaceRecModel, MobileFaceNetConfig


def tiny_facerec(seed: int = 0, face_size=(112, 96), embedding_size: int = 16) -> FaceRecModel:
    """A tiny MobileFaceNet-backed FaceRecModel (eval mode; random weights drawn under `seed`)."""
    torch.manual_seed(seed)
    backbone = MobileFaceNetConfig(image_size=list(face_size), stem_size=8, feature_size=32, embedding_size=16,
                                   bottleneck_settings=[[2, 8, 1, 2], [2, 16, 1, 2], [2, 16, 1, 2]])
    config = FaceRecConfig(backbone_config=backbone, embedding_size=embedding_size, image_size=list(face_size),
                           embedding_head="linear")
    return FaceRecModel(config).eval()
