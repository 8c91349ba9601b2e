"""Synthetic identities: geometry (landmarks vs template vs pixels), determinism, groups, datasets, pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from datasets import Array2D, ClassLabel, Features, Image, Value
from PIL import Image as PILImage

from hf_facerec.data.synthetic import datasets as sd
from hf_facerec.data.align import ARCFACE_TEMPLATE
from hf_facerec.data.synthetic import (
    IdentityParams,
    SyntheticFaceConfig,
    assign_groups,
    identity_rng,
    image_rng,
    make_synthetic_faces,
    make_synthetic_pairs,
    render_identity_image,
    sample_identity,
)

POSE_ONLY = SyntheticFaceConfig.no_nuisance(
    max_rotation=12.0, max_yaw=0.35, max_pitch=0.2, scale_jitter=0.07, max_shift=4.0
)


def _identity(i: int, group: str | None = None, config: SyntheticFaceConfig | None = None) -> IdentityParams:
    return sample_identity(identity_rng(0, i), group, config)


def _png_bytes(dataset, column: str = "image") -> list[bytes]:
    return [cell["bytes"] for cell in dataset.cast_column(column, Image(decode=False))[column]]


def _similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex, float]:
    """Least-squares dst ~ a * src + b over complex numbers (a = scale * e^{i angle}); returns a, b, max residual."""
    s, d = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    sc, dc = s - s.mean(), d - d.mean()
    a = (np.conj(sc) @ dc) / (np.conj(sc) @ sc)
    b = d.mean() - a * s.mean()
    return a, b, float(np.abs(a * s + b - d).max())


def test_render_shapes_and_landmarks_near_template():
    lms = []
    for i in range(6):
        params = _identity(i)
        for j in range(5):
            image, lm = render_identity_image(params, image_rng(0, i, j))
            assert image.shape == (112, 112, 3) and image.dtype == np.uint8
            assert lm.shape == (5, 2) and lm.dtype == np.float32
            lms.append(lm)
    dev = np.linalg.norm(np.stack(lms) - ARCFACE_TEMPLATE, axis=2)
    assert dev.mean() < 7.0 and dev.max() < 25.0, (dev.mean(), dev.max())


def test_no_nuisance_landmarks_equal_identity_geometry_at_any_size():
    params = _identity(3)
    cfg = SyntheticFaceConfig.no_nuisance()
    _, lm112 = render_identity_image(params, image_rng(0, 3, 0), 112, cfg)
    _, lm56 = render_identity_image(params, image_rng(0, 3, 1), 56, cfg)
    expected = np.array([[56 - params.eye_dx, params.eye_y], [56 + params.eye_dx, params.eye_y], [56, params.nose_y],
                         [56 - params.mouth_dx, params.mouth_y], [56 + params.mouth_dx, params.mouth_y]])
    np.testing.assert_allclose(lm112, expected, atol=1e-4)
    np.testing.assert_allclose(params.landmarks, expected, atol=1e-4)
    np.testing.assert_allclose(lm56 * 2, expected, atol=1e-4)


def test_in_plane_pose_moves_landmarks_by_a_bounded_similarity():
    cfg = SyntheticFaceConfig.no_nuisance(max_rotation=12.0, scale_jitter=0.07, max_shift=4.0)
    for i in range(4):
        params = _identity(i)
        for j in range(3):
            _, lm = render_identity_image(params, image_rng(0, i, j), 112, cfg)
            a, _, residual = _similarity_fit(params.landmarks, lm)
            assert residual < 1e-3
            assert abs(np.degrees(np.angle(a))) <= 12.0 + 1e-6 and 0.93 - 1e-6 <= abs(a) <= 1.07 + 1e-6


def test_eye_landmarks_sit_on_the_drawn_pupils_under_any_pose():
    """The landmarks go through the same transform as the polygons: the pixel under each eye point is pupil-dark."""
    for i in range(6):
        params = _identity(i)
        for j in range(3):
            image, lm = render_identity_image(params, image_rng(0, i, j), 112, POSE_ONLY)
            for x, y in lm[:2]:
                assert image[int(round(y)), int(round(x))].max() < 70, (i, j, image[int(round(y)), int(round(x))])


def test_render_is_deterministic_per_generator_and_validates():
    params = _identity(0)
    a, la = render_identity_image(params, image_rng(0, 0, 7))
    b, lb = render_identity_image(params, image_rng(0, 0, 7))
    c, _ = render_identity_image(params, image_rng(0, 0, 8))
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert _identity(0) == _identity(0) and _identity(0) != _identity(1)
    with pytest.raises(ValueError, match="IdentityParams"):
        render_identity_image({"face_rx": 30}, image_rng(0, 0, 0))
    with pytest.raises(ValueError, match="image_size"):
        render_identity_image(params, image_rng(0, 0, 0), image_size=16)


@pytest.mark.parametrize("bad", [{"noise": -1.0}, {"blur_prob": 1.5}, {"max_rotation": float("nan")},
                                 {"group_difficulty": {"A": -2}}, {"group_skin_tone": {"A": 1.5}}])
def test_config_rejects_bad_knobs(bad):
    with pytest.raises(ValueError):
        SyntheticFaceConfig(**bad)


def test_groups_shift_skin_tone_and_difficulty_scales_nuisances():
    cfg = SyntheticFaceConfig(group_skin_tone={"light": 0.1, "dark": 0.9}, group_difficulty={"light": 0.5, "dark": 2.0})
    luma = {g: np.mean([np.dot(_identity(i, g, cfg).skin, [0.299, 0.587, 0.114]) for i in range(40)])
            for g in ("light", "dark")}
    assert luma["light"] > luma["dark"] + 60
    unlisted = cfg.skin_tone_centre("unlisted")
    assert unlisted == SyntheticFaceConfig().skin_tone_centre("unlisted") and 0 <= unlisted <= 1
    assert cfg.skin_tone_centre(None) is None
    spread = {}
    for g in ("light", "dark"):
        params = _identity(0, g, cfg)
        assert params.nuisance_scale == cfg.group_difficulty[g]
        lms = np.stack([render_identity_image(params, image_rng(0, 0, j), 112, cfg)[1] for j in range(12)])
        spread[g] = np.linalg.norm(lms - lms.mean(0), axis=2).mean()
    assert spread["dark"] > 2.5 * spread["light"]


def test_assign_groups_round_robin_proportions_and_prefix_stability():
    assert assign_groups(np.arange(7), ("A", "B", "C")).tolist() == ["A", "B", "C", "A", "B", "C", "A"]
    assert set(assign_groups(np.arange(3), None)) == {sd.NO_GROUP}
    props = {"A": 0.7, "B": 0.2, "C": 0.1}
    groups = assign_groups(np.arange(1000), props)
    for name, share in props.items():
        assert abs((groups == name).sum() - 1000 * share) <= 3
    assert assign_groups(np.arange(5, 50), props).tolist() == groups[5:50].tolist()
    for bad in ("AB", ("A", "A"), ("A", ""), ("all",), {"A": -1.0, "B": 2.0}, {"A": 0.0}):
        with pytest.raises(ValueError):
            assign_groups(np.arange(3), bad)


def test_make_synthetic_faces_schema_determinism_and_prefix():
    ds = make_synthetic_faces(num_identities=3, images_per_identity=2, image_size=48, seed=1, groups=("A", "B"),
                              with_landmarks=True)
    names = ["synthetic_00000", "synthetic_00001", "synthetic_00002"]
    assert ds.features == Features({"image": Image(), "label": ClassLabel(names=names), "group": Value("string"),
                                    "landmarks": Array2D((5, 2), "float32")})
    assert "SYNTHETIC" in ds.info.description
    assert ds["label"] == [0, 0, 1, 1, 2, 2] and ds["group"] == ["A", "A", "B", "B", "A", "A"]
    first = ds[0]
    assert first["image"].size == (48, 48) and first["image"].mode == "RGB"
    assert np.asarray(first["landmarks"]).shape == (5, 2)
    raw = _png_bytes(ds)
    again = _png_bytes(make_synthetic_faces(3, 2, 48, seed=1, groups=("A", "B")))
    bigger = _png_bytes(make_synthetic_faces(4, 2, 48, seed=1, groups=("A", "B")))
    other = _png_bytes(make_synthetic_faces(3, 2, 48, seed=2, groups=("A", "B")))
    assert raw == again == bigger[:6]
    assert all(a != b for a, b in zip(raw, other))
    plain = make_synthetic_faces(2, 1, 40, identity_offset=7)
    assert plain["group"] == ["all", "all"] and plain.features["label"].names == ["synthetic_00007", "synthetic_00008"]
    assert "landmarks" not in plain.column_names


@pytest.mark.parametrize("kwargs", [{"num_identities": 0}, {"images_per_identity": 0}, {"image_size": 8}, {"seed": -1},
                                    {"num_identities": 2.5}, {"groups": "ABC"}])
def test_make_synthetic_faces_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_synthetic_faces(**{"num_identities": 2, "images_per_identity": 1, **kwargs})


def test_png_encoder_round_trips_through_pil():
    image = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    decoded = PILImage.open(io.BytesIO(sd._encode_png(image)))
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), image)


def test_pair_plan_genuine_impostor_folds_and_groups():
    groups = assign_groups(np.arange(60), ("A", "B", "C"))
    plan = sd._plan_pairs(np.random.default_rng(0), groups, n_folds=5, pairs_per_fold=40, images_per_identity=4,
                          same_group_fraction=1.0)
    same = plan["is_same"]
    assert len(same) == 200 and same.sum() == 100
    assert np.all(plan["id1"][same] == plan["id2"][same]) and np.all(plan["img1"][same] != plan["img2"][same])
    assert np.all(plan["id1"][~same] != plan["id2"][~same])
    assert np.all(groups[plan["id1"][~same]] == groups[plan["id2"][~same]])  # fraction 1: impostors within a group
    owners = [set(plan["id1"][plan["fold"] == f]) | set(plan["id2"][plan["fold"] == f]) for f in range(5)]
    assert all(owners[f].isdisjoint(owners[g]) for f in range(5) for g in range(f + 1, 5))
    for f in range(5):
        assert np.bincount(same[plan["fold"] == f], minlength=2).tolist() == [20, 20]
    mixed = sd._plan_pairs(np.random.default_rng(0), groups, 5, 40, 4, same_group_fraction=0.0)
    assert np.any(groups[mixed["id1"]] != groups[mixed["id2"]])


def test_make_synthetic_pairs_schema_groups_and_streams():
    pairs = make_synthetic_pairs(num_identities=12, pairs_per_fold=6, n_folds=3, seed=4, groups=("A", "B"),
                                 image_size=40, images_per_identity=3, same_group_impostor_fraction=0.0)
    assert pairs.features == sd.PAIR_FEATURES and len(pairs) == 18
    assert pairs["fold"] == [0] * 6 + [1] * 6 + [2] * 6
    assert pairs["is_same"] == ([True] * 3 + [False] * 3) * 3
    assert set(pairs["group"]) <= {"A", "B", "mixed"}
    assert all(g != "mixed" for g, s in zip(pairs["group"], pairs["is_same"]) if s)
    # Row 0 rebuilt from the documented streams: identity offset + plan index, image_rng(seed, identity, image).
    eval_ids = sd.DEFAULT_EVAL_OFFSET + np.arange(12)
    plan = sd._plan_pairs(np.random.default_rng([4, sd._PAIR_STREAM, sd.DEFAULT_EVAL_OFFSET]),
                          assign_groups(eval_ids, ("A", "B")), 3, 6, 3, 0.0)
    identity = sd.DEFAULT_EVAL_OFFSET + int(plan["id1"][0])
    group = assign_groups(np.array([identity]), ("A", "B"))[0]
    cfg = SyntheticFaceConfig(group_skin_tone={"A": 0.25, "B": 0.75})
    params = sample_identity(identity_rng(4, identity), group, cfg)
    expected, _ = render_identity_image(params, image_rng(4, identity, int(plan["img1"][0])), 40, cfg)
    assert np.array_equal(np.asarray(pairs[0]["image1"]), expected)
    genuine = pairs[0]
    assert not np.array_equal(np.asarray(genuine["image1"]), np.asarray(genuine["image2"]))


def test_pair_identities_are_disjoint_from_training_identities():
    train = set(_png_bytes(make_synthetic_faces(8, 3, 40, seed=0)))
    pairs = make_synthetic_pairs(num_identities=8, pairs_per_fold=4, n_folds=2, image_size=40, images_per_identity=3)
    assert not train & set(_png_bytes(pairs, "image1") + _png_bytes(pairs, "image2"))
    assert set(pairs["group"]) == {"all"}


@pytest.mark.parametrize("kwargs", [{"pairs_per_fold": 5}, {"num_identities": 5}, {"images_per_identity": 1},
                                    {"same_group_impostor_fraction": 1.5}, {"n_folds": 0}, {"identity_offset": -3}])
def test_make_synthetic_pairs_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_synthetic_pairs(**{"num_identities": 6, "pairs_per_fold": 4, "n_folds": 3, "image_size": 32, **kwargs})


def test_identity_signal_survives_nuisances():
    """Same-identity images are more alike than different-identity ones even in raw pixels (the bench
    script shows raw pixels stay far from separating them: ~66% verification accuracy)."""
    pairs = make_synthetic_pairs(num_identities=20, pairs_per_fold=40, n_folds=2, image_size=48, seed=3)
    a = np.stack([np.asarray(im, np.float32).ravel() for im in pairs["image1"]])
    b = np.stack([np.asarray(im, np.float32).ravel() for im in pairs["image2"]])
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    same = np.asarray(pairs["is_same"])
    assert cos[same].mean() > cos[~same].mean() + 0.05


def test_render_synthetic_faces_are_the_dataset_pixels_for_any_worker_count():
    arrays = sd.render_synthetic_faces(70, 2, 48, seed=1, groups=("A", "B"))  # 140 images: a pool of 2 starts
    assert arrays["images"].shape == (140, 48, 48, 3) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].tolist() == np.repeat(np.arange(70), 2).tolist()
    assert arrays["groups"][:4].tolist() == ["A", "A", "B", "B"] and arrays["landmarks"].shape == (140, 5, 2)
    parallel = sd.render_synthetic_faces(70, 2, 48, seed=1, groups=("A", "B"), num_workers=2)
    for key in ("images", "labels", "groups", "landmarks"):
        np.testing.assert_array_equal(parallel[key], arrays[key])
    decoded = [np.asarray(PILImage.open(io.BytesIO(png))) for png in _png_bytes(
        make_synthetic_faces(70, 2, 48, seed=1, groups=("A", "B"), num_workers=2))]
    np.testing.assert_array_equal(np.stack(decoded), arrays["images"])
    with pytest.raises(ValueError, match="num_workers"):
        sd.render_synthetic_faces(70, 2, 48, num_workers=0)


def test_make_synthetic_pairs_same_rows_with_parallel_rendering():
    kwargs = {"pairs_per_fold": 20, "image_size": 48, "seed": 2, "groups": ("A", "B", "C")}
    serial, parallel = make_synthetic_pairs(40, **kwargs), make_synthetic_pairs(40, num_workers=2, **kwargs)
    assert _png_bytes(serial, "image1") == _png_bytes(parallel, "image1")
    assert _png_bytes(serial, "image2") == _png_bytes(parallel, "image2")
    assert serial["group"] == parallel["group"] and serial["is_same"] == parallel["is_same"]
