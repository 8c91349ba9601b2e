"""push_to_hub against a local stand-in of the Hub API that records every request (no network).

The stand-in answers the endpoints huggingface_hub uses for create_repo + upload_folder (see STACK_NOTES.md) and
validates card YAML the way the Hub does for our purposes: the `model-index` must parse with huggingface_hub's own
eval-result parser. The CLI test runs `hf-facerec push` in a subprocess with HF_ENDPOINT / HF_TOKEN in its
environment (huggingface_hub reads them at import); in-process tests point huggingface_hub's constants at it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import yaml
from huggingface_hub import ModelCard, constants
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_facerec.hub.calibration import calibrate_thresholds
from hf_facerec.hub.push import prepare_upload_folder, push_to_hub

from . import tiny_facerec

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
# Module level: FastAPI resolves the (string, postponed) annotations of the handlers in this module's globals.
Request = fastapi.Request

_RESULTS = {
    "benchmarks": {
        "lfw": {"verification": {"accuracy": 0.98, "accuracy_std": 0.004, "eer": 0.02, "auc": 0.995,
                                 "tar_at_far": {"1e-04": None, "1e-03": 0.93, "1e-02": 0.97},
                                 "n_genuine": 3000, "n_impostor": 3000},
                "bias": {"gender": {"far": 1e-3, "threshold": 0.42, "alpha": 0.5, "kind": "pairs",
                                    "groups": {"F": {"accuracy": 0.97, "accuracy_std": 0.02, "fmr": 0.0, "fnmr": 0.13,
                                                     "n_genuine": 777, "n_impostor": 177},
                                               "M": {"accuracy": 0.98, "accuracy_std": 0.01, "fmr": 0.0006,
                                                     "fnmr": 0.07, "n_genuine": 2223, "n_impostor": 1674}},
                                    "other_groups": {"mixed": {"n_genuine": 0, "n_impostor": 1149, "fmr": 0.001}},
                                    "accuracy_summary": {"mean": 0.975, "std": 0.005, "ser": 1.5},
                                    "fdr": 0.97, "garbe": 0.1, "fmr_max_min_ratio": None, "fnmr_max_min_ratio": 1.9}}},
        "ijbc": {"verification": {"accuracy": None, "eer": 0.05, "auc": 0.99,
                                  "tar_at_far": {"1e-04": 0.88, "1e-03": 0.92}}},
    },
}


class _HubStandIn:
    """A FastAPI app in a thread on 127.0.0.1; `requests` lists (method, path), `commits` the decoded commits."""

    def __init__(self):
        from fastapi import FastAPI
        from fastapi.responses import PlainTextResponse, Response

        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        self.tokens: list[str | None] = []
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.requests.append((request.method, request.url.path))
            self.tokens.append(request.headers.get("authorization"))
            return await call_next(request)

        @app.post("/api/repos/create")
        async def create(request: Request):
            body = await request.json()
            repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
            return {"url": f"{self.url}/{repo_id}", "name": repo_id}

        @app.post("/api/validate-yaml")
        async def validate(request: Request):
            content = (await request.json())["content"]
            metadata = yaml.safe_load(content.split("---")[1])  # the card's front matter
            try:
                if "model-index" in metadata:
                    model_index_to_eval_results(metadata["model-index"])
            except Exception as err:  # the Hub answers 400 with the reason
                return PlainTextResponse(str(err), status_code=400)
            return {"errors": [], "warnings": []}

        @app.post("/api/models/{org}/{name}/preupload/{revision}")
        async def preupload(request: Request):
            files = (await request.json())["files"]
            return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}

        @app.post("/api/models/{org}/{name}/commit/{revision}")
        async def commit(org: str, name: str, request: Request):
            lines = [json.loads(line) for line in (await request.body()).decode().splitlines() if line.strip()]
            files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                     for line in lines if line["key"] == "file"}
            header = next(line["value"] for line in lines if line["key"] == "header")
            self.commits.append({"repo": f"{org}/{name}", "files": files, "summary": header.get("summary")})
            return {"commitUrl": f"{self.url}/{org}/{name}/commit/abc", "commitOid": "a" * 40, "success": True}

        @app.api_route("/{path:path}", methods=["GET", "HEAD"])
        async def missing(path: str):
            return Response(status_code=404)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("local Hub stand-in did not start")
            time.sleep(0.05)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def hub():
    server = _HubStandIn()
    yield server
    server.close()


@pytest.fixture
def online_hub(hub, monkeypatch):
    """Point this interpreter's huggingface_hub at the stand-in (it read HF_ENDPOINT at import)."""
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub.commits.clear()
    hub.requests.clear()
    return hub


def _check_card(text: str) -> dict:
    card = ModelCard(text)
    card.validate()  # huggingface_hub's own check: POSTs the YAML to {ENDPOINT}/api/validate-yaml
    metadata = yaml.safe_load(text.split("---")[1])
    name, results = model_index_to_eval_results(metadata["model-index"])
    return {"metadata": metadata, "results": results, "card": card, "name": name}


def test_push_uploads_one_commit_with_the_expected_files(online_hub, tmp_path):
    model = tiny_facerec()
    calibration = calibrate_thresholds([0.9, 0.8, 0.3, 0.1, 0.2] * 40, [1, 1, 0, 0, 0] * 40, "toy pairs",
                                       fars=(1e-2,), flip="sum")
    info = push_to_hub(model, "org/tiny-face", results=_RESULTS, calibration=calibration, token="hf_test_token",
                       summary={"training": {"finetune_mode": "lora", "lora_rank": 8, "lora_alpha": 16}})
    assert info.oid == "a" * 40
    assert len(online_hub.commits) == 1
    commit = online_hub.commits[0]
    names = set(commit["files"])
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "results.json",
            "configuration_facerec.py", "modeling_facerec.py", "configuration_mobilefacenet.py",
            "modeling_mobilefacenet.py", "heads.py"} <= names, names
    assert ("POST", "/api/repos/create") in online_hub.requests
    assert all(t == "Bearer hf_test_token" for t in online_hub.tokens if t is not None)
    config = json.loads(commit["files"]["config.json"])
    # 120 impostors, FAR 1e-2 allows 1: the 40 impostors at 0.3 must all be rejected -> the next score up, 0.8.
    assert config["verification_thresholds"] == {"1e-02": 0.8} and config["threshold_pair_set"] == "toy pairs"
    assert config["auto_map"]["AutoModel"] == "modeling_facerec.FaceRecModel"
    assert config["custom_pipelines"]["face-verification"]["impl"] == "pipeline_facerec.FaceVerificationPipeline"
    assert "pipeline_facerec.py" in names
    checked = _check_card(commit["files"]["README.md"].decode())
    metadata = checked["metadata"]
    assert metadata["library_name"] == "transformers" and "face-recognition" in metadata["tags"]
    assert metadata["pipeline_tag"] == "image-feature-extraction" and metadata["license"] == "apache-2.0"
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in checked["results"]}
    # One result per benchmark and measured metric; unmeasurable TAR@FAR=1e-4 on LFW and IJB-C accuracy left out.
    assert got == {("lfw", "accuracy"): 0.98, ("lfw", "eer"): 0.02, ("lfw", "roc_auc"): 0.995,
                   ("lfw", "tar_at_far_1e-03"): 0.93, ("lfw", "tar_at_far_1e-02"): 0.97,
                   ("ijbc", "eer"): 0.05, ("ijbc", "roc_auc"): 0.99,
                   ("ijbc", "tar_at_far_1e-04"): 0.88, ("ijbc", "tar_at_far_1e-03"): 0.92}
    text = checked["card"].text
    for needle in ("STD 5.00e-03", "SER 1.5000", "| M | 0.9800 | 0.0100 | 6.00e-04 |", "FDR 0.9700", "GARBE 0.1000", "| mixed |", "LoRA: rank 8, alpha 16",
                   "toy pairs", "| 1e-02 | 0.8000 | 1.0000 |", "`96x112`", "112x96", "trust_remote_code=True",
                   "face-verification", "OnnxFaceEmbedder", "surveillance"):
        assert needle in text, needle


def test_the_stand_in_refuses_a_model_index_the_parser_rejects(online_hub):
    import httpx

    bad = "---\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\ntext"
    response = httpx.post(f"{online_hub.url}/api/validate-yaml", json={"repoType": "model", "content": bad})
    assert response.status_code == 400 and "type" in response.text


def test_upload_folder_has_plots_and_the_card_shows_them(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "bias_lfw_gender_accuracy.png").write_bytes(b"\x89PNG fake")
    (run / "roc.png").write_bytes(b"\x89PNG fake")
    (run / "results.json").write_text(json.dumps({**_RESULTS, "files": [str(run / "roc.png")]}))
    folder = prepare_upload_folder(tiny_facerec(), tmp_path / "up", run / "results.json", repo_id="org/m", onnx=True)
    assert (folder / "onnx" / "model.onnx").is_file()
    assert (folder / "plots" / "roc.png").is_file() and (folder / "plots" / "bias_lfw_gender_accuracy.png").is_file()
    text = (folder / "README.md").read_text()
    assert "![bias_lfw_gender_accuracy](plots/bias_lfw_gender_accuracy.png)" in text
    assert "(plots/roc.png)" in text and "file `onnx/model.onnx` of this repository" in text
    assert json.loads((folder / "results.json").read_text())["benchmarks"]["lfw"]["verification"]["accuracy"] == 0.98


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        prepare_upload_folder(tmp_path, tmp_path / "up")
    with pytest.raises(ValueError, match="FaceRec model"):
        prepare_upload_folder(object(), tmp_path / "up")
    with pytest.raises(ValueError, match="does not exist"):
        prepare_upload_folder(tiny_facerec(), tmp_path / "up", tmp_path / "missing.json")
    with pytest.raises(ValueError, match="repo_id"):
        push_to_hub(tiny_facerec(), "a/b/c")


_REMOTE_LOAD = textwrap.dedent(
    """
    import sys, importlib.abc
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_facerec" or name.startswith("hf_facerec."):
                raise ImportError("hf_facerec is blocked in this interpreter")
    sys.meta_path.insert(0, _Block())
    import torch
    from transformers import AutoImageProcessor, AutoModel
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert not any(n.startswith("hf_facerec") for n in sys.modules)
    print(type(model).__module__, type(processor).__name__, model.config.verification_thresholds)
    """
)


def test_cli_push_honours_hf_endpoint_and_the_pushed_files_load_without_the_package(hub, tmp_path):
    model_dir = tmp_path / "model"
    tiny_facerec().save_pretrained(model_dir)
    (tmp_path / "results.json").write_text(json.dumps(_RESULTS))
    hub.commits.clear()
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN="hf_env_token", HF_HUB_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1")
    push = subprocess.run(
        [sys.executable, "-m", "hf_facerec.cli", "push", "--model", str(model_dir), "--repo-id", "org/cli-face",
         "--results", str(tmp_path / "results.json"), "--private"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert push.returncode == 0, push.stderr[-3000:]
    assert len(hub.commits) == 1 and hub.commits[0]["repo"] == "org/cli-face"
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    for name, content in hub.commits[0]["files"].items():
        (downloaded / name).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / name).write_bytes(content)
    load = subprocess.run(
        [sys.executable, "-c", _REMOTE_LOAD, str(downloaded)], capture_output=True, text=True, cwd=tmp_path,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules")), timeout=300,
    )
    assert load.returncode == 0, load.stderr[-3000:]
    module, processor, _ = load.stdout.split()[:3]
    assert not module.startswith("hf_facerec") and processor == "FaceRecImageProcessor"


def test_trainer_push_to_hub_sends_the_same_card_with_lora_settings(online_hub, tmp_path):
    from safetensors.torch import load

    from hf_facerec.models import FaceRecConfig, FaceRecForMarginClassification, FaceRecImageProcessor
    from hf_facerec.training import FaceRecTrainer, FaceRecTrainingArguments
    from tests.models.tiny_backbones import tiny_backbone_config

    config = FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=16, num_identities=4)
    model = FaceRecForMarginClassification(config)
    args = FaceRecTrainingArguments(output_dir=str(tmp_path / "run"), finetune_mode="lora", lora_rank=4,
                                    lora_alpha=8.0, use_cpu=True, report_to="none", hub_model_id="org/trained-face")
    trainer = FaceRecTrainer(model=model, args=args, processing_class=FaceRecImageProcessor())
    trainer.push_to_hub(results=_RESULTS, token="hf_test_token")
    files = online_hub.commits[0]["files"]
    assert online_hub.commits[0]["repo"] == "org/trained-face"
    weights = load(files["model.safetensors"])
    assert not any("lora" in key or "margin_head" in key for key in weights), "adapter merged, margin head left out"
    text = files["README.md"].decode()
    _check_card(text)
    assert "- Mode: lora" in text and "LoRA: peft_method lora, rank 4, alpha 8.0" in text
    assert "4 identities" in text and "- Identities: 4" in text  # the margin head's real size
    assert json.loads(files["preprocessor_config.json"])["size"] == {"height": 112, "width": 112}
    with pytest.raises(TypeError, match="unexpected keywords"):
        trainer.push_to_hub(no_such_option=1)
    assert any("lora" in name for name, _ in model.named_parameters()), "the trainer's own model keeps its adapter"


def test_cli_push_dry_run_calibrates_on_a_pair_csv(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from hf_facerec import FaceEmbedder
    from hf_facerec.cli import main

    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    rows = [f"{i}.png,{j}.png,{int(i // 4 == j // 4)}" for i in range(16) for j in range(i + 1, 16)]
    (tmp_path / "pairs.csv").write_text("path1,path2,label\n" + "\n".join(rows) + "\n")  # 24 genuine, 96 impostor
    model_dir = tmp_path / "model"
    tiny_facerec().save_pretrained(model_dir)
    code = main(["push", "--model", str(model_dir), "--repo-id", "org/x", "--dry-run", str(tmp_path / "up"),
                 "--calibrate-pairs", str(tmp_path / "pairs.csv"), "--pair-set-name", "sixteen crops", "--flip", "none",
                 "--fars", "0.05", "0.001"])
    assert code == 0
    config = json.loads((tmp_path / "up" / "config.json").read_text())
    # Cross-check: the same scores computed by hand from FaceEmbedder (24 genuine, 96 impostor pairs). FAR 0.05
    # allows 4 impostors: the threshold is the smallest score above the 5th largest impostor; 1e-3 is not measurable.
    embeddings = FaceEmbedder.from_pretrained(model_dir)([tmp_path / f"{i}.png" for i in range(16)])
    scores = np.array([embeddings[i] @ embeddings[j] for i in range(16) for j in range(i + 1, 16)])
    labels = np.array([i // 4 == j // 4 for i in range(16) for j in range(i + 1, 16)])
    impostor = np.sort(scores[~labels])
    expected = np.sort(scores[scores > impostor[-5]])[0]
    assert config["verification_thresholds"]["1e-03"] is None
    assert config["verification_thresholds"]["5e-02"] == pytest.approx(expected, abs=1e-5)
    assert (config["threshold_pair_set"], config["threshold_flip"]) == ("sixteen crops", "none")
    assert "sixteen crops" in (tmp_path / "up" / "README.md").read_text()


def test_model_push_to_hub_sends_the_package_card_and_processor(online_hub, tmp_path):
    """What the user did: `model.push_to_hub(...)` on a trained model, as transformers users do."""
    from hf_facerec.models import FaceRecForMarginClassification, FaceRecImageProcessor

    model = tiny_facerec()
    model.config.num_identities = 7
    margin_model = FaceRecForMarginClassification(model.config)
    margin_model.save_pretrained(tmp_path / "checkpoint")  # a Trainer checkpoint first: the shared config learns
    # the margin model's auto_map entry
    FaceRecImageProcessor(size={"height": 112, "width": 96}, image_mean=[0.4, 0.4, 0.4]).save_pretrained(
        tmp_path / "checkpoint")
    margin_model.push_to_hub("org/model-push", token="hf_test_token", results=_RESULTS)
    loaded = type(model).from_pretrained(tmp_path / "checkpoint")  # a model loaded from a folder keeps its processor
    loaded.push_to_hub("org/loaded-push", commit_message="from a folder", token="hf_test_token")
    assert [c["repo"] for c in online_hub.commits] == ["org/model-push", "org/loaded-push"]
    files = online_hub.commits[0]["files"]
    assert {"README.md", "preprocessor_config.json", "model.safetensors", "config.json", "results.json"} <= set(files)
    config = json.loads(files["config.json"])
    assert "AutoModelForImageClassification" not in config["auto_map"], config["auto_map"]
    assert config["auto_map"]["AutoModel"] == "modeling_facerec.FaceRecModel" and config["num_identities"] == 7
    text = files["README.md"].decode()
    checked = _check_card(text)
    assert "hf_facerec" in checked["metadata"]["tags"] and "## How to use" in text
    assert "7 identities" in text and "- Identities: 7" in text
    second = online_hub.commits[1]
    assert second["summary"] == "from a folder"
    assert json.loads(second["files"]["preprocessor_config.json"])["image_mean"] == [0.4, 0.4, 0.4]


def test_embedding_checkpoint_auto_map_has_no_margin_model(tmp_path):
    from hf_facerec.models import FaceRecForMarginClassification

    model = tiny_facerec()
    model.config.num_identities = 3
    margin_model = FaceRecForMarginClassification(model.config)
    margin_model.save_pretrained(tmp_path / "margin")
    margin_model.facerec.save_pretrained(tmp_path / "embedding")
    assert set(json.loads((tmp_path / "embedding" / "config.json").read_text())["auto_map"]) == {
        "AutoConfig", "AutoModel"}
    # the margin checkpoint keeps its own entry, and the shared config forgot nothing
    assert "AutoModelForImageClassification" in json.loads((tmp_path / "margin" / "config.json").read_text())[
        "auto_map"]
    assert {"AutoModel", "AutoModelForImageClassification"} <= set(margin_model.config.auto_map)
