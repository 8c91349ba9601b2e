"""MobileFaceNet config + backbone; plus the remote-code check shared by both face backbone families."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_facerec.models.configuration_iresnet import IResNetConfig
from hf_facerec.models.configuration_mobilefacenet import MOBILEFACENET_BOTTLENECKS, MobileFaceNetConfig
from hf_facerec.models.modeling_iresnet import IResNetModel
from hf_facerec.models.modeling_mobilefacenet import MobileFaceNetModel

TINY = {"stem_size": 8, "bottleneck_settings": [[2, 8, 2, 2], [2, 16, 1, 2], [2, 16, 1, 2]], "feature_size": 32,
        "embedding_size": 16}


@pytest.fixture(autouse=True, scope="module")
def _register():
    AutoConfig.register("mobilefacenet", MobileFaceNetConfig, exist_ok=True)
    AutoModel.register(MobileFaceNetConfig, MobileFaceNetModel, exist_ok=True)


def test_full_size_matches_the_checkpoint_parameter_count():
    with torch.device("meta"):
        model = MobileFaceNetModel(MobileFaceNetConfig(image_size=(112, 96)))
    # 068.ckpt (MobileFaceNet_Pytorch, CASIA-WebFace) holds 999,552 parameters (MANIFEST.txt of ../shared/models).
    assert sum(p.numel() for p in model.parameters()) == 999_552
    assert model.pooler.gdc.convolution.weight.shape == (512, 1, 7, 6)
    residual = [block.use_residual for stage in model.stages for block in stage]
    # Identity only where stride 1 and channels kept: 4 of stage 1, none in the stride-2 stages, 6 + 2 after.
    assert len(residual) == 15 and sum(residual) == 12


@pytest.mark.parametrize(("image_size", "map_size"), [((112, 96), (7, 6)), (112, (7, 7)), ((112, 112), (7, 7))])
def test_full_size_forward_shapes(image_size, map_size):
    config = MobileFaceNetConfig(image_size=image_size)
    assert config.feature_map_size == map_size and config.hidden_size == 128
    model = MobileFaceNetModel(config).eval()
    height, width = config.image_size
    with torch.no_grad():
        out = model(torch.randn(2, 3, height, width), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 512, *map_size)
    assert out.pooler_output.shape == (2, 128)
    # stem, 5 stages, conv1x1 512 map
    assert [h.shape[1] for h in out.hidden_states] == [64, 64, 128, 128, 128, 128, 512]
    assert out.hidden_states[-1] is out.last_hidden_state
    torch.testing.assert_close(out.pooler_output, model.pooler(out.last_hidden_state))


def test_config_normalises_and_round_trips(tmp_path):
    config = MobileFaceNetConfig(image_size=112, bottleneck_settings=MOBILEFACENET_BOTTLENECKS)
    assert config.image_size == [112, 112]
    assert config.bottleneck_settings == [list(row) for row in MOBILEFACENET_BOTTLENECKS]
    assert MobileFaceNetConfig(embedding_size=256).hidden_size == 256
    with pytest.raises(ValueError, match="hidden_size is derived"):
        MobileFaceNetConfig(hidden_size=512)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "hidden_size" not in saved and saved["image_size"] == [112, 112]
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, MobileFaceNetConfig) and reloaded.to_diff_dict() == config.to_diff_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": (112,)}, "image_size"),
        ({"bottleneck_settings": [[2, 64, 5]]}, "bottleneck_settings"),
        ({"bottleneck_settings": [[2, 64, 0, 2]]}, "bottleneck_settings"),
        ({"bottleneck_settings": []}, "bottleneck_settings"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"stem_size": 1.5}, "stem_size"),
        ({"batch_norm_eps": -1.0}, "batch_norm_eps"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileFaceNetConfig(**kwargs)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = MobileFaceNetModel(MobileFaceNetConfig(image_size=(64, 48), **TINY)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MobileFaceNetModel)
    original, restored = model.state_dict(), reloaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    pixel_values = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(model(pixel_values).pooler_output, reloaded(pixel_values).pooler_output)


def test_without_pooler_returns_only_the_map():
    # FaceRecModel sets backbone.pooler = None when it pools the map itself.
    model = MobileFaceNetModel(MobileFaceNetConfig(image_size=(64, 48), **TINY)).eval()
    model.pooler = None
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 48))
    assert out.pooler_output is None and out.last_hidden_state.shape == (1, 32, 4, 3)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = MobileFaceNetModel(MobileFaceNetConfig(image_size=(64, 48), **TINY)).train()
    pixel_values = torch.randn(2, 3, 64, 48)

    def gradients():
        model.zero_grad()
        model(pixel_values).pooler_output.square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = gradients()
    model.activation_checkpointing_enable()
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 4, 112, 96), "expects 3 input channels"),
        ((1, 3, 112, 112), "expects 112x96 .* got 112x112"),
        ((112, 96), r"shape \(B, C, H, W\)"),
    ],
)
def test_bad_inputs_raise(shape, message):
    model = MobileFaceNetModel(MobileFaceNetConfig(image_size=(112, 96)))
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


_REMOTE_LOAD = """
import sys
class _NoPackage:  # remote code must not need this package
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_facerec":
            raise ImportError(f"remote code imported {name}")
sys.meta_path.insert(0, _NoPackage())
import torch
from transformers import AutoModel
for folder in sys.argv[1:]:
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert model.__class__.__module__.startswith("transformers_modules"), model.__class__.__module__
    with torch.no_grad():
        out = model(torch.load(folder + "/inputs.pt")).pooler_output
    torch.save(out, folder + "/remote_out.pt")
"""


def test_remote_code_loads_without_the_package(tmp_path, monkeypatch):
    """Both families saved with `auto_map` load through trust_remote_code in a process that cannot import
    hf_facerec: the files use only single-dot sibling imports (MobileFaceNet pulls in the IResNet files too)."""
    models = {
        "iresnet": IResNetModel(IResNetConfig(layers=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], image_size=32)),
        "mobilefacenet": MobileFaceNetModel(MobileFaceNetConfig(image_size=(64, 48), **TINY)),
    }
    folders = []
    for name, model in models.items():
        # What register_for_auto_class does, undone after the test so other tests save without remote code.
        monkeypatch.setattr(type(model.config), "_auto_class", "AutoConfig")
        monkeypatch.setattr(type(model), "_auto_class", "AutoModel")
        folder = tmp_path / name
        model.eval().save_pretrained(folder)
        size = model.config.image_size
        height, width = (size, size) if isinstance(size, int) else size
        torch.save(torch.randn(2, 3, height, width), folder / "inputs.pt")
        folders.append(str(folder))
    assert {p.name for p in (tmp_path / "mobilefacenet").glob("*.py")} == {
        "configuration_mobilefacenet.py", "modeling_mobilefacenet.py", "configuration_iresnet.py", "modeling_iresnet.py"
    }
    script = tmp_path / "load_remote.py"
    script.write_text(textwrap.dedent(_REMOTE_LOAD))
    result = subprocess.run(
        [sys.executable, str(script), *folders], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for (name, model), folder in zip(models.items(), folders):
        with torch.no_grad():
            local = model(torch.load(f"{folder}/inputs.pt")).pooler_output
        assert torch.equal(local, torch.load(f"{folder}/remote_out.pt")), name
