"""One-shot parents: ordering is exact, a masked parent is its cut child, recalibration touches BN statistics only,
parents are cached and resume after a crash, and a study never pays twice for one network."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

import nasprune.search.oneshot as oneshot
from nasprune import build
from nasprune.data import DataConfig, load_data
from nasprune.errors import NaspruneError
from nasprune.search.objective import Objective, cut_child
from nasprune.search.oneshot import (
    OneShotConfig,
    child_masks,
    child_pool,
    masked,
    order_channels,
    train_oneshot,
)
from nasprune.search.recipe import parse_recipe
from nasprune.search.space import FixedParams, resolve
from nasprune.train import TrainConfig, recalibrate_bn

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ONE_CRITERION = {"prune": {"ratio": {"low": 0.0, "high": 0.6, "step": 0.1}, "criteria": ["l1"]}}
RECIPE = {"budget_mflops": 20, "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
          "space": "fd_mobilenet", "space_overrides": {"free_placement": None, "width": [0.25, 0.5], **ONE_CRITERION},
          "parent": {"mode": "oneshot", "epochs": 1, "batch_size": 60, "lr": 0.05, "sparsity_lambda": 1e-4},
          "oneshot": {"epochs": 1, "children": 1, "batch_size": 60, "pool": 4},
          "recalibrate": {"batches": 2, "batch_size": 30},
          "finetune": {"epochs": 0}, "latency": {"runs": 2}, "seed_designs": False}


def _recipe(space="fd_mobilenet", **changes):
    overrides = {**RECIPE["space_overrides"]} if space == "fd_mobilenet" else {**ONE_CRITERION, "width": [0.25, 0.5]}
    return parse_recipe({**RECIPE, "space": space, "space_overrides": overrides, **changes}, "r.yaml")


def _parent(recipe, family, schedule, shape=(3, 10)):
    fixed = {"family": family, recipe.space.param_prefix(family) + "schedule": schedule}
    return resolve(recipe.space, recipe.space.sample(FixedParams(fixed)), mode="shared", resolution=224,
                   in_channels=shape[0], num_classes=shape[1]).parent


def _randomised(spec, seed=0):
    """A network of ``spec`` with spread BN statistics and scales (an untrained one would hide mistakes)."""
    torch.manual_seed(seed)
    model = build(spec)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.1, 1)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


CASES = [("mobilenets", "dws", "fast"), ("mobilenets", "dws", "slow"), ("mobilenets", "ir", "fast"),
         ("mobilenets", "ir", "slow")]


@pytest.mark.parametrize("space, family, schedule", CASES)
def test_ordering_channels_changes_no_output_and_puts_the_best_first(space, family, schedule):
    from nasprune.prune import compute_scores

    recipe = _recipe(space)
    model = _randomised(_parent(recipe, family, schedule))
    ordered = order_channels(model, "l1").eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(ordered(x), model(x), atol=1e-5)
    for layer, scores in compute_scores(ordered, "l1").items():
        assert torch.all(scores[:-1] >= scores[1:]), layer  # descending: every prefix is the criterion's choice


@pytest.mark.parametrize("space, family, schedule", CASES)
def test_a_masked_parent_computes_its_cut_child(space, family, schedule):
    """The one-shot training's child (masks on the parent) is the child the search cuts and exports: every
    pool design, residual paths, dropped SE and narrowed SE squeezes included."""
    recipe = _recipe(space)
    spec = _parent(recipe, family, schedule)
    pool = child_pool(recipe, spec, (3, 10), 6, seed=1)
    assert len(pool) >= 6
    assert any(d.drop_se for d in pool) and any(c.squeeze for c in (child_masks(spec, d.drop_se, d.child)
                                                                  for d in pool)) or family == "dws"
    parent = order_channels(_randomised(spec), "l1").eval()
    x = torch.randn(2, 3, 32, 32)
    for design in pool:
        child = cut_child(parent, design, None, se_ratio=recipe.space.member(family).se_ratio).eval()
        assert child.spec.hash == design.child.hash
        with masked(parent, child_masks(spec, design.drop_se, design.child)):
            expected = parent(x)
        assert torch.allclose(child(x), expected, atol=1e-5)
    assert torch.allclose(parent(x), order_channels(_randomised(spec), "l1").eval()(x))  # the hooks are gone


def test_the_pool_is_in_the_band_and_distinct():
    recipe = _recipe("mobilenets")
    spec = _parent(recipe, "ir", "slow")
    pool = child_pool(recipe, spec, (3, 10), 8, seed=0)
    from nasprune.cost import closed_form_macs

    assert len({d.child.hash for d in pool}) == len(pool)
    for d in pool:
        assert d.parent.hash == spec.hash and closed_form_macs(d.child) <= recipe.budget_mflops * 1e6


def test_recalibration_changes_bn_statistics_only():
    data = load_data(DataConfig(name="synthetic", resolution=16, subset=120, val_size=60))
    recipe = _recipe()
    model = _randomised(_parent(recipe, "dws", "fast", shape=(data.in_channels, data.num_classes)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_bn(model, data, batches=2, batch_size=30)
    after = model.state_dict()
    stats = ("running_mean", "running_var", "num_batches_tracked")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(stats) for k in changed)
    assert all(k in changed for k in before if k.endswith(("running_mean", "running_var")))


def _pool_and_model(data):
    recipe = _recipe()
    spec = _parent(recipe, "dws", "fast", shape=(data.in_channels, data.num_classes))
    pool = child_pool(recipe, spec, (data.in_channels, data.num_classes), 4, seed=0)
    torch.manual_seed(0)
    return order_channels(build(spec), "l1"), pool


def test_training_resumes_from_its_last_epoch_to_the_same_weights(tmp_path, monkeypatch):
    data = load_data(DataConfig(name="synthetic", resolution=16, subset=120, val_size=60))
    config = TrainConfig(epochs=1, batch_size=60, lr=0.05, augment=False)
    settings = OneShotConfig(epochs=2, children=1, batch_size=60, lr=0.05)
    whole, pool = _pool_and_model(data)
    train_oneshot(whole, data, config, settings, pool, resume=tmp_path / "whole.partial.pt")

    real = oneshot._save_state

    def crash_after_first(path, model, optimizer, scheduler, epoch, history):
        real(path, model, optimizer, scheduler, epoch, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(oneshot, "_save_state", crash_after_first)
    broken, _ = _pool_and_model(data)
    state = tmp_path / "broken.partial.pt"
    with pytest.raises(KeyboardInterrupt):
        train_oneshot(broken, data, config, settings, pool, resume=state)
    monkeypatch.setattr(oneshot, "_save_state", real)
    resumed, _ = _pool_and_model(data)  # a new process: fresh weights, the state file on disk
    meta = train_oneshot(resumed, data, config, settings, pool, resume=state)
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def _study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))


def _params(ratio, **extra):
    return {"schedule": "fast", "width": 0.5, "criterion": "l1", "ratio_stem": ratio,
            **{f"ratio_{i}": ratio for i in range(13)},
            **{f"se_{i}": False for i in range(13)}, **extra}


def test_a_oneshot_study_scores_by_recalibration_and_never_pays_twice(tmp_path, monkeypatch):
    calls = []
    real = oneshot.train_oneshot
    monkeypatch.setattr(oneshot, "train_oneshot", lambda *a, **k: calls.append(1) or real(*a, **k))
    study = _study()
    study.enqueue_trial(_params(0.3))
    study.enqueue_trial(_params(0.2, se_3=True))
    study.enqueue_trial(_params(0.3))  # the first network again
    study.optimize(Objective(_recipe(), tmp_path), n_trials=3)
    first, second, again = study.trials
    for t in (first, second):
        a = t.user_attrs
        assert a["parent_mode"] == "oneshot" and a["proxy"] == "oneshot+recal" and a["recalibrate_batches"] == 2
        assert 0 <= a["val_acc"] <= 1 and "duplicate_of" not in a
    assert again.user_attrs["duplicate_of"] == 0 and again.values == first.values
    assert again.user_attrs["artifact_id"] == first.user_attrs["artifact_id"]
    assert "finetune_seconds" not in again.user_attrs  # nothing cut, recalibrated or trained
    assert calls == [1]  # one parent, trained once
    # a second worker (a new Objective) reads the cached one-shot parent without training it
    study.enqueue_trial(_params(0.1))
    study.optimize(Objective(_recipe(), tmp_path), n_trials=1)
    assert calls == [1] and study.trials[-1].user_attrs["parent_cached"] is True


def test_oneshot_needs_one_criterion_per_family():
    with pytest.raises(NaspruneError, match=r"parent.mode 'oneshot' .* lists \['gamma_sparsity', 'gamma', 'l1'\]"):
        parse_recipe({**RECIPE, "space_overrides": {"free_placement": None}}, "r.yaml")


def test_free_placement_parents_draw_children_at_their_own_positions():
    recipe = parse_recipe({**RECIPE, "space_overrides": ONE_CRITERION}, "r.yaml")
    fixed = {"schedule": "custom", "ds_0": 0, "ds_1": 2, "ds_2": 4, "ds_3": 7}
    spec = resolve(recipe.space, recipe.space.sample(FixedParams(fixed)), mode="shared", resolution=224,
                   in_channels=3, num_classes=10).parent
    pool = child_pool(recipe, spec, (3, 10), 3)
    assert len(pool) == 3 and all(d.parent.hash == spec.hash for d in pool)
