"""`hf-facerec train --train_dataset` as a user runs it: on what `hf-facerec convert` wrote, a Parquet file, an
image folder and a save_to_disk folder it trains and saves; a bad source is exit 2 and one line; shipped configs
leave the progress bars on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_facerec.cli import main
from hf_facerec.training.build import parse_train_arguments
from tests.data.test_sources import make_faces, make_sources

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "train" / "tiny_synthetic.yaml"


def _train(source: str, output_dir: Path) -> int:
    # The tiny config, shrunk to 2 steps; the test turns the bar off itself (the config no longer does).
    return main(["train", "--config", str(TINY_CONFIG), "--train_dataset", source, "--image_size", "32",
                 "--embedding_size", "32", "--per_device_train_batch_size", "4", "--max_steps", "2",
                 "--save_strategy", "no", "--logging_steps", "1", "--augmentation", "none", "--disable_tqdm", "true",
                 "--output_dir", str(output_dir)])


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("train_sources"))


@pytest.mark.parametrize("form", ["convert", "parquet file", "imagefolder", "save_to_disk"])
def test_train_on_each_form_runs_and_saves(places, form, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    assert _train(places[form], out) == 0
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "train_results.json"} <= {
        p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["num_identities"] == 3
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


def test_train_on_what_convert_wrote(tmp_path):
    """The issue's case: `hf-facerec convert faces out` then `--train_dataset out` (was a raw traceback)."""
    faces = make_faces(tmp_path / "faces")
    assert main(["convert", str(faces), str(tmp_path / "converted"), "--quiet"]) == 0
    assert _train(str(tmp_path / "converted"), tmp_path / "run") == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize("kind", ["missing path", "empty folder", "txt file", "Hub id offline"])
def test_bad_source_is_exit_2_and_one_line(tmp_path, kind, capsys, monkeypatch):
    monkeypatch.delenv("HF_FACEREC_TRACEBACK", raising=False)
    source = {"missing path": str(tmp_path / "missing"), "empty folder": str(tmp_path),
              "txt file": str(tmp_path / "pairs.txt"), "Hub id offline": "someone/faces"}[kind]
    (tmp_path / "pairs.txt").write_text("alice 1 2\n") if kind == "txt file" else None
    assert _train(source, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-facerec train: error: train dataset ") and repr(source) in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("name", sorted(str(p.relative_to(REPO_ROOT)) for p in
                                        (REPO_ROOT / "configs").glob("*/*.yaml") if "accelerate" not in p.parts))
def test_shipped_configs_show_progress_bars(name):
    text = (REPO_ROOT / name).read_text()
    assert "disable_tqdm" not in text
    _, _, training_args = parse_train_arguments(["--config", str(REPO_ROOT / name), "--bf16", "false",
                                                 "--train_dir", "x"])
    assert training_args.disable_tqdm is False
