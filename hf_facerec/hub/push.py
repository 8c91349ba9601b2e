"""Share a face model on the Hub in one commit: weights, configs, remote code, the card, results and plots.

``push_to_hub(model_dir_or_model, "org/name", results="outputs/eval/results.json")`` assembles, in a temporary
folder (:func:`prepare_upload_folder`):

    model.safetensors, config.json            the embedding model (FaceRecModel; a margin head is left out)
    preprocessor_config.json                  the image processor (AutoImageProcessor)
    configuration_*.py, modeling_*.py, ...    remote code, so ``trust_remote_code=True`` loads it without the package
    README.md                                 the card (:mod:`hf_facerec.hub.card`) with the results and thresholds
    results.json, plots/*.png                 the measured results and their plots
    onnx/model.onnx                           with ``onnx=True``

and uploads it with ``HfApi.create_repo`` + ``HfApi.upload_folder`` (one commit). The token is ``token`` or the
``HF_TOKEN`` environment variable (huggingface_hub's own lookup) and the server is ``endpoint`` or ``HF_ENDPOINT``.

``model.push_to_hub(repo_id, ...)`` of a FaceRec model is this same upload (:func:`publish_model`: ``import
hf_facerec`` wires ``modeling_facerec.HUB_PUBLISHER`` to it), and ``FaceRecTrainer.push_to_hub`` calls it too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .calibration import ThresholdCalibration, store_thresholds
from .card import write_model_card

__all__ = ["prepare_upload_folder", "publish_model", "push_to_hub"]

_PLOT_SUFFIXES = (".png", ".svg", ".jpg")


def _embedding_model(model_dir_or_model):
    """A FaceRecModel from a folder or a model object (a margin-classification model gives its `.facerec`)."""
    from ..models import FaceRecModel

    if isinstance(model_dir_or_model, (str, os.PathLike)):
        path = Path(model_dir_or_model)
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} is not a saved model folder (no config.json)")
        return FaceRecModel.from_pretrained(path), path
    model = getattr(model_dir_or_model, "facerec", model_dir_or_model)
    if not isinstance(model, FaceRecModel):
        raise ValueError(f"expected a FaceRec model or a saved model folder, got {type(model_dir_or_model).__name__}")
    return model, None


def _image_processor(model, source_dir: Path | None, image_processor):
    from ..models import FaceRecImageProcessor

    if image_processor is not None:
        return image_processor
    # a model loaded from a folder keeps that folder's processor (its name_or_path)
    for folder in (source_dir, Path(getattr(model, "name_or_path", "") or "")):
        if folder is not None and folder.parts and (folder / "preprocessor_config.json").is_file():
            return FaceRecImageProcessor.from_pretrained(folder)
    height, width = model.config.face_size  # no processor saved: the default one at the model's size
    return FaceRecImageProcessor(size={"height": height, "width": width})


def _load_results(results) -> tuple[dict, Path | None]:
    if results is None:
        return {}, None
    if isinstance(results, (str, os.PathLike)):
        path = Path(results)
        if not path.is_file():
            raise ValueError(f"results file {path} does not exist")
        return json.loads(path.read_text()), path
    if not isinstance(results, dict):
        raise ValueError(f"results must be a dict or a path to a results JSON, got {type(results).__name__}")
    return results, None


def _plot_files(results: dict, results_path: Path | None) -> list[Path]:
    """Plots named in the runner's ``files`` list and, for a results file, the images next to it."""
    found = [Path(f) for f in results.get("files", []) if str(f).lower().endswith(_PLOT_SUFFIXES)]
    if results_path is not None:
        found += sorted(p for p in results_path.parent.iterdir() if p.suffix.lower() in _PLOT_SUFFIXES)
    return [p for p in dict.fromkeys(found) if p.is_file()]


def prepare_upload_folder(
    model_dir_or_model,
    folder: str | os.PathLike,
    results: dict | str | os.PathLike | None = None,
    *,
    summary: dict | None = None,
    calibration: ThresholdCalibration | None = None,
    image_processor=None,
    repo_id: str | None = None,
    onnx: bool = False,
) -> Path:
    """Write everything a Hub repo of this model holds into `folder` (see the module docstring).

    Args:
        model_dir_or_model: a saved model folder or a FaceRecModel / FaceRecForMarginClassification.
        results: the runner's or quickstart's results (dict or JSON path). A quickstart ``results.json`` is a whole
            summary (``{"results", "training", "data", ...}``) and is used as such.
        summary: card fields (see :mod:`hf_facerec.hub.card`); merged over what `results` brings.
        calibration: thresholds to store in the config (and show in the card) before saving.
        onnx: also export ``onnx/model.onnx`` (checked against torch).
    Returns:
        `folder`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, source_dir = _embedding_model(model_dir_or_model)
    processor = _image_processor(model, source_dir, image_processor)
    loaded, results_path = _load_results(results)
    base = dict(loaded) if "results" in loaded else {"results": loaded}  # quickstart's file is a summary already
    summary = {**base, **(summary or {})}
    if calibration is not None:
        store_thresholds(model, calibration)
        summary["calibration"] = calibration.to_dict()
    model.save_pretrained(folder)  # safetensors + config + the remote-code files (register_for_auto_class)
    processor.save_pretrained(folder)
    from .pipeline import add_pipeline_code

    add_pipeline_code(folder)  # pipeline("face-verification", model=repo, trust_remote_code=True) without the package
    plots = []
    for plot in _plot_files(loaded, results_path):
        (folder / "plots").mkdir(exist_ok=True)
        shutil.copy2(plot, folder / "plots" / plot.name)
        plots.append(f"plots/{plot.name}")
    if loaded:
        (folder / "results.json").write_text(json.dumps(loaded, indent=2, default=float))
    if onnx:
        from .onnx import export_onnx

        export_onnx(model, folder / "onnx" / "model.onnx")
    summary.setdefault("plots", plots)
    write_model_card(folder, summary, repo_id)
    return folder


def push_to_hub(
    model_dir_or_model,
    repo_id: str,
    results: dict | str | os.PathLike | None = None,
    *,
    private: bool | None = None,
    summary: dict | None = None,
    calibration: ThresholdCalibration | None = None,
    image_processor=None,
    onnx: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str = "Upload face recognition model (hf_facerec)",
    revision: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Create `repo_id` (if needed) and upload the model, card, results and plots in one commit.

    Arguments as in :func:`prepare_upload_folder`, plus `private` (for a new repo), `token` (default ``HF_TOKEN``
    / the cached login), `endpoint` (default ``HF_ENDPOINT``), `commit_message`, `revision` and `create_pr`.

    Returns:
        huggingface_hub's ``CommitInfo`` of the commit.
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise ValueError(f"repo_id must look like 'name' or 'org/name', got {repo_id!r}")
    api = HfApi(endpoint=endpoint, token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(repo_url, "repo_id", None) or repo_id
    with tempfile.TemporaryDirectory(prefix="hf_facerec_push_") as tmp:
        prepare_upload_folder(model_dir_or_model, tmp, results, summary=summary, calibration=calibration,
                              image_processor=image_processor, repo_id=repo_id, onnx=onnx)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                 revision=revision, repo_type="model", create_pr=create_pr)


def publish_model(model, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                  token: str | None = None, revision: str | None = None, create_pr: bool = False, **kwargs) -> Any:
    """``FaceRecModel.push_to_hub`` / ``FaceRecForMarginClassification.push_to_hub``: transformers' keywords mapped
    onto :func:`push_to_hub` (`kwargs`: results, summary, calibration, image_processor, onnx, endpoint)."""
    return push_to_hub(model, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
                       commit_message=commit_message or "Upload face recognition model (hf_facerec)", **kwargs)

