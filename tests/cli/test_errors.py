"""The CLI's one error policy: bad input -> exit 2 and one line on stderr naming what is wrong, no traceback.

Each command is run in-process the way a user would mistype it: a missing file, an unreadable image folder, an
unknown benchmark or detector, a bad config value.
"""

import json

import pytest

from hf_facerec.cli import main


def _corrupt_folder(root):
    """Files that claim to be images (a JPEG signature: images are recognised by content) but do not decode."""
    (root / "id1").mkdir(parents=True)
    for name in ("a.jpg", "b.png"):
        (root / "id1" / name).write_bytes(b"\xff\xd8\xff\xe0 this is not an image")
    return root


def _face_folder(root):
    """Two identities of two decodable images each: a data folder that is fine, for errors about something else."""
    from PIL import Image

    for identity in ("id1", "id2"):
        (root / identity).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (16, 16), (40 * index, 80, 120)).save(root / identity / f"{index}.png")
    return root


def _fake_model(root):
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "facerec"}))
    return root


CASES = {
    "align: missing folder": (["align", "{tmp}/missing", "{tmp}/out"], "missing"),
    "align: empty folder": (["align", "{empty}", "{tmp}/out"], "no images found"),
    "align: unknown detector": (["align", "{corrupt}", "{tmp}/out", "--detector", "nope"], "'nope'"),
    "convert: missing source": (["convert", "{tmp}/missing.rec", "{tmp}/out"], "missing.rec"),
    "convert: unreadable images": (["convert", "{corrupt}", "{tmp}/out"], "did not decode"),
    "data-scale: missing config": (
        ["data-scale", "--config", "{tmp}/missing.yaml", "--identity-counts", "2", "--pairs", "a={tmp}/p.bin",
         "--output", "{tmp}/grid"], "missing.yaml"),
    "data-scale: bad config value": (
        ["data-scale", "--config", "{bad_value}", "--identity-counts", "2", "--pairs", "a={tmp}/p.bin",
         "--output", "{tmp}/grid"], "learning_rate"),
    "evaluate: missing model": (["evaluate", "--model", "{tmp}/missing", "--output", "{tmp}/o"], "missing"),
    "evaluate: unknown benchmark": (
        ["evaluate", "--model", "{model}", "--benchmarks", "nope", "--data-dir", "{tmp}", "--output", "{tmp}/o"],
        "nope"),
    "evaluate: unknown detector": (["evaluate", "--model", "{model}", "--align", "nope", "--output", "{tmp}/o"],
                                   "'nope'"),
    "export: missing model": (["export", "onnx", "--model", "{tmp}/missing"], "missing"),
    "export: not a model folder": (["export", "onnx", "--model", "{corrupt}"], "no config.json"),
    "push: missing model": (["push", "--model", "{tmp}/missing", "--repo-id", "org/name"], "missing"),
    "push: not a model folder": (["push", "--model", "{corrupt}", "--repo-id", "org/name"], "no config.json"),
    "push: unknown detector": (["push", "--model", "{model}", "--repo-id", "a/b", "--align", "nope"], "'nope'"),
    "quickstart: missing folder": (["quickstart", "--data", "{tmp}/missing", "--pairs", "{tmp}/p.txt"], "missing"),
    "quickstart: missing pairs": (["quickstart", "--data", "{faces}", "--pairs", "{tmp}/p.txt"], "p.txt"),
    "quickstart: bad value": (["quickstart", "--margin-type", "nope", "--output", "{tmp}/q"], "nope"),
    "quickstart: bad number": (["quickstart", "--steps", "many"], "many"),
    "train: missing config": (["train", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    "train: bad config value": (["train", "--config", "{bad_value}", "--output_dir", "{tmp}/run"], "'abc'"),
    "train: bad YAML": (["train", "--config", "{bad_yaml}"], "not valid YAML"),
    "train: unknown config key": (["train", "--config", "{bad_key}"], "not_a_key"),
    "train: missing folder": (
        ["train", "--backbone", "tiny-vit", "--train_dir", "{tmp}/missing", "--output_dir", "{tmp}/run"], "missing"),
    "train: unreadable images": (
        ["train", "--backbone", "tiny-vit", "--train_dir", "{corrupt}", "--output_dir", "{tmp}/run",
         "--max_steps", "1", "--dataloader_num_workers", "0"], "id1"),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_errors")
    (tmp / "empty").mkdir()
    for name, text in (("bad_value", "train_dir: x\nbackbone: tiny-vit\nlearning_rate: abc\n"),
                       ("bad_yaml", "[unclosed\n"), ("bad_key", "train_dir: x\nnot_a_key: 1\n")):
        (tmp / f"{name}.yaml").write_text(text)
    return {"tmp": tmp, "empty": tmp / "empty", "corrupt": _corrupt_folder(tmp / "corrupt"),
            "faces": _face_folder(tmp / "faces"),
            "model": _fake_model(tmp / "model"), **{name: tmp / f"{name}.yaml" for name in
                                                     ("bad_value", "bad_yaml", "bad_key")}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, places, capsys, monkeypatch):
    monkeypatch.delenv("HF_FACEREC_TRACEBACK", raising=False)
    argv, expected = CASES[case]
    argv = [arg.format(**places) for arg in argv]
    command = argv[0]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"hf-facerec {command}: error: "), err
    assert expected in errors[0], errors[0]
