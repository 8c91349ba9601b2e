"""`hf-facerec pretrain`, `redundancy` and `fewshot` end to end on tiny inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from hf_facerec.cli import main
from hf_facerec.data.synthetic import make_synthetic_faces

TINY_VIT = json.dumps({"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 64, "patch_size": 8})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    faces = make_synthetic_faces(num_identities=6, images_per_identity=2, image_size=32)
    for i, row in enumerate(faces):
        (root / f"id{row['label']}").mkdir(exist_ok=True)
        row["image"].convert("RGB").save(root / f"id{row['label']}" / f"{i}.png")
    first = Image.open(root / "id0" / "0.png")
    first.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "id0" / "copy.png")  # a planted near-copy
    return root


def test_pretrain_then_redundancy_with_the_backbone(folder, tmp_path, capsys):
    out = tmp_path / "ssl"
    assert main(["pretrain", "--images", str(folder), "--backbone", TINY_VIT, "--image-size", "32", "--local-size",
                 "16", "--n-local", "2", "--max-steps", "4", "--batch-size", "4", "--save-steps", "2",
                 "--method", "simsiam", "--output", str(out)]) == 0
    results = json.loads((out / "pretrain_results.json").read_text())
    assert results["global_step"] == 4 and results["images"] == 13
    assert (out / "backbone" / "config.json").is_file() and (out / "checkpoint-4").is_dir()
    capsys.readouterr()
    assert main(["redundancy", "--images", str(folder), "--identities", "--output", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "redundancy.json").read_text())
    assert report["statistics"]["identities"] == 6 and report["duplicate_pairs"] >= 1
    assert "copy.png" in (tmp_path / "r" / "duplicate_pairs.csv").read_text()
    assert len((tmp_path / "r" / "deduplicated.txt").read_text().splitlines()) == report["deduplicated_images"]
    assert main(["redundancy", "--images", str(folder), "--model", str(out / "backbone"), "--image-size", "32",
                 "--output", str(tmp_path / "r2")]) == 0


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["pretrain", "--images", str(tmp_path / "none"), "--backbone", TINY_VIT, "--output",
                 str(tmp_path / "o")]) == 2
    assert "pre-training images" in capsys.readouterr().err
    assert main(["fewshot", "--pretraining", "nopath", "--data", str(tmp_path), "--output", str(tmp_path / "f")]) == 2
    assert "name=path" in capsys.readouterr().err


def test_fewshot_on_jaffe(shared_data, tmp_path):
    from hf_facerec.representation.modeling import build_encoder
    from hf_facerec.representation.pretrain import backbone_config

    build_encoder(backbone_config(TINY_VIT, 32), 32).backbone.save_pretrained(tmp_path / "b")
    assert main(["fewshot", "--random-init", f"scratch={tmp_path / 'b'}", "--data", str(shared_data), "--tasks",
                 "jaffe_expression", "--fractions", "0.1,1", "--seeds", "0", "--image-size", "32",
                 "--probe-steps", "20", "--output", str(tmp_path / "f")]) == 0
    result = json.loads((tmp_path / "f" / "results.json").read_text())
    assert len(result["results"]) == 2 and np.isfinite(result["results"][0]["scores"]["macro_f1"])
