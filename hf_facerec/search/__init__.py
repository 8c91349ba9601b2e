"""Comprehensive search (Zhang et al., ECCV 2022): data cleaning, architecture and loss searched jointly by a
REINFORCE controller that is an Optuna sampler.

Modules: :mod:`.cleaning` (+ :mod:`.report`), :mod:`.space` (decisions, constraints, reward), :mod:`.controller`
(the REINFORCE sampler and the one-aspect-at-a-time baseline), :mod:`.study` (trials that train a proxy).
Nothing here is imported by the core (models, data, evaluation).
"""
