"""The benchmark runner end to end on SYNTHETIC pair sets (.bin, CSV, LFW-style pairs.txt, RFW, IJB),
plus its building blocks: image keys and dedupe, fingerprints, the embedding cache, groupings, bias."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from hf_facerec import FaceEmbedder, FaceRecConfig, FaceRecModel, IResNetConfig
from hf_facerec.cli import main as cli_main
from hf_facerec.data.align import NoFaceDetectedError, align_face
from hf_facerec.data.synthetic import make_synthetic_faces, make_synthetic_pairs
from hf_facerec.evaluation import bias_report
from hf_facerec.benchmarks.cache import EmbeddingCache, image_key, model_fingerprint, unique_pair_images
from hf_facerec.benchmarks.registry import BenchmarkNotFoundError, load_group_file, locate_benchmark
from hf_facerec.benchmarks.runner import evaluate_model
from hf_facerec.data.preprocess import FacePreprocess as _Preprocess
from hf_facerec.data.preprocess import build_preprocess, face_template
from hf_facerec.data.preprocess import crop_to_aspect as _crop_to_aspect
from hf_facerec.evaluation.bias_groups import (
    MIXED_GROUP,
    grouped_bias_report,
    identity_pair_groups,
    impostor_fmr_report,
)

from ..conftest import fill_disk_on

FACE_SIZE = [56, 48]  # (height, width): not square, so .bin crops go through the aspect crop


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    backbone = IResNetConfig(layers=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], image_size=FACE_SIZE)
    config = FaceRecConfig(backbone_config=backbone, embedding_size=8, embedding_head="linear", image_size=FACE_SIZE)
    return FaceRecModel(config).eval()


@pytest.fixture(scope="module")
def pairs():
    """40 SYNTHETIC pairs (5 folds of 4 genuine + 4 impostor) of 40 identities in groups a/b (and mixed impostors)."""
    return make_synthetic_pairs(num_identities=40, pairs_per_fold=8, n_folds=5, image_size=64, groups=["a", "b"])


def _raw_images(pairs, column):
    return [cell["bytes"] for cell in pairs.cast_column(column, __import__("datasets").Image(decode=False))[column]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, pairs):
    """``lfw.bin`` (InsightFace pickle) plus ``pairs.csv`` with the images as PNG files and a group column."""
    root = tmp_path_factory.mktemp("bench")
    images1, images2 = _raw_images(pairs, "image1"), _raw_images(pairs, "image2")
    bins = [image for pair in zip(images1, images2) for image in pair]
    with open(root / "lfw.bin", "wb") as handle:
        pickle.dump((bins, list(pairs["is_same"])), handle)
    (root / "img").mkdir()
    rows = ["path1,path2,label,group,fold"]
    for i, (a, b) in enumerate(zip(images1, images2)):
        (root / "img" / f"{i}a.png").write_bytes(a)
        (root / "img" / f"{i}b.png").write_bytes(b)
        rows.append(f"img/{i}a.png,img/{i}b.png,{int(pairs['is_same'][i])},{pairs['group'][i]},{pairs['fold'][i]}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root


def _count_embed_calls(monkeypatch) -> list[int]:
    from hf_facerec.benchmarks import pipeline

    calls: list[int] = []
    original = pipeline.embed_aligned

    def counting(embedder, images, *args, **kwargs):
        calls.append(len(images))
        return original(embedder, images, *args, **kwargs)

    monkeypatch.setattr(pipeline, "embed_aligned", counting)
    return calls


def test_runner_end_to_end_and_cache(model, data_dir, tmp_path, monkeypatch):
    calls = _count_embed_calls(monkeypatch)
    kwargs = dict(pairs_csv=data_dir / "pairs.csv", far=0.1, batch_size=16, cache_dir=tmp_path / "cache")
    results = evaluate_model(model, "lfw,cfp_fp", data_dir, tmp_path / "out", **kwargs)
    # .bin images repeat across pairs: each distinct image is embedded once (bytes hash).
    n_unique = results["benchmarks"]["lfw"]["n_images"]
    assert calls == [n_unique, results["benchmarks"]["pairs"]["n_images"]] and n_unique < 80
    assert set(results["benchmarks"]) == {"lfw", "pairs"}
    assert results["skipped"]["cfp_fp"]["expected"] == [str(data_dir / "cfp_fp.bin"), str(data_dir / "cfp_fp" / "cfp_fp.bin")]
    for name in ("lfw", "pairs"):
        r = results["benchmarks"][name]
        assert r["cache"] == "miss" and r["n_pairs"] == 40 and r["embedding_dim"] == 8  # flip "sum" keeps D
    bias = results["benchmarks"]["pairs"]["bias"]["group"]
    assert set(bias["groups"]) == {"a", "b"} and set(bias["other_groups"]) == {MIXED_GROUP}
    assert {"fdr", "garbe", "accuracy_summary", "threshold"} <= set(bias)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["benchmarks"]["lfw"]["verification"]["n_genuine"] == 20
    assert set(on_disk) >= {"model", "model_fingerprint", "settings", "benchmarks", "skipped", "files"}
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| lfw | 40 |" in markdown and "cfp_fp: not found" in markdown and "Bias: pairs by group" in markdown
    for png in ("roc", "det", "scores_lfw", "scores_pairs", "bias_pairs_group_accuracy", "bias_pairs_group_fmr", "bias_pairs_group_fnmr"):
        assert (tmp_path / "out" / f"{png}.png").stat().st_size > 1000

    calls.clear()  # a rerun with the same settings embeds nothing and reports the same numbers
    again = evaluate_model(model, "lfw,cfp_fp", data_dir, tmp_path / "out2", **kwargs)
    assert calls == [] and again["benchmarks"]["lfw"]["cache"] == "hit"
    assert again["benchmarks"]["lfw"]["verification"] == on_disk["benchmarks"]["lfw"]["verification"]
    # Another flip mode is another cache entry.
    flipped = evaluate_model(model, "lfw", data_dir, tmp_path / "out3", **{**kwargs, "pairs_csv": None}, flip="concat")
    assert calls == [n_unique] and flipped["benchmarks"]["lfw"]["embedding_dim"] == 16


def test_bin_scores_match_a_direct_embedding(model, data_dir, pairs, tmp_path):
    results = evaluate_model(model, ["lfw"], data_dir, tmp_path, flip="none", use_cache=False, plots=False)
    # Independent path: decode, centre-crop the 64x64 squares to the 56:48 aspect, embed, score.
    embedder = FaceEmbedder(model, flip="none", preprocess=lambda im: _crop_to_aspect(im, FACE_SIZE))
    e1, e2 = embedder(_raw_images(pairs, "image1")), embedder(_raw_images(pairs, "image2"))
    scores = np.einsum("nd,nd->n", e1, e2)
    from hf_facerec.evaluation import verification_report

    expected = verification_report(scores, np.asarray(pairs["is_same"]), folds=np.repeat(np.arange(10), 4))  # .bin: 10 folds
    got = results["benchmarks"]["lfw"]["verification"]
    assert got["auc"] == pytest.approx(expected["auc"]) and got["accuracy"] == pytest.approx(expected["accuracy"])
    assert results["benchmarks"]["lfw"]["cache"] == "off" and results["files"][2:] == []
    assert results["benchmarks"]["lfw"]["alignment"] == "none (aligned crops)"
    assert all(p.is_contiguous() for p in model.parameters())  # channels_last was for the run only


def _save_people(folder, faces, names, per_identity=4):
    """``folder/<Name>/<Name>_000k.jpg`` for identity-major SYNTHETIC faces."""
    for index, row in enumerate(faces):
        name = names[row["label"]]
        (folder / name).mkdir(parents=True, exist_ok=True)
        row["image"].save(folder / name / f"{name}_{index % per_identity + 1:04d}.jpg", quality=95)


@pytest.fixture(scope="module")
def lfw_and_rfw(tmp_path_factory):
    """LFW-style (lfw/pairs.txt + lfw/images) and RFW-style (rfw/txts/<race>, rfw/data/<race>) sets of
    SYNTHETIC faces of 8 people P0..P7 (even: M, odd: F in groups.csv)."""
    root = tmp_path_factory.mktemp("raw")
    faces = make_synthetic_faces(num_identities=8, images_per_identity=4, image_size=64)
    names = [f"P{i}" for i in range(8)]
    _save_people(root / "lfw" / "images", faces, names)
    lines = ["2 3"]
    for fold in range(2):  # 3 genuine then 3 impostor pairs per fold, identity-disjoint folds
        a, b, c, d = names[4 * fold : 4 * fold + 4]
        lines += [f"{a} 1 2", f"{b} 3 4", f"{c} 1 3", f"{a} 1 {c} 2", f"{b} 2 {d} 3", f"{c} 1 {d} 4"]
    (root / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    for race, start in (("African", 0), ("Asian", 4)):
        a, b, c, d = names[start : start + 4]
        race_lines = [f"{a} 1 2", f"{b} 1 3", f"{a} 1 {c} 2", f"{b} 2 {d} 1"] * 2  # two folds
        (root / "rfw" / "txts" / race).mkdir(parents=True)
        (root / "rfw" / "txts" / race / f"{race}_pairs.txt").write_text("\n".join(race_lines) + "\n")
        _save_people(root / "rfw" / "data" / race, faces.select(range(4 * start, 4 * start + 16)), names)
    (root / "groups.csv").write_text("identity,gender\n" + "".join(f"P{i},{'F' if i % 2 else 'M'}\n" for i in range(8)))
    return root


def test_lfw_pairs_txt_rfw_and_group_file(model, lfw_and_rfw, tmp_path):
    results = evaluate_model(model, "lfw,rfw", lfw_and_rfw, tmp_path, group_file=lfw_and_rfw / "groups.csv", far=0.25, use_cache=False)
    lfw = results["benchmarks"]["lfw"]
    assert lfw["n_pairs"] == 12 and lfw["n_images"] == 20 and lfw["source"].endswith("pairs.txt")
    gender = lfw["bias"]["gender"]  # genuine: M M F per fold; impostors: M-M, F-F, mixed
    assert {g: (r["n_genuine"], r["n_impostor"]) for g, r in gender["groups"].items()} == {"F": (2, 2), "M": (4, 2)}
    assert gender["other_groups"]["mixed"]["n_impostor"] == 2
    rfw = results["benchmarks"]["rfw"]
    assert set(rfw["bias"]) == {"race", "gender"}
    race = rfw["bias"]["race"]
    assert {g: (r["n_genuine"], r["n_impostor"]) for g, r in race["groups"].items()} == {"African": (4, 4), "Asian": (4, 4)}
    assert (tmp_path / "bias_rfw_race_accuracy.png").exists() and (tmp_path / "bias_lfw_gender_fmr.png").exists()


def test_ijb_template_verification_and_identification(model, tmp_path):
    faces = make_synthetic_faces(num_identities=4, images_per_identity=4, image_size=64, with_landmarks=True)
    base = tmp_path / "IJBC"
    (base / "meta").mkdir(parents=True)
    (base / "loose_crop").mkdir()
    media, points = [], []
    for i, row in enumerate(faces):
        row["image"].save(base / "loose_crop" / f"{i}.png")
        template = 100 + 2 * row["label"] + i % 4 // 2  # two templates per subject, two images each
        media.append(f"{i}.png {template} {1000 + i}\n")
        points.append(f"{i}.png {' '.join(f'{v:.3f}' for v in np.ravel(row['landmarks']))} 0.99\n")
    (base / "meta" / "ijbc_face_tid_mid.txt").write_text("".join(media))
    (base / "meta" / "ijbc_name_5pts_score.txt").write_text("".join(points))
    pair_lines = [f"{100 + 2 * s} {101 + 2 * s} 1\n" for s in range(4)] + [f"{100 + 2 * s} {101 + 2 * ((s + 1) % 4)} 0\n" for s in range(4)]
    (base / "meta" / "ijbc_template_pair_label.txt").write_text("".join(pair_lines))
    (base / "meta" / "ijbc_1N_gallery_G1.csv").write_text("TEMPLATE_ID,SUBJECT_ID\n" + "".join(f"{100 + 2 * s},{s}\n" for s in range(3)))
    (base / "meta" / "ijbc_1N_probe_mixed.csv").write_text("TEMPLATE_ID,SUBJECT_ID\n" + "".join(f"{101 + 2 * s},{s}\n" for s in range(4)))
    results = evaluate_model(model, "ijbc,ijbb", tmp_path, tmp_path / "out", use_cache=False)
    ijbc = results["benchmarks"]["ijbc"]
    assert ijbc["n_templates"] == 8 and ijbc["n_pairs"] == 8 and ijbc["verification"]["accuracy"] is None
    assert ijbc["alignment"] == "protocol landmarks" and ijbc["verification"]["n_genuine"] == 4
    ident = ijbc["identification"]["probe_mixed_vs_gallery_G1"]
    assert ident["n_probes"] == 4 and ident["n_mated"] == 3 and ident["n_gallery"] == 3
    assert "ijbb" in results["skipped"]


# ---- building blocks -----------------------------------------------------------------------------


def test_unique_pair_images_and_keys(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    sources, i1, i2, keys = unique_pair_images([str(a), b"img", str(a)], [b"img", str(b), os.path.relpath(a)])
    assert sources == [str(a), b"img", str(b)] and i1.tolist() == [0, 1, 0] and i2.tolist() == [1, 2, 0]
    assert keys[1] == "sha1:" + __import__("hashlib").sha1(b"img").hexdigest()
    before = image_key(a)
    os.utime(a, ns=(1, 1))  # a changed file is another image
    assert image_key(a) != before
    with pytest.raises(ValueError, match="same length|entries"):
        unique_pair_images([b"a"], [])
    with pytest.raises(ValueError, match="image source"):
        image_key(123)


def test_model_fingerprint_tracks_weights_and_processor(model):
    from hf_facerec import FaceRecImageProcessor

    first = model_fingerprint(model)
    assert model_fingerprint(model) == first
    clone = FaceRecModel(model.config).eval()
    clone.load_state_dict(model.state_dict())
    assert model_fingerprint(clone) == first
    with torch.no_grad():
        next(clone.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(clone) != first
    p1 = FaceRecImageProcessor(size={"height": 56, "width": 48})
    p2 = FaceRecImageProcessor(size={"height": 56, "width": 48}, image_std=[128 / 255] * 3)
    assert model_fingerprint(model, p1) != model_fingerprint(model, p2)


def test_embedding_cache_roundtrip(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    assert cache.load("k", 3) is None
    cache.save("k", np.ones((3, 2), np.float32), {"n": 3})
    array, meta = cache.load("k", 3)
    assert array.shape == (3, 2) and meta == {"n": 3}
    assert cache.load("k", 4) is None  # wrong size: treated as absent
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["k.json", "k.npy"]  # no temporary files left


def test_face_template_and_aspect_crop_match_the_96x112_template():
    assert face_template((112, 96)) == ("96x112", (96, 112))
    assert face_template((112, 112)) == ("arcface", (112, 112))
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (200, 180, 3), dtype=np.uint8))
    landmarks = np.array([[60.0, 80.0], [110.0, 78.0], [86.0, 105.0], [66.0, 130.0], [106.0, 129.0]])
    arcface = align_face(photo, landmarks, "arcface")  # 112x112
    narrow = align_face(photo, landmarks, "96x112")  # 96x112: the same face, 8 px less on each side
    cropped = _crop_to_aspect(arcface, (112, 96))
    assert cropped.size == (96, 112)
    # Equal up to OpenCV's fixed-point rounding (1/32 px): a handful of pixels differ by one level.
    difference = np.abs(np.asarray(cropped, np.int16) - np.asarray(narrow, np.int16))
    assert difference.max() <= 1 and np.count_nonzero(difference) < 10
    assert _crop_to_aspect(Image.new("RGB", (50, 100)), (112, 112)).size == (50, 50)


def test_preprocess_tries_aligners_in_turn_then_the_centre_crop():
    def no_face(image):
        raise NoFaceDetectedError("no face detected")

    found = Image.new("RGB", (96, 112), "red")
    chain = _Preprocess((112, 96), aligners=[no_face, lambda image: found])
    assert chain(Image.new("RGB", (250, 250))) is found and chain.no_face == 0
    preprocess = _Preprocess((112, 96), aligners=[no_face, no_face])
    out = preprocess(Image.new("RGB", (250, 250)))
    assert out.size == (214, 250) and preprocess.no_face == 1  # 250 * 96 / 112 = 214 columns kept
    for bad in ("mtcnn", "dlib,dlib", "", "yunet;dlib"):
        with pytest.raises(ValueError, match="align must be"):
            build_preprocess((112, 96), bad)
    assert build_preprocess((112, 96), "none")[1] == {"align": "none", "template": "96x112", "size": [96, 112]}


def test_group_file_and_identity_groups(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("identity,gender,n\nann,F,1\nbob,M,2\ncid,,3\n")
    assert load_group_file(path) == ("gender", {"ann": "F", "bob": "M"})
    assert load_group_file(path, "n")[1]["cid"] == "3"
    with pytest.raises(ValueError, match="group column"):
        load_group_file(path, "race")
    (tmp_path / "bad.csv").write_text("name,gender\nann,F\n")
    with pytest.raises(ValueError, match="identity"):
        load_group_file(tmp_path / "bad.csv")
    groups = identity_pair_groups(["ann", "ann", "ann", "bob", "zed"], ["ann", "bob", "ann", "bob", "ann"],
                                  [True, False, False, False, True], {"ann": "F", "bob": "M"})
    assert groups.tolist() == ["F", MIXED_GROUP, "F", "M", None]


def test_locate_benchmark_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        locate_benchmark("lfw2", tmp_path)
    with pytest.raises(BenchmarkNotFoundError) as info:
        locate_benchmark("agedb_30", tmp_path)
    assert info.value.expected[0] == str(tmp_path / "agedb_30.bin")


def test_impostor_fmr_report_hand_computed():
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.1, 0.0, 0.4, 0.2, 0.1])
    groups = np.array(["x"] * 5 + ["y"] * 5)
    report = impostor_fmr_report(scores, groups, far=0.2)  # 2 of 10 impostors may pass: threshold 0.8
    assert report["threshold"] == 0.8 and report["n_impostor"] == 10
    # Wilson 95% of 2/5: centre (0.4 + z^2/10) / (1 + z^2/5) = 0.4435, half-width 0.3258; 5 >= ceil(1/0.2) impostors.
    assert report["groups"]["x"] == {"fmr": 0.4, "fmr_std_error": pytest.approx(np.sqrt(0.24 / 5)), "false_matches": 2, "n_impostor": 5,
                                     "fmr_ci": pytest.approx([0.1176, 0.7693], abs=1e-4), "fmr_measurable": True, "min_impostors": 5}
    assert report["groups"]["y"]["fmr"] == 0.0 and report["fmr_max_min_ratio"] is None  # 0.4 / 0: unbounded
    assert report["fmr_gini"] == pytest.approx(2 / 1 * 0.8 / (2 * 4 * 0.2))  # n/(n-1) * sum|xi-xj| / (2 n^2 mean)
    assert impostor_fmr_report(scores, groups, threshold=0.35)["groups"]["y"]["fmr"] == 0.2
    with pytest.raises(ValueError, match="below 1/#impostors"):
        impostor_fmr_report(scores, groups, far=0.01)
    with pytest.raises(ValueError, match="2 groups"):
        impostor_fmr_report(scores, ["x"] * 10)
    with pytest.raises(ValueError, match="shape"):
        impostor_fmr_report(scores, ["x"] * 9)


def test_grouped_bias_report_matches_bias_report_and_handles_one_class_groups():
    rng = np.random.default_rng(0)
    n = 400
    labels = np.tile([1, 0], n // 2).astype(bool)
    scores = np.where(labels, rng.normal(0.6, 0.15, n), rng.normal(0.1, 0.15, n))
    groups = np.array(["F", "M"] * (n // 4) + ["M", "F"] * (n // 4), dtype=object)
    mixed = np.zeros(n, bool)
    mixed[1::8] = True  # some impostors of mixed gender, one pair without a group
    groups[mixed] = MIXED_GROUP
    groups[2] = None
    report = grouped_bias_report(scores, labels, groups, far=0.05)
    keep = (groups != MIXED_GROUP) & np.not_equal(groups, None)
    expected = bias_report(scores[keep], labels[keep], groups[keep].astype(str), far=0.05)
    assert report["groups"] == expected["groups"] and report["fdr"] == expected["fdr"]
    other = report["other_groups"][MIXED_GROUP]
    assert other["n_genuine"] == 0 and other["n_impostor"] == mixed.sum()
    assert other["fmr"] == pytest.approx(np.mean(scores[mixed] >= report["threshold"]))
    assert report["n_left_out"] == 1 and report["kind"] == "pairs"
    impostor_scores, impostor_groups = scores[~labels], groups[~labels]
    only_impostors = grouped_bias_report(impostor_scores, np.zeros(n // 2), impostor_groups, far=0.1)
    threshold = only_impostors["threshold"]  # FAR 0.1 over all 200 impostors, mixed ones included
    assert threshold == np.sort(impostor_scores)[-20]  # the 20th highest: 20 / 200 accepted
    assert only_impostors["kind"] == "impostor_only" and set(only_impostors["groups"]) == {"F", "M"}
    is_mixed = impostor_groups == MIXED_GROUP
    assert only_impostors["other_groups"][MIXED_GROUP]["fmr"] == np.mean(impostor_scores[is_mixed] >= threshold)
    assert only_impostors["groups"]["F"]["fmr"] == np.mean(impostor_scores[impostor_groups == "F"] >= threshold)
    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_bias_report(scores, labels, np.where(labels | keep, "F", MIXED_GROUP).astype(object), far=0.05)
    with pytest.raises(ValueError, match="no pair has a group"):
        grouped_bias_report(scores, labels, np.full(n, None, dtype=object))


def test_cli_evaluate(model, data_dir, tmp_path, capsys):
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    code = cli_main(["evaluate", "--model", str(tmp_path / "model"), "--benchmarks", "lfw,calfw", "--data-dir", str(data_dir),
                     "--flip", "none", "--batch-size", "32", "--output", str(out), "--no-plots"])
    printed = capsys.readouterr().out
    assert code == 0 and "## Verification" in printed and "calfw: not found" in printed
    assert json.loads((out / "results.json").read_text())["settings"]["flip"] == "none"
    assert (out / "embedding_cache").is_dir() and not (out / "roc.png").exists()
    with pytest.raises(ValueError, match="align must be"):  # checked before the model is loaded
        evaluate_model("no/such/model", "lfw", data_dir, out, align="mtcnn")
    # one error policy: bad input -> exit 2 and one line on stderr, no traceback
    assert cli_main(["evaluate", "--model", str(tmp_path / "model"), "--benchmarks", "nope", "--data-dir", str(data_dir), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--model", "m", "--far", "0", "--output", str(out)])


# ---- issue 13: output faults are one line and exit 2, checked before the model loads; no partial file ----------


def _evaluate_argv(tmp_path, data_dir, out, *extra):
    return ["evaluate", "--model", str(tmp_path / "model"), "--benchmarks", "lfw", "--data-dir", str(data_dir),
            "--flip", "none", "--output", str(out), *extra]


def _one_line(capsys, fragment):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]  # progress bars aside
    assert "Traceback" not in err and len(errors) == 1 and fragment in errors[0], err


def test_evaluate_output_a_file_or_read_only_is_refused_before_the_model_loads(model, data_dir, tmp_path, capsys,
                                                                               monkeypatch):
    import builtins

    import hf_facerec._files as files
    from hf_facerec.benchmarks import runner

    model.save_pretrained(tmp_path / "model")
    capsys.readouterr()  # the save's progress bar
    monkeypatch.setattr(runner, "_load_embedder", lambda *a, **k: pytest.fail("the model loaded before the check"))
    (tmp_path / "taken").write_text("a file")
    assert cli_main(_evaluate_argv(tmp_path, data_dir, tmp_path / "taken")) == 2
    _one_line(capsys, f"hf-facerec evaluate: error: output folder {tmp_path / 'taken'} is a file, not a folder")
    out = tmp_path / "ro"
    out.mkdir()

    def denied(path, *args, **kwargs):  # a read-only mount (chmod does not stop root)
        if str(path).startswith(str(out)):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", denied, raising=False)
    assert cli_main(_evaluate_argv(tmp_path, data_dir, out)) == 2
    _one_line(capsys, f"output folder {out} is not writable: Permission denied")
    assert cli_main(_evaluate_argv(tmp_path, data_dir, tmp_path / "ok", "--cache-dir", str(out / "cache"))) == 2
    _one_line(capsys, f"embedding cache folder {out / 'cache'} is not writable")


@pytest.mark.parametrize("victim", ["roc.png", "results.json", "results.md"])
def test_evaluate_full_disk_leaves_no_partial_file(model, data_dir, tmp_path, capsys, monkeypatch, victim):
    model.save_pretrained(tmp_path / "model")
    capsys.readouterr()
    out = tmp_path / "out"
    fill_disk_on(monkeypatch, victim)
    assert cli_main(_evaluate_argv(tmp_path, data_dir, out)) == 2
    _one_line(capsys, f"hf-facerec evaluate: error: cannot write {out / victim}: No space left on device")
    assert not (out / victim).exists()
    assert not [p for p in out.rglob(".*")], "a partial file was left behind"


def test_a_tampered_cache_entry_is_recomputed_not_trusted(model, data_dir, tmp_path, monkeypatch, caplog):
    # Issue 13: a cached .npy replaced by random finite values gave 50% instead of the real accuracy.
    kwargs = dict(far=0.1, cache_dir=tmp_path / "cache", plots=False)
    first = evaluate_model(model, "lfw", data_dir, tmp_path / "out", **kwargs)["benchmarks"]["lfw"]
    (entry,) = (tmp_path / "cache").glob("*.npy")
    real = np.load(entry)
    np.save(entry, np.random.default_rng(0).normal(size=real.shape).astype(np.float32))
    calls = _count_embed_calls(monkeypatch)
    with caplog.at_level("WARNING", logger="hf_facerec.benchmarks.cache"):
        again = evaluate_model(model, "lfw", data_dir, tmp_path / "out2", **kwargs)["benchmarks"]["lfw"]
    assert calls == [first["n_images"]] and again["cache"] == "miss" and again["verification"] == first["verification"]
    assert [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()] != []
    assert np.array_equal(np.load(entry), real)  # rewritten with the recomputed embeddings
