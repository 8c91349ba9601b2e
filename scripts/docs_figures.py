#!/usr/bin/env python
"""The docs' "Measured figures" page, generated from the JSON files the benchmark scripts write (never typed).

    python scripts/bench_cli.py --json docs/figures/bench_cli.json
    python scripts/bench_metrics.py --json docs/figures/bench_metrics.json
    python scripts/docs_figures.py [--figures docs/figures] [--output measured.md]

Each benchmark below has a JSON file name in the figures folder; a file there becomes a table of its figures
(nested keys joined with " / "), a missing one is listed as "no JSON yet" with the command that writes it.
`mkdocs build` runs this through docs/hooks/figures.py, which replaces the page's marker with the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the marker in docs/measured.md the hook replaces
MARKER = "<!-- figures -->"
#: (JSON file, what it measures, the command that writes it)
BENCHMARKS = (
    ("bench_cli.json", "`hf-facerec --help`, every command's `--help`, `import hf_facerec` (fresh interpreters, median, s)",
     "python scripts/bench_cli.py --json docs/figures/bench_cli.json"),
    ("bench_metrics.json", "10-fold accuracy + TAR@FAR vs the classic 400-threshold loop; TAR@FAR at IJB-C size vs "
     "one np.sort; 1:N identification", "python scripts/bench_metrics.py --json docs/figures/bench_metrics.json"),
    ("bench_pipeline.json", "`evaluate` path (decode + YuNet + align + embed) on LFW photos, old vs new",
     "python scripts/bench_pipeline.py --data-dir ../shared/data --images 1536 --json docs/figures/bench_pipeline.json"),
    ("bench_evaluate.json", "`hf-facerec evaluate` end to end on LFW, an older checkout vs this one",
     "python scripts/bench_evaluate.py --old-src ../old --model MODEL --detector-model yunet.onnx "
     "--data-dir ../shared/data --json docs/figures/bench_evaluate.json"),
)


def _flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _flatten(item, f"{prefix} / {key}" if prefix else str(key))]
    return [(prefix, value)]


def _cell(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "n/a" if value is None else str(value).replace("|", "\\|")


def render(figures_dir: str | Path) -> str:
    """Markdown for every benchmark of :data:`BENCHMARKS`: its figures from ``figures_dir/<file>``, or a note.

    Raises:
        ValueError: a JSON file that does not parse or holds no figures (named in the message).
    """
    figures_dir = Path(figures_dir)
    parts = []
    for name, what, command in BENCHMARKS:
        path = figures_dir / name
        parts.append(f"## {what}\n\nWritten by `{command}`.\n")
        if not path.is_file():
            parts.append(f"*No JSON yet:* `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` does "
                         "not exist; run the command above to measure it.\n")
            continue
        try:
            rows = _flatten(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not rows or rows == [("", rows[0][1])]:
            raise ValueError(f"{path}: expected an object of figures")
        parts.append("| figure | value |\n|---|---:|\n" + "".join(f"| {key} | {_cell(v)} |\n" for key, v in rows))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", default=str(ROOT / "docs" / "figures"), help="folder of the benchmark JSON files")
    parser.add_argument("--output", default=None, help="write the markdown here (default: print it)")
    args = parser.parse_args(argv)
    text = render(args.figures)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
