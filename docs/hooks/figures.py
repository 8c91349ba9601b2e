"""MkDocs hook: the "Measured figures" page's marker becomes the tables scripts/docs_figures.py renders from the
benchmark JSON in docs/figures/ (the numbers are never typed into the page)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docs_figures.py"


def _figures_module():
    spec = importlib.util.spec_from_file_location("docs_figures", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page, config, files) -> str:
    figures = _figures_module()
    if figures.MARKER not in markdown:
        return markdown
    return markdown.replace(figures.MARKER, figures.render(Path(config["docs_dir"]) / "figures"))
