"""`import hf_facerec` is cheap yet registers: the Auto classes and pipelines know the package once it is imported.

Each case runs in a fresh interpreter (registration is per process and depends on what was imported first).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from hf_facerec.cli import _COMMANDS

_TINY = ("FaceRecConfig(backbone_config={'model_type': 'vit', 'hidden_size': 32, 'num_hidden_layers': 1, "
         "'num_attention_heads': 2, 'intermediate_size': 32, 'image_size': 32, 'patch_size': 16})")


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_import_loads_neither_torch_nor_transformers():
    assert _python("import sys, hf_facerec; print('torch' in sys.modules, 'transformers' in sys.modules)") == (
        "False False")


@pytest.mark.parametrize("command", [None, *sorted(_COMMANDS)])
def test_help_of_every_command_loads_neither_torch_nor_transformers(command):
    """What makes `hf-facerec COMMAND --help` fast (scripts/bench_cli.py times it)."""
    argv = [command, "--help"] if command else ["--help"]
    out = _python("import sys\nfrom hf_facerec.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                  "print('LOADED', sorted({'torch', 'transformers', 'datasets'} & set(sys.modules)))" % argv)
    assert out.splitlines()[-1] == "LOADED []" and "usage:" in out


@pytest.mark.parametrize("first", [
    "import hf_facerec\nfrom transformers import AutoModel, AutoConfig",       # the package first
    "from transformers import AutoModel, AutoConfig\nimport hf_facerec",       # transformers first
    "import hf_facerec, transformers\nAutoModel, AutoConfig = transformers.AutoModel, transformers.AutoConfig",
    "import hf_facerec\nfrom transformers import Trainer, AutoModel, AutoConfig",  # via another transformers module
])
def test_auto_classes_resolve_after_import(first):
    out = _python(first + "\nfrom hf_facerec.models import FaceRecConfig\n"
                  f"model = AutoModel.from_config({_TINY})\n"
                  "print(type(model).__name__, type(AutoConfig.for_model('mobilefacenet')).__name__)")
    assert out == "FaceRecModel MobileFaceNetConfig"


@pytest.mark.parametrize("first", [
    "import hf_facerec\nfrom transformers import pipeline",
    "from transformers import pipeline\nimport hf_facerec",
])
def test_pipeline_tasks_known_after_import(first):
    out = _python(first + "\nfrom transformers.pipelines import PIPELINE_REGISTRY\n"
                  "print(sorted(t for t in PIPELINE_REGISTRY.get_supported_tasks() if t.startswith('face-')))")
    assert out == "['face-feature-extraction', 'face-verification']"


def test_lazy_public_names():
    import hf_facerec

    assert hf_facerec.FaceRecModel.__name__ == "FaceRecModel" and "FaceEmbedder" in dir(hf_facerec)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hf_facerec.Nope


def test_model_push_to_hub_uses_the_package_card_after_import():
    """models/ cannot import hub/: the package wires `push_to_hub` to `hf_facerec.hub.push` (loaded when used)."""
    out = _python("import sys, hf_facerec\nfrom transformers import AutoModel\n"
                  "from hf_facerec.models import modeling_facerec as m\n"
                  "print(m.HUB_PUBLISHER.__name__, 'hf_facerec.hub.push' in sys.modules)")
    assert out == "_publish False"
