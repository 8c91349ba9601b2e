"""The bundled ``evaluate`` modules: face_verification, face_identification, face_bias.

Each lives in a folder named like its .py file, so ``evaluate.load(folder)`` works offline;
:func:`load_metric` resolves the folder for you. The modules are thin wrappers around the numpy
core in :mod:`hf_facerec.evaluation`. ``evaluate`` and ``gradio`` are imported lazily (the
``[eval]`` / ``[space]`` extras).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["METRIC_NAMES", "build_gradio_widget", "launch_gradio_widget", "load_metric", "metric_path"]

METRIC_NAMES: tuple[str, ...] = ("face_bias", "face_identification", "face_verification")


def metric_path(name: str) -> Path:
    """Folder of a bundled module, e.g. ``metric_path("face_verification")``."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; bundled metrics: {list(METRIC_NAMES)}")
    return Path(__file__).resolve().parent / name


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a bundled module by name (no Hub access); ``kwargs`` go to ``evaluate.load``.

    >>> metric = load_metric("face_verification")  # doctest: +SKIP
    >>> metric.compute(predictions=scores, references=is_same)  # doctest: +SKIP
    """
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)


def _parse_cell(value):
    """A widget table cell: JSON if it parses (numbers, lists for embeddings), else the raw string."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def build_gradio_widget(module):
    """A gradio Interface for an evaluate module: a table of its inputs + JSON compute kwargs.

    Replaces ``evaluate.utils.launch_gradio_widget``, which uses the ``gr.inputs`` API removed in
    gradio 4. Each table column is one input feature; cells may hold JSON (e.g. an embedding
    list); the textbox holds keyword arguments such as ``{"n_folds": 2}`` or the gallery of
    face_identification.
    """
    import inspect

    import gradio as gr

    features = module.features[0] if isinstance(module.features, list) else module.features
    names = list(features)

    def compute(table, kwargs_json: str):
        rows = [row for row in (table or []) if any(str(cell).strip() for cell in row)]
        columns = {name: [_parse_cell(row[i]) for row in rows] for i, name in enumerate(names)}
        kwargs = json.loads(kwargs_json) if kwargs_json and kwargs_json.strip() else {}
        return module.compute(**columns, **kwargs)

    # gradio 6 renamed col_count to column_count; keep gradio 5 working too.
    count_kwarg = "column_count" if "column_count" in inspect.signature(gr.Dataframe).parameters else "col_count"
    table = gr.Dataframe(headers=names, row_count=4, type="array", label="inputs", **{count_kwarg: (len(names), "fixed")})
    return gr.Interface(
        fn=compute,
        inputs=[
            table,
            gr.Textbox(label="compute keyword arguments (JSON)", value="{}"),
        ],
        outputs=gr.JSON(label=module.name),
        title=module.name,
        description=module.info.description,
        flagging_mode="never",
    )


def launch_gradio_widget(name: str, **launch_kwargs):
    """Launch the widget of a bundled metric (the Space's ``app.py`` entry point)."""
    return build_gradio_widget(load_metric(name)).launch(**launch_kwargs)
