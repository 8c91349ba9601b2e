"""The REINFORCE sampler: learns a synthetic reward's best arm, beats random search, resumes from SQLite exactly,
shares one SQLite storage between two worker processes; and the one-aspect-at-a-time baseline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest

from hf_facerec.search.controller import INTERRUPTED, OneAtATimeSampler, ReinforceSampler, mark_interrupted
from hf_facerec.search.space import Decision, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]
# A synthetic reward: 6 decisions x 5 options, additive arm values, the optimum is option 3 everywhere.
VALUES = np.array([[0.0, 0.02, 0.05, 0.10, 0.04]] * 6)
BEST = 3


def _objective(noise_seed: int, noise: float = 0.02):
    rng = np.random.default_rng(noise_seed)

    def objective(trial):
        arms = [trial.suggest_categorical(f"d{i}", [0, 1, 2, 3, 4]) for i in range(6)]
        true = float(VALUES[np.arange(6), arms].sum())
        trial.set_user_attr("true", true)
        return true + noise * float(rng.standard_normal())

    return objective


def _run(sampler, n_trials, noise_seed):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective(noise_seed), n_trials=n_trials)
    return study


def test_policy_moves_to_the_best_arm():
    sampler = ReinforceSampler(seed=0)
    study = _run(sampler, 300, noise_seed=0)
    sampler.sync(study)
    for i in range(6):
        p = sampler.probabilities(f"d{i}")
        assert p.argmax() == BEST and p[BEST] > 0.8, (i, p)
    late = [t.user_attrs["true"] for t in study.trials[-50:]]
    assert np.mean(late) > 0.8 * VALUES.max(axis=1).sum()


def test_beats_random_search_on_average_over_seeds():
    budget, rl, rand = 150, [], []
    for seed in range(5):
        for sampler, out in ((ReinforceSampler(seed=seed), rl), (optuna.samplers.RandomSampler(seed=seed), rand)):
            study = _run(sampler, budget, noise_seed=100 + seed)
            out.append((study.best_trial.user_attrs["true"], np.mean([t.user_attrs["true"] for t in study.trials])))
    rl, rand = np.array(rl), np.array(rand)
    assert rl[:, 0].mean() > rand[:, 0].mean()  # true reward of the configuration each search recommends
    assert rl[:, 1].mean() > rand[:, 1].mean() + 0.05  # and of what it spends its budget on


def _sqlite_script(storage: str, n_trials: int, kill_at: int | None = None) -> str:
    return textwrap.dedent(f"""
        import os, optuna
        import numpy as np
        from hf_facerec.search.controller import ReinforceSampler
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="s", storage={storage!r}, direction="maximize",
                                    sampler=ReinforceSampler(seed=7), load_if_exists=True)
        def objective(trial):
            arms = [trial.suggest_categorical(f"d{{i}}", [0, 1, 2, 3, 4]) for i in range(6)]
            if trial.number == {kill_at!r}:
                os._exit(9)  # the worker dies mid-trial: the trial stays RUNNING in the storage
            trial.set_user_attr("pid", os.getpid())
            return float(np.array({VALUES.tolist()!r})[np.arange(6), arms].sum())
        study.optimize(objective, n_trials={n_trials})
    """)


def _python(script: str, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script], env=env, **kwargs)


def _completed(storage):
    study = optuna.load_study(study_name="s", storage=storage, sampler=ReinforceSampler(seed=7))
    return study, [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_killed_search_resumes_to_the_same_state(tmp_path):
    straight = f"sqlite:///{tmp_path / 'straight.db'}"
    assert _python(_sqlite_script(straight, 12)).wait() == 0
    killed = f"sqlite:///{tmp_path / 'killed.db'}"
    assert _python(_sqlite_script(killed, 12, kill_at=5)).wait() == 9
    study, done = _completed(killed)
    assert len(done) == 5 and mark_interrupted(study) == [5]
    assert _python(_sqlite_script(killed, 7)).wait() == 0  # the 7 trials still owed

    (study_a, a), (study_b, b) = _completed(straight), _completed(killed)
    assert [t.params for t in a] == [t.params for t in b] and [t.value for t in a] == [t.value for t in b]
    assert study_b.trials[5].user_attrs[INTERRUPTED] and len(study_b.trials) == 13
    sampler_a, sampler_b = ReinforceSampler(seed=7), ReinforceSampler(seed=7)
    sampler_a.sync(study_a)
    sampler_b.sync(study_b)
    assert sampler_a.state()["logits"] == sampler_b.state()["logits"]
    assert sampler_a.baseline == sampler_b.baseline


def test_two_workers_share_one_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="s", storage=storage, direction="maximize")  # created once, before both start
    workers = [_python(_sqlite_script(storage, 6)) for _ in range(2)]
    assert [w.wait() for w in workers] == [0, 0]
    _, done = _completed(storage)
    assert len(done) == 12 and len({t.number for t in done}) == 12
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers ran trials, each trial ran once
    assert len({tuple(sorted(t.params.items())) for t in done}) > 6  # and they did not draw the same configurations


def test_one_at_a_time_searches_each_aspect_in_turn():
    space = SearchSpace()
    for group in ("cleaning", "architecture", "loss"):
        space.add(Decision(f"{group}_x", (0, 1, 2, 3), group, default=0))
    gain = {"cleaning_x": [0, 0.1, 0.3, 0.2], "architecture_x": [0, 0.2, 0.1, 0.4], "loss_x": [0, 0.3, 0.2, 0.1]}

    def objective(trial):
        params = space.suggest(trial)
        return sum(gain[name][value] for name, value in params.items())

    study = optuna.create_study(direction="maximize", sampler=OneAtATimeSampler(space, n_trials=30, seed=1))
    study.optimize(objective, n_trials=30)
    phases = [study.trials[i * 10:(i + 1) * 10] for i in range(3)]
    assert all(t.params["architecture_x"] == t.params["loss_x"] == 0 for t in phases[0])
    assert len({t.params["cleaning_x"] for t in phases[0]}) > 1
    assert all(t.params["cleaning_x"] == 2 and t.params["loss_x"] == 0 for t in phases[1])
    assert all(t.params["cleaning_x"] == 2 and t.params["architecture_x"] == 3 for t in phases[2])
    last = study.trials[-1].params
    assert last["cleaning_x"] == 2 and last["architecture_x"] == 3  # the earlier aspects fixed at their best
    assert study.best_value == pytest.approx(0.3 + 0.4 + 0.3)


def test_trainer_hyperparameter_search_takes_the_sampler(tmp_path):
    """transformers' Trainer.hyperparameter_search(backend="optuna") hands sampler= to optuna.create_study."""
    from transformers import Trainer, TrainingArguments, ViTConfig

    from hf_facerec import FaceRecConfig, FaceRecForMarginClassification, FaceRecImageProcessor
    from hf_facerec.data.augment import make_train_transform
    from hf_facerec.data.synthetic import make_synthetic_faces

    dataset = make_synthetic_faces(4, 4, image_size=32)
    processor = FaceRecImageProcessor(size={"height": 32, "width": 32})
    dataset.set_transform(make_train_transform(processor, None))

    def model_init(trial=None):
        backbone = ViTConfig(image_size=32, patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32)
        m2 = 0.2 if trial is None else trial.params.get("m2", 0.2)  # model_init may run before hp_space
        return FaceRecForMarginClassification(FaceRecConfig(
            backbone_config=backbone, image_size=32, embedding_size=8, num_identities=4, margin_type="rescaled",
            margin_scale=16.0, margin_kwargs={"m2": m2}))

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, report_to="none",
                             use_cpu=True, save_strategy="no", disable_tqdm=True, remove_unused_columns=False)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=dataset, eval_dataset=dataset)
    sampler = ReinforceSampler(seed=0)
    best = trainer.hyperparameter_search(
        backend="optuna", n_trials=3, direction="minimize", sampler=sampler,
        hp_space=lambda t: {"m2": t.suggest_categorical("m2", [0.1, 0.3])},
        compute_objective=lambda metrics: metrics["eval_loss"])
    assert best.hyperparameters["m2"] in (0.1, 0.3)
    assert sampler.processed == [0, 1]  # the policy learned from the trials finished before the last one
