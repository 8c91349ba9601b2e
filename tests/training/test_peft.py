"""PEFT helpers: target modules per backbone family, the study's recipe, merge == adapter, save/load, export."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoHaConfig, LoraConfig
from safetensors import safe_open

from hf_facerec.models import FaceRecImageProcessor
from hf_facerec.training.peft import (
    LORA_TARGET_MODULES,
    apply_peft,
    build_peft_config,
    has_adapter,
    load_adapter,
    merge_adapter,
    resolve_target_modules,
    save_adapter,
    trainable_parameter_counts,
)
from hf_facerec.training.trainer import FaceRecTrainer
from tests.models.tiny_backbones import BACKBONES
from tests.training.test_trainer import IMAGE_SIZE, TinyFaces, one_thread, tiny_args, tiny_model  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]

# module-name endings each family's default adapter must wrap (and nothing else), checked on the tiny models
EXPECTED_TARGET_ENDINGS = {
    "dinov2": ("attention.q_proj", "attention.v_proj"),
    "vit": ("attention.q_proj", "attention.v_proj"),
    "clip_vision_model": ("self_attn.q_proj", "self_attn.v_proj"),
    "swin": ("attention.q_proj", "attention.v_proj"),
    "convnext": ("pwconv1", "pwconv2"),
    "resnet": ("layer.0.convolution", "layer.1.convolution"),
    "iresnet": ("conv1", "conv2"),
    "mobilefacenet": ("expand.convolution", "project.convolution"),
}


def _adapted_modules(backbone) -> set[str]:
    """Names (relative to the base model) of the modules that carry an adapter."""
    base = backbone.base_model.model
    return {name for name, module in base.named_modules() if hasattr(module, "base_layer")}


def _perturb_adapter(model, scale: float = 0.2) -> None:
    """Give every adapter weight a non-zero value (LoRA's B starts at zero, which would make merging trivial)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.facerec.backbone.named_parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("family", BACKBONES)
def test_default_targets_per_family(family):
    assert family in LORA_TARGET_MODULES
    # Swin's 7x7 windows need a 112 input; the other tiny families run at 32.
    size = 112 if family == "swin" else IMAGE_SIZE
    model = tiny_model(family, image_size=size, pooling="mean" if family == "swin" else "auto")
    endings = EXPECTED_TARGET_ENDINGS[family]
    candidates = {name for name, module in model.facerec.backbone.named_modules()
                  if name.endswith(endings) and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))}
    apply_peft(model, build_peft_config(model.config.backbone_type))
    adapted = _adapted_modules(model.facerec.backbone)
    assert adapted and adapted == candidates, sorted(adapted)  # every matching layer got one, and only those
    pixels = torch.randn(2, 3, size, size)
    assert model(pixels, labels=torch.tensor([0, 1])).loss.isfinite()


def test_cnn_targets_skip_stems_shortcuts_and_depthwise():
    for family, forbidden in (("resnet", ("embedder", "shortcut")), ("iresnet", ("embedder", "shortcut")),
                              ("mobilefacenet", ("stem", "depthwise", "pooler"))):
        model = tiny_model(family)
        apply_peft(model, build_peft_config(family))
        assert not any(word in name for name in _adapted_modules(model.facerec.backbone) for word in forbidden)


def test_recipe_defaults_and_methods():
    lora = build_peft_config("dinov2")
    assert isinstance(lora, LoraConfig) and not lora.use_dora
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.use_rslora) == (16, 16.0, 0.25, True)
    assert set(lora.target_modules) == {"q_proj", "v_proj"}
    assert build_peft_config("vit", "dora").use_dora
    loha = build_peft_config("vit", "loha", rank=4, alpha=8.0, dropout=0.1)
    assert isinstance(loha, LoHaConfig) and (loha.r, loha.alpha, loha.rank_dropout) == (4, 8.0, 0.1)
    # rank-stabilised scaling alpha / sqrt(r), applied on the wrapped layer
    model = tiny_model("vit")
    apply_peft(model, build_peft_config("vit", rank=4, alpha=16.0))
    q_proj = model.facerec.backbone.base_model.model.layers[0].attention.q_proj
    assert q_proj.scaling["default"] == pytest.approx(16.0 / math.sqrt(4))
    with pytest.raises(ValueError, match="lora, dora or loha"):
        build_peft_config("vit", "ia3")


def test_target_resolution():
    assert resolve_target_modules("dinov2") == ["q_proj", "v_proj"]
    assert resolve_target_modules("resnet") == LORA_TARGET_MODULES["resnet"]  # a regex string
    assert resolve_target_modules("levit", ["qkv"]) == ["qkv"]
    with pytest.raises(ValueError, match="No default adapter target modules for backbone family 'levit'"):
        resolve_target_modules("levit")
    with pytest.raises(ValueError, match="non-empty list"):
        resolve_target_modules("vit", [])
    with pytest.raises(ValueError, match="Could not place the adapter"):
        apply_peft(tiny_model("vit"), build_peft_config("vit", target_modules=["no_such_layer"]))


def test_trainable_count_is_peft_count_plus_heads():
    model = tiny_model("dinov2")
    heads = sum(p.numel() for p in model.facerec.embedding_head.parameters()) + sum(
        p.numel() for p in model.margin_head.parameters())
    apply_peft(model, build_peft_config("dinov2", rank=4))
    peft_trainable, peft_total = model.facerec.backbone.get_nb_trainable_parameters()
    # by hand: 2 layers x (q_proj, v_proj) x rank 4 x (32 in + 32 out)
    assert peft_trainable == 2 * 2 * 4 * (32 + 32)
    counts = trainable_parameter_counts(model)
    assert counts == {"backbone": peft_trainable, "embedding_head": heads - model.margin_head.weight.numel(),
                      "margin_head": model.margin_head.weight.numel(), "total": peft_trainable + heads}


@pytest.mark.parametrize("method", ["lora", "dora", "loha"])
def test_merged_embeddings_equal_adapter_embeddings(method):
    model = tiny_model("vit")
    pixels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        base = model.facerec(pixels).embeddings
    apply_peft(model, build_peft_config("vit", method, rank=4))
    _perturb_adapter(model)
    model.eval()
    with torch.no_grad():
        adapted = model.facerec(pixels).embeddings
        merge_adapter(model)
        merged = model.facerec(pixels).embeddings
    assert not has_adapter(model) and type(model.facerec.backbone).__name__ == "ViTModel"
    assert (adapted - base).abs().max() > 1e-3  # the adapter does something
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
    merge_adapter(model)  # no adapter left: a no-op


def test_save_and_load_adapter_roundtrip(tmp_path):
    model = tiny_model("vit")
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    apply_peft(model, build_peft_config("vit", rank=4))
    _perturb_adapter(model)
    with torch.no_grad():
        model.margin_head.weight.mul_(2.0)
        model.facerec.embedding_head.linear.weight.add_(0.5)
    save_adapter(model, tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "margin_head.safetensors", "config.json",
            "model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    fresh = tiny_model("vit")
    fresh.load_state_dict(initial_state)  # the same base weights, fresh heads
    load_adapter(fresh, tmp_path / "adapter")
    pixels = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.tensor([0, 1, 2])
    model.eval()
    fresh.eval()
    with torch.no_grad():
        expected, got = model(pixels, labels=labels), fresh(pixels, labels=labels)
    torch.testing.assert_close(got.embeddings, expected.embeddings, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.loss, expected.loss)
    with pytest.raises(ValueError, match="already carries"):
        load_adapter(fresh, tmp_path / "adapter")
    with pytest.raises(FileNotFoundError, match="save_adapter"):
        load_adapter(tiny_model("vit"), tmp_path)
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config_path.write_text(config_path.read_text().replace("backbone", "other"))  # a plain peft adapter
    with pytest.raises(ValueError, match="not written by save_adapter"):
        load_adapter(tiny_model("vit"), tmp_path / "adapter")
    with pytest.raises(ValueError, match="no peft adapter"):
        save_adapter(tiny_model("vit"), tmp_path / "none")


_PEFT_NATIVE = """
import json, sys
import torch, hf_facerec
from peft import AutoPeftModel
from transformers import AutoModel
adapter, pixels = sys.argv[1], torch.load(sys.argv[2])
out = {}
for name, load in (("AutoPeftModel", AutoPeftModel.from_pretrained), ("AutoModel", AutoModel.from_pretrained)):
    model = load(adapter).eval()
    with torch.no_grad():
        out[name] = model(pixel_values=pixels).embeddings.tolist()
    out[name + "_class"] = type(model).__name__
print(json.dumps(out))
"""


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_run_adapter_loads_the_peft_way_with_its_heads(tmp_path, method):
    """What the user did: a LoRA run's adapter/ loaded with peft's and transformers' own calls, in a fresh
    interpreter and another working directory, gives the trained model's embeddings (heads included). DoRA too:
    its magnitude vectors are the key transformers' loader used to miss (silently random)."""
    from peft import PeftModel
    from transformers import AutoModel

    from hf_facerec.models import FaceRecModel

    model = tiny_model("vit")
    initial = {k: v.clone() for k, v in model.facerec.state_dict().items()}
    trainer = FaceRecTrainer(model=model, args=tiny_args(tmp_path / "run", finetune_mode="lora", max_steps=3,
                                                         peft_method=method), train_dataset=TinyFaces())
    trainer.train()
    _perturb_adapter(model)  # 3 steps move LoRA's B little: make the adapter's part plain to see
    with torch.no_grad():
        model.facerec.embedding_head.linear.weight.add_(0.3)  # and the trained head must come along
    adapter = tmp_path / "run" / "adapter"
    trainer.save_adapter(adapter)
    pixels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        trained = model.facerec(pixels).embeddings
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["modules_to_save"] == ["embedding_head"] and config["base_model_name_or_path"] == str(
        adapter.resolve())
    torch.save(pixels, tmp_path / "pixels.pt")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", _PEFT_NATIVE, str(adapter), str(tmp_path / "pixels.pt")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["AutoPeftModel_class"], out["AutoModel_class"]) == ("PeftModel", "FaceRecModel")
    for name in ("AutoPeftModel", "AutoModel"):
        torch.testing.assert_close(torch.tensor(out[name]), trained, atol=1e-5, rtol=0, msg=name)
    # moved elsewhere: AutoModel loads the co-located base + adapter (fresh interpreter, another directory);
    # onto a base with the same backbone weights and fresh heads, the heads come from the adapter
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    adapter.rename(moved)
    script = _PEFT_NATIVE.replace('("AutoPeftModel", AutoPeftModel.from_pretrained), ("AutoModel", AutoModel.from_pretrained)',
                                  '("AutoModel", AutoModel.from_pretrained),')
    result = subprocess.run([sys.executable, "-c", script, str(moved), str(tmp_path / "pixels.pt")],
                            capture_output=True, text=True, env=env, cwd=moved.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    torch.testing.assert_close(torch.tensor(out["AutoModel"]), trained, atol=1e-5, rtol=0, msg="moved AutoModel")
    base = FaceRecModel(model.config)
    base.load_state_dict(initial)
    with torch.no_grad():
        base.embedding_head.linear.weight.zero_()
        assert (base(pixels).embeddings - trained).abs().max() > 1e-2  # the base alone is another model
        for loaded in (PeftModel.from_pretrained(base, moved), AutoModel.from_pretrained(moved)):
            torch.testing.assert_close(loaded.eval()(pixel_values=pixels).embeddings, trained, atol=1e-5, rtol=0)


_LOAD_WITHOUT_PEFT = """
import json, sys
sys.modules["peft"] = None  # any `import peft` now fails
import torch, hf_facerec
from transformers import AutoImageProcessor, AutoModel
model = AutoModel.from_pretrained(sys.argv[1]).eval()
processor = AutoImageProcessor.from_pretrained(sys.argv[1])
pixels = torch.load(sys.argv[2])
with torch.no_grad():
    embeddings = model(pixels).embeddings
torch.save(embeddings, sys.argv[3])
print(json.dumps({"class": type(model).__name__, "backbone": type(model.backbone).__name__,
                  "processor": type(processor).__name__, "size": processor.size["height"]}))
"""


def test_final_model_is_merged_and_loads_without_peft(tmp_path):
    model = tiny_model("vit")
    trainer = FaceRecTrainer(model=model, args=tiny_args(tmp_path / "run", finetune_mode="lora", max_steps=3),
                             train_dataset=TinyFaces(), processing_class=FaceRecImageProcessor(
                                 size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}))
    trainer.train()
    trainer.save_adapter(tmp_path / "adapter")
    _perturb_adapter(model)  # make the adapter's contribution large enough to be seen in the comparison
    pixels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.eval()
    with torch.no_grad():
        adapted = model.facerec(pixels).embeddings
    out = trainer.save_final_model(tmp_path / "final")
    with safe_open(Path(out) / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("lora" in k or "base_layer" in k or "margin_head" in k for k in keys)
    assert json.loads((Path(out) / "config.json").read_text())["model_type"] == "facerec"
    torch.save(pixels, tmp_path / "pixels.pt")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_PEFT, out, str(tmp_path / "pixels.pt"),
                             str(tmp_path / "embeddings.pt")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info == {"class": "FaceRecModel", "backbone": "ViTModel", "processor": "FaceRecImageProcessor",
                    "size": IMAGE_SIZE}
    torch.testing.assert_close(torch.load(tmp_path / "embeddings.pt"), adapted, atol=1e-5, rtol=0)


def test_final_model_from_sharded_weights_is_rebuilt_and_merged(tmp_path, monkeypatch):
    """Under FSDP / DeepSpeed the trainer's modules hold shards: the final model is rebuilt on the main process
    from the gathered state dict (here the plain state dict, FSDP being simulated), with the same adapter."""
    from hf_facerec.models import FaceRecModel

    model = tiny_model("vit")
    trainer = FaceRecTrainer(model=model, args=tiny_args(tmp_path / "run", finetune_mode="lora", max_steps=2),
                             train_dataset=TinyFaces())
    trainer.train()
    _perturb_adapter(model)
    pixels = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.eval()
    with torch.no_grad():
        adapted = model.facerec(pixels).embeddings
    monkeypatch.setattr(trainer, "is_fsdp_enabled", True)
    trainer.save_adapter(tmp_path / "adapter")
    out = trainer.save_final_model(tmp_path / "final")
    assert has_adapter(model)  # the trainer's (sharded, in real life) model was left alone
    loaded = FaceRecModel.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).embeddings, adapted, atol=1e-5, rtol=0)
