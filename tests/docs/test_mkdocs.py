"""`mkdocs build --strict` passes (API pages from the docstrings, the measured-figures page from the JSON)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts" / "docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strict_build(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    # API reference rendered from the docstrings; the figures page filled from JSON, the marker gone.
    assert "calibrate_thresholds" in (site / "reference" / "hub" / "index.html").read_text()
    measured = (site / "measured" / "index.html").read_text()
    assert "<!-- figures -->" not in measured and "bench_metrics.py" in measured
    assert not (site / "hooks").exists()


def test_figures_page_renders_json_and_names_what_is_missing(tmp_path):
    figures = _figures()
    name = figures.BENCHMARKS[0][0]
    (tmp_path / name).write_text(json.dumps({"a": 0.123456, "nested": {"b": 1234567, "c": None}}))
    text = figures.render(tmp_path)
    assert "| a | 0.1235 |" in text and "| nested / b | 1,234,567 |" in text and "| nested / c | n/a |" in text
    missing = [b[0] for b in figures.BENCHMARKS[1:]]
    assert text.count("*No JSON yet:*") == len(missing) and all(m in text for m in missing)
    (tmp_path / name).write_text("{not json")
    with pytest.raises(ValueError, match=name):
        figures.render(tmp_path)
