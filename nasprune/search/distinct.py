"""A sampler that proposes a point no trial of the study holds yet, when its base sampler would repeat one.

Why (measured in issue 20, item 7): Optuna's TPE picks, for each parameter, the best of ``n_ei_candidates`` (24)
draws by its acquisition l(x)/g(x). A nasprune space is small discrete choices (schedule, 3 widths, SE on/off per
block, 7 ratio steps per layer), so 24 draws cover every value and the pick is the argmax over the whole domain:
a function of the study's history alone, the same for every sampler seed. Replaying a 12-trial history of a
two-worker study, the samplers of worker seeds 0, 1000, 2000 and 3000 all proposed exactly the parameters that
trials 12, 13 and 14 then trained; 8 seeds gave 1 distinct proposal. Per-worker seeds, the band and the
samplers' state are not the cause; Optuna's constant liar (the other worker's RUNNING trial counted as bad) is
too weak to move such an argmax, and it cannot act at all while the other trial's parameters are not written
yet. The same determinism repeats a point in one worker's consecutive trials.

:class:`DistinctSampler` keeps the base sampler's proposal (each parameter drawn by the base exactly as Optuna
would, through ``sample_independent``) and, only when that point repeats a trial the study holds (finished,
running or waiting), re-draws one parameter at a time at random until it is new: the nearest distinct points
first. A point repeats a trial when it has the same parameters, or, given ``network``, trains the same network:
the band scales every sampled ratio vector into the budget band, and ratio vectors one step apart often land
on one child (measured: with distinct parameters, 4 of 11 sampled trials of a two-worker study still trained
the network of one seed design). :func:`nasprune.storage.optimize_until` writes a trial's parameters before
another worker asks, so running trials count.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["MAX_REDRAWS", "DistinctSampler"]

MAX_REDRAWS = 64  # re-drawn parameters before a repeat is accepted (a space nearly exhausted)
HELD = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _params(trial: FrozenTrial) -> Mapping[str, Any]:
    """A trial's parameters; an enqueued (WAITING) trial's are its fixed ones."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def _shape(trials: list[FrozenTrial]) -> tuple[int, int] | None:
    """``(in_channels, num_classes)`` of the study's networks, from a trial's ``child_spec`` (``None`` before one)."""
    for t in trials:
        spec = t.user_attrs.get("child_spec")
        if isinstance(spec, Mapping) and "in_channels" in spec and "num_classes" in spec:
            return int(spec["in_channels"]), int(spec["num_classes"])
    return None


def _holds(taken: list[Mapping[str, Any]], point: Mapping[str, Any]) -> bool:
    """Whether a trial holds ``point``: the point agrees with every parameter the trial has (a conditional
    parameter the trial's branch never asked for is no difference)."""
    return any(params and all(point.get(n) == v for n, v in params.items()) for params in taken)


class DistinctSampler(optuna.samplers.BaseSampler):
    """``base`` (a sampler of independent parameters: TPE in multi-objective studies, random), with every point
    made distinct from the study's trials over the parameters all of them share (module doc). With ``network``, a
    point whose shared parameters do not fix its network (a family space: the family's own parameters come
    later) is left as the base proposed it."""

    def __init__(self, base: optuna.samplers.BaseSampler, seed: int | None = None,
                 network: Callable[[Mapping[str, Any], tuple[int, int]], Hashable | None] | None = None) -> None:
        """``network(params, (in_channels, num_classes))``: what the trial with ``params`` trains, ``None`` when
        they do not say (a parameter missing)."""
        self.base = base
        self.network = network
        self._networks: dict[tuple, Hashable | None] = {}
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._rng = random.Random(seed)
    def infer_relative_search_space(self, study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Every parameter any finished trial has, not only the ones all of them share: a conditional parameter
        (SE and ratios of the blocks only the slow schedule has, a family's own parameters) then belongs to the
        point too, so the point fixes its network whichever branch it takes (with the intersection, 40 of 200
        trials of a one-shot quickstart study repeated a network: every slow-schedule point left it open). A
        parameter the trial does not reach is simply not asked for."""
        if "fixed_params" in trial.system_attrs:  # an enqueued trial: its parameters are given
            return {}
        space: dict[str, BaseDistribution] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            for name, distribution in t.distributions.items():
                space.setdefault(name, distribution)
        return {n: d for n, d in sorted(space.items()) if not d.single()}

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        point = {n: self.base.sample_independent(study, trial, n, d) for n, d in search_space.items()}
        names = list(search_space)
        held = [t for t in study.get_trials(deepcopy=False, states=HELD) if t.number != trial.number]
        taken = [{n: v for n, v in _params(t).items() if n in search_space} for t in held]
        shape = _shape(held) if self.network is not None else None
        networks = {self._network(_params(t), shape) for t in held} - {None} if shape else set()
        for _ in range(MAX_REDRAWS):
            if not self._repeats(point, _holds(taken, point), networks, shape):
                break
            name = self._rng.choice(names)
            point[name] = self._random.sample_independent(study, trial, name, search_space[name])
        return point

    def _repeats(self, point: Mapping[str, Any], same_params: bool, networks: set, shape) -> bool:
        """By parameters while no network can be told (no ``network``, or no trial gave the shape yet); else by
        network or parameters, and never for a point whose parameters leave the network open."""
        if shape is None:
            return same_params
        network = self._network(point, shape)
        return network is not None and (same_params or network in networks)

    def _network(self, params: Mapping[str, Any], shape: tuple[int, int]) -> Hashable | None:
        key = (shape, tuple(sorted(params.items())))
        if key not in self._networks:
            self._networks[key] = self.network(params, shape)
        return self._networks[key]

    def sample_independent(self, study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial: FrozenTrial, state: TrialState, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._random.reseed_rng()
        self._rng.seed()
