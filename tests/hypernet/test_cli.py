"""`hf-facerec enroll` / `identify` end to end on aligned 32x32 crops (no detector needed), and their errors."""

import json

import numpy as np
from PIL import Image

from hf_facerec.cli import main
from hf_facerec.hypernet.gallery import Gallery

from .helpers import tiny_hypernet


def _crops(folder, n, seed):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_enroll_identify_remove(tmp_path, capsys):
    model_dir, gallery = tmp_path / "h", tmp_path / "gallery"
    tiny_hypernet(target_num_channels=1).save_pretrained(model_dir)
    alice, bob = _crops(tmp_path, 2, 0), _crops(tmp_path, 1, 1)
    assert main(["enroll", "--hypernet", str(model_dir), "--gallery", str(gallery), "--user", "alice", *alice,
                 "--onnx", str(tmp_path / "alice.onnx")]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["user"] == "alice" and first["users"] == 1 and first["onnx_max_abs_diff"] <= 1e-5
    assert first["params"] == tiny_hypernet(target_num_channels=1).num_target_params
    assert main(["enroll", "--hypernet", str(model_dir), "--gallery", str(gallery), "--user", "bob", *bob]) == 0
    capsys.readouterr()
    assert main(["identify", "--gallery", str(gallery), *alice[:1], "--top-k", "2", "--closed-set"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = Gallery(gallery).identify(alice[:1], threshold=-1.0, top_k=2)[0]
    assert result["user"] == expected["user"] and {c["user"] for c in result["candidates"]} == {"alice", "bob"}
    assert main(["identify", "--gallery", str(gallery), *alice[:1], "--threshold", "1.5"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["user"] is None
    assert main(["enroll", "--gallery", str(gallery), "--remove", "bob"]) == 0
    assert Gallery(gallery).users == ["alice"]


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["enroll", "--gallery", str(tmp_path / "none"), "--remove", "bob"]) == 2
    assert "no gallery" in capsys.readouterr().err
    assert main(["identify", "--gallery", str(tmp_path / "none"), "x.png"]) == 2
    assert "error: no gallery" in capsys.readouterr().err
    assert main(["enroll", "--gallery", str(tmp_path / "g"), "--user", "a"]) == 2
    assert "needs --user, --hypernet and at least one image" in capsys.readouterr().err


def test_study_skips_without_shared_data(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "run_hypernet_study.py"
    out = subprocess.run([sys.executable, str(script), "--shared", str(tmp_path / "absent"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("skipped: needs") and not (tmp_path / "o").exists()
