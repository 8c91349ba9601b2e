"""Every fenced python and shell block of README.md and docs/**/*.md runs, in file order, in a temp folder per file.

The python blocks of one file share a namespace (a page builds on its earlier blocks); shell blocks run with bash
in the same folder. A block preceded by an HTML comment ``<!-- skip: REASON -->`` (GPU, network, real data, a long
run) is reported as skipped with its name and reason, never silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PYTHON, SHELL = {"python", "py"}, {"bash", "sh", "shell"}
_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_SKIP = re.compile(r"<!--\s*skip:\s*(.*?)\s*-->\s*$")
TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The python and shell blocks of a markdown file, each with the skip reason written right before it."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        language = match.group(1).lower()
        if language not in PYTHON | SHELL:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 1, "python" if language in PYTHON else "bash",
                            match.group(2), skip.group(1) if skip else None))
    return blocks


BLOCKS = [block for path in SOURCES for block in code_blocks(path)]
_NAMESPACES: dict[Path, dict] = {}
_FOLDERS: dict[Path, Path] = {}


def test_the_parser_finds_blocks_and_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- skip: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n```python\nx = 1\n```\n\n"
                    "```\nplain text\n```\n")
    blocks = code_blocks(page)
    assert [(b.language, b.skip, b.code, b.line) for b in blocks] == [("bash", "needs a GPU", "nvidia-smi\n", 4),
                                                                    ("python", None, "x = 1\n", 8)]
    assert len(BLOCKS) >= 20 and any(b.skip is None for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_code_block(block: Block, tmp_path_factory, monkeypatch):
    if block.skip:
        pytest.skip(f"{block.name}: {block.skip}")
    folder = _FOLDERS.setdefault(block.path, tmp_path_factory.mktemp(block.path.stem))
    monkeypatch.chdir(folder)
    if block.language == "python":
        namespace = _NAMESPACES.setdefault(block.path, {"__name__": "__docs__"})
        exec(compile(block.code, block.name, "exec"), namespace)
        return
    # OMP_NUM_THREADS=1: a second OpenMP thread only spins on a CPU shared with other jobs (see test_notebooks.py)
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # `hf-facerec` and `python` of this interpreter's environment come first on the PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"{block.name} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
