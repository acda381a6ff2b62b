"""Workers (and consecutive trials) do not repeat a point (issue 20, item 7): :class:`DistinctSampler` keeps the
base sampler's proposal unless a trial of the study holds the same parameters or the same network."""

from __future__ import annotations

import warnings

import optuna
import pytest

from nasprune.search.distinct import DistinctSampler
from nasprune.search.recipe import parse_recipe
from nasprune.search.runner import make_sampler, network_of

CHOICES = {"a": [0, 1, 2], "b": [0, 1], "c": [0, 1]}  # 12 points


def _sample(trial) -> dict:
    return {name: trial.suggest_categorical(name, choices) for name, choices in CHOICES.items()}


def _value(params) -> tuple[float, float]:
    return float(params["a"] + params["b"]), float(params["c"] + params["a"])  # deterministic: TPE exploits it


def _points(sampler_for, n: int, workers: int = 1, shape: bool = False) -> list[tuple]:
    """``n`` trials; ``workers`` samplers take turns on one storage, each suggesting at once (as optimize_until
    does under its admission lock), told in order of asking."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.InMemoryStorage()
    studies = [optuna.create_study(study_name="d", storage=storage, directions=["maximize", "minimize"],
                                   sampler=sampler_for(w), load_if_exists=True) for w in range(workers)]
    points = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(0, n, workers):
            running = []
            for study in studies[:min(workers, n - i)]:
                trial = study.ask()
                if shape:  # the networks' shape, as the search's trials record it in child_spec
                    trial.set_user_attr("child_spec", {"in_channels": 1, "num_classes": 4})
                running.append((study, trial, _sample(trial)))
            for study, trial, params in running:
                study.tell(trial, _value(params))
                points.append(tuple(params.values()))
    return points


def _tpe(seed: int):
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)


@pytest.mark.parametrize("workers", [1, 2])
def test_plain_tpe_repeats_and_the_distinct_sampler_does_not(workers):
    plain = _points(lambda w: _tpe(1000 * w), 10, workers)
    assert len(set(plain)) < len(plain)  # the cause: TPE's argmax over a fully covered discrete domain
    distinct = _points(lambda w: DistinctSampler(_tpe(1000 * w), 1000 * w), 10, workers)
    assert len(set(distinct)) == 10


def test_a_point_that_leaves_the_network_open_is_not_redrawn():
    # a family space: the parameters every trial shares (the family) do not fix a network: TPE's point stands
    plain = _points(lambda w: _tpe(0), 10, shape=True)
    open_ = _points(lambda w: DistinctSampler(_tpe(0), 0, network=lambda params, shape: None), 10, shape=True)
    assert open_ == plain and len(set(plain)) < len(plain)


def test_points_distinct_by_network_too():
    # a network that ignores b: (a, 0, c) and (a, 1, c) are one network, so 6 networks among 12 points
    sampler = DistinctSampler(_tpe(0), 0, network=lambda params, shape: (params["a"], params["c"]))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    networks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(6):
            trial = study.ask()
            trial.set_user_attr("child_spec", {"in_channels": 1, "num_classes": 4})  # gives the shape
            params = _sample(trial)
            study.tell(trial, _value(params))
            networks.append((params["a"], params["c"]))
    assert len(set(networks[3:])) == 3 and not set(networks[3:]) & set(networks[:3])
    assert len(set(networks)) >= 5  # the first after the random start may meet a start point only via params


def _recipe(**changes):
    return parse_recipe({"study": "d", "space": "fd_mobilenet", "budget_mflops": 40, "sampler": "tpe",
                         "space_overrides": {"free_placement": None, "width": [0.25, 0.5, 0.75],
                                             "prune": {"criteria": ["l1"]}},
                         "data": {"name": "synthetic", "resolution": 16}, **changes}, "r.yaml")


def _uniform(ratio: float, width: float = 0.75) -> dict:
    return {"schedule": "fast", "width": width, **{f"se_{i}": False for i in range(13)},
            **{f"ratio_{k}": ratio for k in range(12)}, "ratio_stem": ratio}


def test_the_recipe_samplers():
    assert isinstance(make_sampler(_recipe()), DistinctSampler)
    assert isinstance(make_sampler(_recipe(sampler="random")), DistinctSampler)
    assert not isinstance(make_sampler(_recipe(sampler="nsga2")), DistinctSampler)  # its own generations


def test_the_band_maps_uniform_ratio_vectors_to_one_network():
    # the repeats left once parameters are distinct: every uniform vector is scaled by one keep-scale onto the
    # same child (the network of the seed design fd_mobilenet_0.75@band)
    banded, plain = network_of(_recipe()), network_of(_recipe(budget_floor=0.0))
    shape = (1, 4)
    assert banded(_uniform(0.0), shape)[0] == "l1"
    for ratio in (0.1, 0.2, 0.4):
        assert banded(_uniform(ratio), shape) == banded(_uniform(0.0), shape)
        assert plain(_uniform(ratio), shape) != plain(_uniform(0.0), shape)
    assert banded(_uniform(0.0, width=0.5), shape) != banded(_uniform(0.0), shape)
    assert banded({"schedule": "fast"}, shape) is None  # parameters that do not fix the network


def _conditional_network(params, shape):
    try:
        return (1, params["x"], params["y"]) if params["s"] == 1 else (0, params["x"])
    except KeyError:
        return None


@pytest.mark.parametrize("network", [_conditional_network, None], ids=["by network", "by parameters"])
def test_a_conditional_parameter_is_part_of_the_point(network):
    # y exists only where s == 1 (as the SE and ratios of the blocks only the slow schedule has): the point must
    # hold it for its network (or its parameters) to be told apart, else TPE's favourite branch repeats its
    # favourite network
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=DistinctSampler(_tpe(0), 0, network))
    networks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(12):  # 3 networks where s == 0, 9 where s == 1
            trial = study.ask()
            trial.set_user_attr("child_spec", {"in_channels": 1, "num_classes": 4})
            s, x = trial.suggest_categorical("s", [0, 1]), trial.suggest_categorical("x", [0, 1, 2])
            y = trial.suggest_categorical("y", [0, 1, 2]) if s == 1 else None
            study.tell(trial, (float(s + x), float(x)))  # the s == 1 branch is better: TPE exploits it
            networks.append((1, x, y) if s == 1 else (0, x))
    assert len(set(networks)) == 12
