"""hf_facerec: face recognition as a first-class citizen of the Hugging Face ecosystem.

Importing the package registers its model families with the transformers Auto classes.
"""

from ._registration import register_auto_classes
from .models import (
    MARGIN_PENALTIES,
    FaceRecConfig,
    FaceRecForMarginClassification,
    FaceRecImageProcessor,
    FaceRecModel,
    FaceRecOutput,
    IResNetConfig,
    IResNetModel,
    MobileFaceNetConfig,
    MobileFaceNetModel,
    build_margin_head,
)
from .embedding import FaceEmbedder
from .metrics import load_metric  # evaluate itself is imported only when a metric is loaded

__version__ = "0.1.0"


register_auto_classes()

__all__ = [
    "FaceRecConfig",
    "FaceRecModel",
    "FaceRecForMarginClassification",
    "FaceRecOutput",
    "FaceRecImageProcessor",
    "FaceEmbedder",
    "load_metric",
    "IResNetConfig",
    "IResNetModel",
    "MobileFaceNetConfig",
    "MobileFaceNetModel",
    "MARGIN_PENALTIES",
    "build_margin_head",
]
