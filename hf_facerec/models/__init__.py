"""Model families: FaceRec (backbone + heads), IResNet, MobileFaceNet, the margin heads and the image processor.

Importing this package registers the families with the transformers Auto classes (:mod:`.registration`).

Files here are flat (no sub-packages) on purpose: transformers' remote-code loader copies a model's files flat
next to the checkpoint and follows only single-dot relative imports, so ``trust_remote_code=True`` works for
checkpoints whose backbone is IResNet or MobileFaceNet too.
"""

from .configuration_facerec import FaceRecConfig
from .configuration_iresnet import IResNetConfig
from .configuration_mobilefacenet import MobileFaceNetConfig
from .heads import ClassCenterHead, build_margin_head
from .margins import MARGIN_PENALTIES, MarginPenalty, build_margin_penalty
from .image_processing_facerec import FaceRecImageProcessor
from .modeling_facerec import (
    FaceRecForMarginClassification,
    FaceRecModel,
    FaceRecOutput,
    FaceRecMarginOutput,
    FaceRecPreTrainedModel,
)
from .modeling_iresnet import IResNetModel
from .modeling_mobilefacenet import MobileFaceNetModel
from .registration import register_auto_classes

register_auto_classes()

__all__ = [
    "FaceRecConfig",
    "FaceRecModel",
    "FaceRecForMarginClassification",
    "FaceRecOutput",
    "FaceRecMarginOutput",
    "FaceRecPreTrainedModel",
    "FaceRecImageProcessor",
    "IResNetConfig",
    "IResNetModel",
    "MobileFaceNetConfig",
    "MobileFaceNetModel",
    "MARGIN_PENALTIES",
    "MarginPenalty",
    "ClassCenterHead",
    "build_margin_head",
    "build_margin_penalty",
]
