"""Register this package's model families with the transformers Auto classes (run by ``import hf_facerec.models``).

After it, ``AutoConfig``/``AutoModel``/``AutoImageProcessor`` resolve ``facerec``, ``iresnet`` and ``mobilefacenet``
checkpoints, and ``AutoModelForImageClassification`` resolves the margin-classification model (its closest Auto
task). ``register_for_auto_class`` makes ``save_pretrained`` copy the model files next to the weights and write an
``auto_map``, so the checkpoint also loads with ``trust_remote_code=True`` where this package is not installed.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_facerec import FaceRecConfig
from .configuration_iresnet import IResNetConfig
from .configuration_mobilefacenet import MobileFaceNetConfig
from .image_processing_facerec import FaceRecImageProcessor
from .modeling_facerec import FaceRecForMarginClassification, FaceRecModel
from .modeling_iresnet import IResNetModel
from .modeling_mobilefacenet import MobileFaceNetModel


def register_auto_classes() -> None:
    """Idempotent."""
    for config_class, model_class in (
        (FaceRecConfig, FaceRecModel),
        (IResNetConfig, IResNetModel),
        (MobileFaceNetConfig, MobileFaceNetModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForImageClassification.register(FaceRecConfig, FaceRecForMarginClassification, exist_ok=True)
    AutoImageProcessor.register(FaceRecConfig, slow_image_processor_class=FaceRecImageProcessor, exist_ok=True)

    FaceRecConfig.register_for_auto_class()
    FaceRecModel.register_for_auto_class("AutoModel")
    FaceRecForMarginClassification.register_for_auto_class("AutoModelForImageClassification")
    FaceRecImageProcessor.register_for_auto_class("AutoImageProcessor")
