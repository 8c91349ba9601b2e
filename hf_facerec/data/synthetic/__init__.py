"""Procedural SYNTHETIC face identities: cartoon faces drawn from random numbers, not faces of anyone.

:mod:`.params` (identity parameters and their seeded sampling), :mod:`.render` (the rasteriser) and
:mod:`.datasets` (``datasets.Dataset`` builders: ``make_synthetic_faces``, ``make_synthetic_pairs``);
everything is importable from here. The dataset builders load lazily: they import ``datasets``,
which rendering alone does not need.
"""

from hf_facerec.data.synthetic.params import (
    IdentityParams,
    SyntheticFaceConfig,
    identity_rng,
    image_rng,
    sample_identity,
)
from hf_facerec.data.synthetic.render import render_identity_image

_DATASET_NAMES = (
    "make_synthetic_faces", "make_synthetic_pairs", "assign_groups", "NO_GROUP", "MIXED_GROUP", "DEFAULT_EVAL_OFFSET",
    "PAIR_FEATURES", "render_synthetic_faces",
)

__all__ = [
    "IdentityParams", "SyntheticFaceConfig", "identity_rng", "image_rng", "render_identity_image", "sample_identity",
    *_DATASET_NAMES,
]


def __getattr__(name: str):
    if name in _DATASET_NAMES:
        from hf_facerec.data.synthetic import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
