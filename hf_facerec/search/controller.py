"""The search controller: a REINFORCE policy over categorical decisions, as an Optuna sampler; and the
one-aspect-at-a-time baseline, as another.

Why Optuna (not Ray Tune): its RDB storage (SQLite on one machine, PostgreSQL/MySQL on a cluster) is the whole
coordination layer, so parallel workers are the same script pointed at one storage URL, a killed search resumes by
loading the study, and ``Trainer.hyperparameter_search(backend="optuna", sampler=ReinforceSampler(...))`` takes
the sampler unchanged; Ray Tune would add a cluster runtime this package does not otherwise need.

The policy is one independent softmax per decision (logits start at 0: uniform). Each finished trial, in trial
order, is one REINFORCE step with a moving-average baseline and an entropy bonus::

    advantage = clip((reward - baseline) / spread, -3, 3)      # spread: moving RMS of reward - baseline
    baseline <- decay * baseline + (1 - decay) * reward
    logits[d] += lr * (advantage * (onehot(choice_d) - p_d) + entropy_weight * dH/dlogits[d])

Dividing by the spread makes the step size independent of the reward's scale (accuracies differ by 0.01).

The policy is never saved: it is rebuilt from the storage's finished trials, and trial ``n`` is drawn with a
generator seeded by ``(seed, n - interrupted trials before n)``, so a killed search resumed from its storage
(after :func:`mark_interrupted`) samples and ends exactly as an uninterrupted one with the same seed.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import TrialState

INTERRUPTED = "interrupted"  # user attr of a trial whose worker died mid-run (see mark_interrupted)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def mark_interrupted(study: optuna.Study) -> list[int]:
    """Mark the study's RUNNING trials (a killed worker's) FAIL with user attr ``interrupted``; call it once when
    resuming a search that no other worker is running. Returns their numbers."""
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        numbers.append(trial.number)
    return numbers


def _generator(seed: int, index: int, name: str) -> np.random.Generator:
    """A generator that depends only on (seed, draw index, decision name), not on process history."""
    digest = hashlib.sha256(f"{seed}:{index}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _draw_index(study: optuna.Study, trial) -> int:
    """The trial's number less the interrupted trials before it: a resumed trial redraws what the killed one drew."""
    lost = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if t.number < trial.number and t.user_attrs.get(INTERRUPTED))
    return trial.number - lost


class ReinforceSampler(BaseSampler):
    """REINFORCE over every categorical parameter the objective suggests (other distributions are sampled by
    Optuna's RandomSampler).

    Args:
        seed: draws and hence the whole search are a function of it and the finished trials.
        learning_rate, baseline_decay, entropy_weight: the update above.
        invalid_reward: reward given to PRUNED (constraint-rejected) and genuinely FAILED trials so the policy
            learns to avoid them; None skips them. Interrupted trials never count.

    Parallelism is by processes sharing a storage (each holds its own copy of the policy); do not share one
    sampler between ``optimize(n_jobs > 1)`` threads.
    """

    def __init__(self, seed: int = 0, learning_rate: float = 0.1, baseline_decay: float = 0.9,
                 entropy_weight: float = 0.01, invalid_reward: float | None = 0.0):
        if not learning_rate > 0 or not 0.0 <= baseline_decay < 1.0 or entropy_weight < 0:
            raise ValueError("need learning_rate > 0, 0 <= baseline_decay < 1, entropy_weight >= 0")
        self.seed, self.learning_rate, self.baseline_decay = int(seed), float(learning_rate), float(baseline_decay)
        self.entropy_weight, self.invalid_reward = float(entropy_weight), invalid_reward
        self._fallback = RandomSampler(seed=seed)
        self._reset()

    def _reset(self) -> None:
        self.logits: dict[str, np.ndarray] = {}
        self.baseline: float | None = None
        self.spread: float | None = None
        self.processed: list[int] = []

    # ---------------------------------------------------------------- policy
    def probabilities(self, name: str) -> np.ndarray:
        z = self.logits[name]
        p = np.exp(z - z.max())
        return p / p.sum()

    def state(self) -> dict:
        """The policy: baseline, logits per decision, trial numbers it learned from (for tests and logs)."""
        return {"baseline": self.baseline, "spread": self.spread, "processed": list(self.processed),
                "logits": {name: z.tolist() for name, z in sorted(self.logits.items())}}

    def _reward(self, trial, sign: float) -> float | None:
        if trial.state == TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
            return sign * float(trial.value)
        if trial.user_attrs.get(INTERRUPTED) or self.invalid_reward is None:
            return None
        return float(self.invalid_reward)

    def _update(self, trial, sign: float) -> None:
        self.processed.append(trial.number)
        reward = self._reward(trial, sign)
        if reward is None:
            return
        baseline = reward if self.baseline is None else self.baseline
        delta = reward - baseline
        decay = self.baseline_decay
        self.spread = abs(delta) if self.spread is None else math.sqrt(decay * self.spread ** 2 + (1 - decay) * delta ** 2)
        advantage = float(np.clip(delta / self.spread, -3.0, 3.0)) if self.spread > 0 else 0.0
        self.baseline = decay * baseline + (1.0 - decay) * reward
        for name, value in trial.params.items():
            dist = trial.distributions[name]
            if not isinstance(dist, CategoricalDistribution):
                continue
            z = self.logits.setdefault(name, np.zeros(len(dist.choices)))
            if len(z) != len(dist.choices):
                raise ValueError(f"decision {name!r} changed its number of options during the study")
            p = self.probabilities(name)
            onehot = np.zeros_like(p)
            onehot[int(dist.to_internal_repr(value))] = 1.0
            log_p = np.log(np.clip(p, 1e-300, None))
            entropy_grad = -p * (log_p + float(-(p * log_p).sum()))
            z += self.learning_rate * (advantage * (onehot - p) + self.entropy_weight * entropy_grad)

    def sync(self, study: optuna.Study) -> None:
        """Bring the policy up to date with the storage's finished trials, in trial order (rebuilt from scratch
        when a trial finished out of order, as with parallel workers)."""
        finished = sorted(study.get_trials(deepcopy=False, states=_FINISHED), key=lambda t: t.number)
        done = set(self.processed)
        new = [t for t in finished if t.number not in done]
        if new and self.processed and new[0].number < self.processed[-1]:
            self._reset()
            new = finished
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        for trial in new:
            self._update(trial, sign)

    # ---------------------------------------------------------------- the BaseSampler interface
    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study, trial) -> None:
        self.sync(study)
        self._draw = (trial.number, _draw_index(study, trial))  # one storage query per trial, not per decision

    def sample_independent(self, study, trial, param_name, param_distribution):
        if not isinstance(param_distribution, CategoricalDistribution):
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        n = len(param_distribution.choices)
        z = self.logits.setdefault(param_name, np.zeros(n))
        if len(z) != n:
            raise ValueError(f"decision {param_name!r} changed its number of options during the study")
        cached = getattr(self, "_draw", None)
        index = cached[1] if cached and cached[0] == trial.number else _draw_index(study, trial)
        choice = _generator(self.seed, index, param_name).choice(n, p=self.probabilities(param_name))
        return param_distribution.to_external_repr(int(choice))


class OneAtATimeSampler(BaseSampler):
    """The baseline that searches one aspect at a time: the first third of ``n_trials`` samples the cleaning
    decisions at random (the rest at their defaults), the next third architecture (cleaning fixed at the best
    trial so far), the last third loss. Groups and defaults come from a :class:`~.space.SearchSpace`."""

    def __init__(self, space, n_trials: int, seed: int = 0, order=("cleaning", "architecture", "loss")):
        if n_trials < len(order):
            raise ValueError(f"n_trials must be >= {len(order)} (one per aspect), got {n_trials}")
        self.space, self.n_trials, self.seed, self.order = space, int(n_trials), int(seed), tuple(order)
        self._fallback = RandomSampler(seed=seed)

    def phase(self, index: int) -> int:
        return min(index * len(self.order) // self.n_trials, len(self.order) - 1)

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        decision = self.space.decisions.get(param_name)
        if decision is None or not isinstance(param_distribution, CategoricalDistribution):
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        index = _draw_index(study, trial)
        phase = self.phase(index)
        group_phase = self.order.index(decision.group) if decision.group in self.order else len(self.order)
        if group_phase == phase:
            choices = param_distribution.choices
            return choices[int(_generator(self.seed, index, param_name).integers(len(choices)))]
        if group_phase > phase:
            return decision.default
        # an earlier aspect: fixed at the best completed trial of the phases before this one
        earlier = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.number < trial.number and self.phase(t.number) < phase and param_name in t.params]
        if not earlier:
            return decision.default
        best = (max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min)(earlier, key=lambda t: t.value)
        return best.params[param_name]
