"""Shared pytest fixtures: paths to the optional real data in ../shared, and an offline environment."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_FACEREC_SHARED", REPO_ROOT.parent / "shared"))
SHARED_DATA = Path(os.environ.get("HF_FACEREC_DATA", SHARED / "data"))
SHARED_MODELS = SHARED / "models"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (real data in ../shared, absent on a fresh clone)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip."""
    return _require(SHARED_DATA)


@pytest.fixture
def shared_models() -> Path:
    """../shared/models, or skip."""
    return _require(SHARED_MODELS)


def convert_mobilefacenet(target: Path) -> Path:
    """The shared CASIA MobileFaceNet checkpoint as a FaceRec model folder, by scripts/convert_mobilefacenet.py."""
    import importlib.util

    script = REPO_ROOT / "scripts" / "convert_mobilefacenet.py"
    spec = importlib.util.spec_from_file_location("convert_mobilefacenet", script)
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    convert.main(["--checkpoint", str(SHARED_MODELS / "mobilefacenet_casia" / "068.ckpt"), "--output", str(target)])
    return target


@pytest.fixture(scope="session")
def mobilefacenet_dir(tmp_path_factory) -> Path:
    """The converted MobileFaceNet, converted once per session (or skip); a test that writes into it copies it."""
    _require(SHARED_MODELS / "mobilefacenet_casia" / "068.ckpt")
    return convert_mobilefacenet(tmp_path_factory.mktemp("mobilefacenet") / "model")


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    """evaluate/datasets copy modules and caches under HF_HOME: keep them out of the user's home."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))


def fill_disk_on(monkeypatch, victim: str) -> None:
    """Make the atomic writer's temp file for ``victim`` hit a full disk (ENOSPC) after its first bytes land.

    ``hf_facerec._files`` opens every report/plot/crop temp file as ``.<victim>.<random>``; only that one fails.
    ``fileno`` is refused so PIL and matplotlib write through ``.write`` too."""
    import builtins
    import errno
    import io

    import hf_facerec._files as files

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[:3])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            raise io.UnsupportedOperation("fileno")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def opener(path, *args, **kwargs):
        handle = builtins.open(path, *args, **kwargs)
        return Full(handle) if os.path.basename(path).startswith(f".{victim}.") else handle

    monkeypatch.setattr(files, "open", opener, raising=False)
