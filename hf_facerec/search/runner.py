"""One comparison run, for `hf-facerec search` and `scripts/run_search_study.py`: the same trial budget for each
method (joint RL, random, one-aspect-at-a-time), the trials' CSVs, the results plot, each method's best
configuration exported as a training YAML, and ``summary.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .._files import atomic_write, check_output_dir
from .plots import plot_search
from .space import SearchSpace
from .study import METHODS, ProxySettings, SearchData, best_so_far, export_best_config, run_search

BASELINE_LOSS = {"margin_type": "arcface", "margin_scale": 64.0, "margin_kwargs": {"margin": 0.5}}


def compare_methods(space: SearchSpace, data: SearchData, methods, n_trials: int, output: str | Path,
                    storage: str | None = None, settings: ProxySettings | None = None, seed: int = 0,
                    resume: bool = False, export_steps: int = 2000) -> dict:
    """Run each method's search (study ``search-{method}`` in ``storage``, default ``OUTPUT/search.db``) and
    report. Returns the summary: per method its best reward, accuracy, FLOPs, configuration, wall time, YAML."""
    output = check_output_dir(output, "search output folder")
    storage = storage or f"sqlite:///{(output / 'search.db').resolve()}"
    summary, curves, best_loss = {"trials": n_trials, "storage": storage, "methods": {}}, {}, None
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r}; choose from {', '.join(METHODS)}")
        start = time.perf_counter()
        study = run_search(method, space, data, n_trials, output, storage, f"search-{method}", settings, seed, resume)
        curves[method] = best_so_far(study)
        completed = [t for t in study.trials if t.value is not None]
        # wall_s: this call (0 when the storage already held the budget); trials_wall_s: every trial, from storage
        entry = {"wall_s": round(time.perf_counter() - start, 1),
                 "trials_wall_s": round(sum(t.user_attrs.get("wall_s", 0.0) for t in study.trials), 1),
                 "completed": len(completed),
                 "pruned": sum(1 for t in study.trials if t.state.name == "PRUNED")}
        if completed:
            best = study.best_trial
            recipe = settings or ProxySettings(seed=seed)  # the proxy's recipe, trained export_steps steps
            yaml_path = export_best_config(study, space, data, output / f"best_{method}.yaml",
                                           output / f"best_data_{method}", steps=export_steps,
                                           batch_size=recipe.batch_size, learning_rate=recipe.learning_rate,
                                           augmentation=recipe.augmentation)
            entry.update(best_reward=best.value, best_trial=best.number, config=best.user_attrs["config"],
                         accuracy=best.user_attrs.get("accuracy"), flops=best.user_attrs.get("flops"),
                         params=best.user_attrs.get("params"), yaml=str(yaml_path))
            if method == "rl" or best_loss is None:
                args = space.model_arguments(best.user_attrs["config"])
                best_loss = {k: args[k] for k in ("margin_type", "margin_scale", "margin_kwargs")}
        summary["methods"][method] = entry
    plot_search(curves, output / "search.png", searched_loss=best_loss, baseline_loss=BASELINE_LOSS)
    with atomic_write(output / "summary.json") as handle:
        json.dump(summary, handle, indent=2, default=str)
    return summary
