"""hf_facerec: face recognition as a first-class citizen of the Hugging Face ecosystem.

``import hf_facerec`` is cheap: the public names below load on first use (PEP 562), and the package registers its
model families with the transformers Auto classes (:mod:`hf_facerec.models.registration`) and its pipelines
(``face-verification``, ``face-feature-extraction``) with ``transformers.pipeline`` the moment transformers loads
those modules, or at once if they are already loaded. So ``import hf_facerec`` then ``AutoModel.from_pretrained``
or ``pipeline("face-verification", ...)`` works, and ``hf-facerec --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._after_import import after_import

__version__ = "0.1.0"

# public name -> the submodule that defines it
_LAZY = {
    **dict.fromkeys(
        (
            "FaceRecConfig", "FaceRecModel", "FaceRecForMarginClassification", "FaceRecOutput",
            "FaceRecImageProcessor", "IResNetConfig", "IResNetModel", "MobileFaceNetConfig", "MobileFaceNetModel",
            "MARGIN_PENALTIES", "build_margin_head",
        ),
        "hf_facerec.models",
    ),
    "FaceEmbedder": "hf_facerec.embedding",
    "load_metric": "hf_facerec.metrics",  # evaluate itself is imported only when a metric is loaded
}
__all__ = list(_LAZY)

if TYPE_CHECKING:
    from .embedding import FaceEmbedder
    from .metrics import load_metric
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


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'hf_facerec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # next access is a plain lookup
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _register_models() -> None:
    importlib.import_module("hf_facerec.models")  # registers on import (a no-op if already imported)


def _register_pipelines() -> None:
    importlib.import_module("hf_facerec.hub.pipeline")  # registers on import


def _publish(model, repo_id: str, **kwargs):
    return importlib.import_module("hf_facerec.hub.push").publish_model(model, repo_id, **kwargs)


def _install_publisher() -> None:
    """`model.push_to_hub` uploads the package's card (models/ cannot import hub/, so the package wires it)."""
    modeling = importlib.import_module("hf_facerec.models.modeling_facerec")
    if modeling.HUB_PUBLISHER is None:
        modeling.HUB_PUBLISHER = _publish


for _auto in ("configuration_auto", "modeling_auto", "image_processing_auto", "processing_auto"):
    after_import(f"transformers.models.auto.{_auto}", _register_models)
after_import("transformers.pipelines", _register_pipelines)
after_import("hf_facerec.models.modeling_facerec", _install_publisher)
del _auto
