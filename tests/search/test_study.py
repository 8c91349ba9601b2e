"""Search trials end to end on synthetic faces: constraints prune before training, trials train and score a
proxy, the CSV, the plot, and the exported config that scripts/train.py parses and trains."""

from __future__ import annotations

import csv
import json

import numpy as np
import optuna
import pytest

from hf_facerec.data.synthetic import make_synthetic_faces
from hf_facerec.search import study as study_module
from hf_facerec.search.plots import plot_search
from hf_facerec.search.space import Decision, SearchSpace
from hf_facerec.search.study import ProxySettings, SearchData, best_so_far, export_best_config, run_search

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def data():
    train = make_synthetic_faces(6, 4, image_size=32, seed=0)
    val = make_synthetic_faces(6, 4, image_size=32, seed=0, identity_offset=1000)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((6, 16))
    embeddings = centers[np.asarray(train["label"])] + 0.1 * rng.standard_normal((len(train), 16))
    return SearchData(train, val, embeddings, image_size=32, max_pairs=200)


def _space(**kwargs):
    space = SearchSpace(image_size=32, target_flops=1e6, **kwargs)
    for d in (Decision("clean_merge", (None, 0.9), "cleaning"), Decision("vit_depth", (1, 2), "architecture"),
              Decision("vit_width", (16, 64), "architecture"), Decision("vit_heads", (2,), "architecture"),
              Decision("vit_patch", (8,), "architecture"), Decision("vit_mlp_ratio", (2,), "architecture"),
              Decision("family", ("vit",), "architecture"), Decision("embedding_size", (16,), "architecture"),
              Decision("margin_family", ("rescaled", "arcface"), "loss"), Decision("s_pos", (16.0,), "loss"),
              Decision("s_neg", (16.0, 24.0), "loss"), Decision("m1", (1.0,), "loss"),
              Decision("m2", (0.2,), "loss"), Decision("m3", (0.0,), "loss"), Decision("partial_fc_rate", (1.0,), "loss")):
        space.add(d)
    return space


def test_over_budget_trials_are_pruned_before_training(data, tmp_path, monkeypatch):
    trained = []
    real = study_module.train_proxy
    monkeypatch.setattr(study_module, "train_proxy", lambda space, params, *a: trained.append(params) or real(space, params, *a))
    space = _space(max_flops=2.0e6)  # width 64 at depth 2 is over, width 16 is under
    study = run_search("random", space, data, n_trials=6, output=tmp_path, settings=ProxySettings(steps=2, batch_size=8))
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and done and len(pruned) + len(done) == 6
    assert all("max_flops" in t.user_attrs["pruned_reason"] and "accuracy" not in t.user_attrs for t in pruned)
    assert len(trained) == len(done) and all(space.measure(p)["flops"] <= 2.0e6 for p in trained)
    for t in done:
        assert 0.0 <= t.user_attrs["accuracy"] <= 1.0 and t.user_attrs["flops"] <= 2.0e6
        assert t.value == pytest.approx(t.user_attrs["accuracy"] - 0.05 * abs(t.user_attrs["flops"] / 1e6 - 1))
    rows = list(csv.DictReader((tmp_path / "trials_random.csv").open()))
    assert len(rows) == 6 and {r["state"] for r in rows} == {"PRUNED", "COMPLETE"}
    assert json.loads(rows[0]["config"])["vit_patch"] == 8


def test_rl_search_export_and_plot(data, tmp_path):
    from hf_facerec.training.build import parse_train_arguments, train

    space = _space()
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = run_search("rl", space, data, n_trials=3, output=tmp_path, storage=storage,
                       settings=ProxySettings(steps=3, batch_size=8))
    assert len(study.trials) == 3 and optuna.load_study(study_name="search-rl", storage=storage).best_value == study.best_value
    again = run_search("rl", space, data, n_trials=3, output=tmp_path, storage=storage)  # budget spent: no new trial
    assert len(again.trials) == 3
    curve = best_so_far(study)
    assert curve[-1] == study.best_value and np.all(np.diff(curve[~np.isnan(curve)]) >= 0)
    plot_search({"rl": curve, "random": curve - 0.01}, tmp_path / "search.png",
                searched_loss={"margin_type": "rescaled", "margin_scale": 48.0,
                               "margin_kwargs": {"s_pos": 40.0, "m1": 1.15, "m2": 0.22, "m3": 0.0}},
                baseline_loss={"margin_type": "arcface", "margin_scale": 64.0, "margin_kwargs": {"margin": 0.5}})
    assert (tmp_path / "search.png").stat().st_size > 10_000

    config = export_best_config(study, space, data, tmp_path / "configs" / "searched.yaml", tmp_path / "best_data",
                                steps=2, batch_size=8, output_dir=str(tmp_path / "full"))
    model_args, data_args, training_args = parse_train_arguments(["--config", str(config), "--use_cpu", "true"])
    best = study.best_trial.user_attrs["config"]
    assert model_args.margin_type == best["margin_family"] and json.loads(model_args.backbone_overrides)["num_hidden_layers"] == best["vit_depth"]
    folder = train(model_args, data_args, training_args)
    assert (folder / "config.json").is_file()


def test_cli_search(data, tmp_path, capsys):
    from hf_facerec.cli import main

    data.train.save_to_disk(str(tmp_path / "train"))
    make_synthetic_faces(6, 4, image_size=32, seed=0, identity_offset=1000).save_to_disk(str(tmp_path / "val"))
    np.save(tmp_path / "emb.npy", data.train_embeddings)
    code = main(["search", "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--embeddings",
                 str(tmp_path / "emb.npy"), "--methods", "rl,one-at-a-time", "--trials", "3", "--steps", "2",
                 "--batch-size", "8", "--output", str(tmp_path / "out"), "--max-flops", "2e7"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["methods"]) == {"rl", "one-at-a-time"}
    for method, entry in summary["methods"].items():
        assert entry["completed"] + entry["pruned"] == 3
        assert (tmp_path / "out" / f"trials_{method}.csv").is_file()
    assert (tmp_path / "out" / "search.png").is_file() and (tmp_path / "out" / "summary.json").is_file()
    assert main(["search", "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--embeddings",
                 str(tmp_path / "emb.npy"), "--methods", "bayes", "--trials", "3", "--output", str(tmp_path / "o2")]) == 2
