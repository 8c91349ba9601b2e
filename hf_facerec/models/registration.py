"""Register this package's model families with the transformers Auto classes (run by ``import hf_facerec.models``).

After it, ``AutoConfig``/``AutoModel``/``AutoImageProcessor`` resolve ``facerec``, ``iresnet`` and ``mobilefacenet``
checkpoints, and ``AutoModelForImageClassification`` resolves the margin-classification model (its closest Auto
task). ``register_for_auto_class`` makes ``save_pretrained`` copy the model files next to the weights and write an
``auto_map``, so the checkpoint also loads with ``trust_remote_code=True`` where this package is not installed.
"""

import json

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, PreTrainedConfig

from .configuration_facerec import FaceRecConfig
from .configuration_iresnet import IResNetConfig
from .configuration_mobilefacenet import MobileFaceNetConfig
from .image_processing_facerec import FaceRecImageProcessor
from .modeling_facerec import FaceRecForMarginClassification, FaceRecModel
from .modeling_iresnet import IResNetModel
from .modeling_mobilefacenet import MobileFaceNetModel


def _refuse_deep_config_json() -> None:
    """transformers reads config.json with ``json.loads`` and turns only JSONDecodeError into its "not a valid JSON
    file" OSError naming the file; a config nested deeper than Python's recursion limit escapes as a bare
    RecursionError (from ``pipeline(model=folder)`` too). Re-raise it as the JSONDecodeError it is. Idempotent."""
    read = PreTrainedConfig.__dict__.get("_dict_from_json_file")
    if read is None or getattr(read, "_hf_facerec_depth_checked", False):
        return
    original = read.__func__

    def _dict_from_json_file(cls, json_file):
        try:
            return original(cls, json_file)
        except RecursionError:
            raise json.JSONDecodeError("nested deeper than Python's recursion limit", "", 0) from None

    wrapped = classmethod(_dict_from_json_file)
    wrapped._hf_facerec_depth_checked = True
    PreTrainedConfig._dict_from_json_file = wrapped


def register_auto_classes() -> None:
    """Idempotent."""
    _refuse_deep_config_json()
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
