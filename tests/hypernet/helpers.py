"""Tiny hypernetworks and synthetic identities for the hypernet tests."""

import numpy as np
import torch

import hf_facerec.models  # noqa: F401  (registers the FaceRec Auto classes)
from hf_facerec.models import FaceRecConfig
from hf_facerec.hypernet import FaceRecHyperNetwork, HyperNetConfig

TINY_VIT = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "image_size": 32, "patch_size": 8}


def tiny_hypernet(embedding_size: int = 32, seed: int = 0, **kwargs) -> FaceRecHyperNetwork:
    torch.manual_seed(seed)
    facerec = FaceRecConfig(backbone_config=dict(TINY_VIT), image_size=32, embedding_size=embedding_size,
                            embedding_head="linear")
    settings = dict(chunk_size=128, generator_hidden_size=64, embedding_projection_size=32, target_channels=[8, 16, 16],
                    target_num_channels=3)
    settings.update(kwargs)
    return FaceRecHyperNetwork(HyperNetConfig(facerec_config=facerec, **settings))


def synthetic_identities(num_identities: int = 24, per_identity: int = 10, dim: int = 32, seed: int = 0):
    """SYNTHETIC faces (32 px RGB in [-1, 1], (N, 3, 32, 32)), labels (N,), and precomputed identity embeddings
    (N, dim): a random center per identity + small noise (the backbone does not matter for these tests)."""
    from hf_facerec.data.synthetic import render_synthetic_faces

    faces = render_synthetic_faces(num_identities, per_identity, 32, seed)
    pixels = torch.as_tensor(faces["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = faces["labels"]
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_identities, dim))
    embeddings = (centers[labels] + 0.1 * rng.normal(size=(len(labels), dim))).astype(np.float32)
    return pixels, labels, embeddings
