"""Sizes are validated when a config or image processor loads: no terabyte allocation from a 100-byte JSON."""

import json

import numpy as np
import pytest

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecImageProcessor, FaceRecModel
from hf_facerec.models import IResNetConfig, MobileFaceNetConfig
from hf_facerec.models.configuration_iresnet import MAX_IMAGE_SIDE, to_size_pair

from .tiny_backbones import tiny_backbone_config

TOO_BIG = r"must be a positive int of at most 4096 pixels, got 1000000"


def test_size_pair_bounds_and_types():
    assert MAX_IMAGE_SIDE == 4096 and to_size_pair(4096) == (4096, 4096) and to_size_pair([112, 96]) == (112, 96)
    for bad in (10**6, [112, 10**6], 0, -3, 112.0, [112], "112", True):
        with pytest.raises(ValueError, match="image_size"):
            to_size_pair(bad)


@pytest.mark.parametrize("make", [
    lambda size: FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), image_size=size),
    lambda size: IResNetConfig(layers=[1, 1], hidden_sizes=[8, 8], image_size=size),
    lambda size: MobileFaceNetConfig(image_size=[size, 112]),
], ids=["facerec", "iresnet", "mobilefacenet"])
def test_configs_refuse_a_huge_image_size(make):
    with pytest.raises(ValueError, match="image_size " + TOO_BIG):
        make(10**6)


def test_hostile_config_json_is_refused_by_from_pretrained(tmp_path):
    torch_model = FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=8))
    torch_model.config.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    for key in ("image_size", "backbone"):
        config = json.loads(path.read_text())
        if key == "image_size":
            config["image_size"] = 10**6
            message = "image_size " + TOO_BIG
        else:
            config["backbone_config"]["image_size"] = 10**6  # would size the ViT position embeddings
            message = r"backbone_config.image_size " + TOO_BIG
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            FaceRecConfig.from_pretrained(tmp_path / key)


@pytest.mark.parametrize("kwargs, message", [
    ({"size": {"height": 100000, "width": 100000}}, r"size\['height'\] .* got 100000"),
    ({"size": {"height": 112, "width": 1e5}}, r"size\['width'\] .* got 100000.0"),
    ({"size": {"shortest_edge": 10**6}}, r"size\['shortest_edge'\] .* got 1000000"),
    ({"image_std": [0.5, 0.0, 0.5]}, r"image_std must be finite numbers > 0"),
    ({"image_mean": [float("nan")] * 3}, r"image_mean must be finite numbers"),
])
def test_processor_refuses_hostile_settings_at_init_load_and_call(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaceRecImageProcessor(**kwargs)
    FaceRecImageProcessor().save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **kwargs}))
    with pytest.raises(ValueError, match=message):
        FaceRecImageProcessor.from_pretrained(tmp_path)
    if all(isinstance(v, int) for v in kwargs.get("size", {"none": None}).values()):  # per call too (floats:
        with pytest.raises(ValueError, match=message):  # transformers' own kwargs check refuses them first)
            FaceRecImageProcessor()(images=[np.zeros((4, 4, 3), np.uint8)], **kwargs)


def test_face_embedder_from_pretrained_does_not_ignore_a_hostile_processor(tmp_path):
    FaceRecModel(FaceRecConfig(backbone_config=tiny_backbone_config("dinov2"), embedding_size=8)).save_pretrained(tmp_path)
    assert FaceEmbedder.from_pretrained(tmp_path).image_processor.size.height == 112  # none saved: derived
    FaceRecImageProcessor(size={"height": 112, "width": 112}).save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "size": {"height": 100000, "width": 100000}}))
    with pytest.raises(ValueError, match=r"size\['height'\]"):
        FaceEmbedder.from_pretrained(tmp_path)
