"""Checkpoint converters: cross-checked against independent re-implementations of the source architectures
(MobileFaceNet_Pytorch and insightface's iresnet, written here in their own module layout so their state dicts have
the source key names), plus the real MobileFaceNet checkpoint of ../shared when present."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hf_facerec.models.modeling_facerec import FaceRecModel

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load_script(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


cmf = _load_script("convert_mobilefacenet")
cir = _load_script("convert_iresnet")


# ---- reference MobileFaceNet, in the layout of Xiaoccer/MobileFaceNet_Pytorch (core/model.py) ----
class _RefConvBlock(nn.Module):
    def __init__(self, inp, oup, k, s, p, dw=False, linear=False):
        super().__init__()
        self.linear = linear
        self.conv = nn.Conv2d(inp, oup, k, s, p, groups=inp if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(oup)
        if not linear:
            self.prelu = nn.PReLU(oup)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.linear else self.prelu(x)


class _RefBottleneck(nn.Module):
    def __init__(self, inp, oup, stride, expansion):
        super().__init__()
        self.connect = stride == 1 and inp == oup
        hidden = inp * expansion
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.connect else self.conv(x)


class _RefMobileFacenet(nn.Module):
    def __init__(self, setting=((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)),
                 gdc_kernel=(7, 6)):
        super().__init__()
        self.conv1 = _RefConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = _RefConvBlock(64, 64, 3, 1, 1, dw=True)
        layers, inplanes = [], 64
        for t, c, n, s in setting:
            for i in range(n):
                layers.append(_RefBottleneck(inplanes, c, s if i == 0 else 1, t))
                inplanes = c
        self.blocks = nn.Sequential(*layers)
        self.conv2 = _RefConvBlock(128, 512, 1, 1, 0)
        self.linear7 = _RefConvBlock(512, 512, gdc_kernel, 1, 0, dw=True, linear=True)
        self.linear1 = _RefConvBlock(512, 128, 1, 1, 0, linear=True)

    def forward(self, x):
        x = self.linear7(self.conv2(self.blocks(self.dw_conv1(self.conv1(x)))))
        return self.linear1(x).view(x.size(0), -1)


# ---- reference IResNet, in the layout of insightface recognition/arcface_torch/backbones/iresnet.py ----
class _RefIBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class _RefIResNet(nn.Module):
    def __init__(self, layers, widths, num_features=512, fc_scale=7 * 7):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        for index, (depth, planes) in enumerate(zip(layers, widths), start=1):
            setattr(self, f"layer{index}", self._make_layer(planes, depth))
        self.bn2 = nn.BatchNorm2d(widths[-1], eps=1e-05)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(widths[-1] * fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)

    def _make_layer(self, planes, blocks):
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes))
        layers = [_RefIBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [_RefIBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights AND BatchNorm statistics, so a mis-mapped tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.rand(tensor.shape, generator=generator)
            tensor.copy_(0.5 + values if name.endswith("running_var") else (values - 0.5) * 0.5)
    return module.eval()


# ---- MobileFaceNet ----
def test_mobilefacenet_conversion_matches_reference(tmp_path):
    reference = _randomize(_RefMobileFacenet())
    path = tmp_path / "068.ckpt"
    torch.save({"epoch": 1, "net_state_dict": reference.state_dict()}, path)
    model = cmf.load_mobilefacenet_checkpoint(path)
    assert model.config.image_size == [112, 96] and not model.training
    pixel_values = torch.randn(3, 3, 112, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).pooler_output, reference(pixel_values), rtol=1e-4, atol=1e-4)


def test_mapping_errors_list_every_problem():
    source = _RefMobileFacenet().state_dict()
    config = cmf.mobilefacenet_config_from_state_dict(source)
    assert len(cmf.convert_mobilefacenet_state_dict(source, config)) == len(source)  # every key used
    del source["blocks.3.conv.6.weight"]
    source["head.weight"] = torch.zeros(3)
    source["blocks.99.conv.0.weight"] = torch.zeros(1)
    source["linear1.bn.bias"] = torch.zeros(7)
    with pytest.raises(cmf.CheckpointConversionError) as raised:
        cmf.convert_mobilefacenet_state_dict(source, config)
    message = str(raised.value)
    assert "4 problems" in message
    assert "unused source key (no mapping): head.weight" in message
    assert "unused source key (no mapping): blocks.99.conv.0.weight" in message
    assert "shape mismatch: linear1.bn.bias (7,) -> pooler.projection.normalization.bias (128,)" in message
    assert "target key without a source value: stages.0.3.project.convolution.weight" in message
    assert isinstance(raised.value, ValueError)


def test_old_checkpoints_without_batchnorm_counters_and_with_module_prefix(tmp_path):
    reference = _randomize(_RefMobileFacenet(gdc_kernel=(7, 7)))
    state = {f"module.{k}": v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "bare.pt")
    model = cmf.load_mobilefacenet_checkpoint(tmp_path / "bare.pt")
    assert model.config.image_size == [112, 112]
    pixel_values = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).pooler_output, reference(pixel_values), rtol=1e-4, atol=1e-4)


def test_not_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "x.ckpt")
    with pytest.raises(cmf.CheckpointConversionError, match="no tensor state dict"):
        cmf.load_mobilefacenet_checkpoint(tmp_path / "x.ckpt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "y.ckpt")
    with pytest.raises(cmf.CheckpointConversionError, match="not a MobileFaceNet_Pytorch state dict"):
        cmf.load_mobilefacenet_checkpoint(tmp_path / "y.ckpt")


def test_mobilefacenet_cli_saves_a_face_model(tmp_path):
    reference = _randomize(_RefMobileFacenet())
    torch.save({"net_state_dict": reference.state_dict()}, tmp_path / "m.ckpt")
    cmf.main(["--checkpoint", str(tmp_path / "m.ckpt"), "--output", str(tmp_path / "face")])
    cmf.main(["--checkpoint", str(tmp_path / "m.ckpt"), "--output", str(tmp_path / "bb"), "--backbone-only"])
    face = FaceRecModel.from_pretrained(tmp_path / "face").eval()
    processor = json.loads((tmp_path / "face" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 112, "width": 96} and processor["image_std"] == [128 / 255] * 3
    pixel_values = torch.randn(2, 3, 112, 96)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference(pixel_values), dim=-1)
        torch.testing.assert_close(face(pixel_values).embeddings, expected, rtol=1e-4, atol=1e-4)
    assert (tmp_path / "bb" / "config.json").read_text().count('"mobilefacenet"') == 1


def _face_crop(path: Path) -> torch.Tensor:
    """Center crop to the 112:96 aspect, resize to 96x112, normalise as the source does: (x - 127.5) / 128."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    width, height = image.size
    crop_w = min(width, int(height * 96 / 112))
    crop_h = int(crop_w * 112 / 96)
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    image = image.crop((left, top, left + crop_w, top + crop_h)).resize((96, 112), Image.BILINEAR)
    return (torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) - 127.5) / 128


def test_real_mobilefacenet_checkpoint(shared_models, shared_data):
    path = shared_models / "mobilefacenet_casia" / "068.ckpt"
    source = cmf.load_torch_state_dict(path, container_keys=("net_state_dict",))
    config = cmf.mobilefacenet_config_from_state_dict(source)
    assert len(cmf.convert_mobilefacenet_state_dict(source, config)) == len(source) == 333  # every key used
    model = cmf.load_mobilefacenet_checkpoint(path)
    assert sum(p.numel() for p in model.parameters()) == 999_552 and not model.training
    reference = _RefMobileFacenet().eval()
    reference.load_state_dict(source, strict=True)  # the independent implementation takes the raw keys as-is

    photos = torch.stack([_face_crop(shared_data / "samples" / name) for name in ("obama.jpg", "obama2.jpg")])
    with torch.no_grad():
        embeddings = model(photos).pooler_output
        again = model(photos).pooler_output
        torch.testing.assert_close(embeddings, reference(photos), rtol=1e-4, atol=1e-4)
    assert embeddings.shape == (2, 128) and torch.isfinite(embeddings).all()
    assert torch.equal(embeddings, again)  # eval mode: deterministic


# ---- IResNet ----
def _tiny_insightface(layers=(1, 2, 1, 1), widths=(8, 16, 16, 32), num_features=24):
    return _randomize(_RefIResNet(list(layers), list(widths), num_features=num_features), seed=1)


def test_iresnet_conversion_matches_reference(tmp_path):
    reference = _tiny_insightface()
    torch.save(reference.state_dict(), tmp_path / "backbone.pth")
    backbone, head = cir.load_iresnet_checkpoint(tmp_path / "backbone.pth")
    assert backbone.config.layers == [1, 2, 1, 1] and backbone.config.hidden_sizes == [8, 16, 16, 32]
    assert backbone.config.image_size == 112 and backbone.config.hidden_size == 32 * 49
    assert sorted(head) == [
        "embedding_head.linear.bias", "embedding_head.linear.weight", "embedding_head.norm.bias",
        "embedding_head.norm.num_batches_tracked", "embedding_head.norm.running_mean",
        "embedding_head.norm.running_var", "embedding_head.norm.weight",
    ]
    face = cir.wrap_as_facerec(backbone, embedding_head="linear_bn", head_state_dict=head)
    pixel_values = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(face(pixel_values).features, reference(pixel_values), rtol=1e-4, atol=1e-4)


def test_iresnet_config_inference_and_errors():
    state = _tiny_insightface().state_dict()
    assert cir.iresnet_config_from_state_dict(state, image_size=120).image_size == 120
    state["fc.weight"] = torch.zeros(24, 32 * 50)
    with pytest.raises(cir.CheckpointConversionError, match="square"):
        cir.iresnet_config_from_state_dict(state)
    with pytest.raises(cir.CheckpointConversionError, match="not an insightface IResNet"):
        cir.iresnet_config_from_state_dict({"layer2.0.conv1.weight": torch.zeros(1)})
    state = _tiny_insightface().state_dict()
    config = cir.iresnet_config_from_state_dict(state)
    state["layer2.1.bn4.weight"] = torch.zeros(16)
    with pytest.raises(cir.CheckpointConversionError, match="unused source key .*layer2.1.bn4.weight"):
        cir.convert_iresnet_state_dict(state, config)


def test_iresnet_cli(tmp_path):
    reference = _tiny_insightface()
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, tmp_path / "backbone.pth")
    cir.main(["--checkpoint", str(tmp_path / "backbone.pth"), "--output", str(tmp_path / "face")])
    face = FaceRecModel.from_pretrained(tmp_path / "face").eval()
    assert face.config.embedding_head == "linear_bn" and face.config.embedding_size == 24
    pixel_values = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(face(pixel_values).features, reference(pixel_values), rtol=1e-4, atol=1e-4)
