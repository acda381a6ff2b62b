"""One trial: counted before training, over-budget trials train nothing, the counted child is the trained one."""

from __future__ import annotations

import optuna
import pytest
import torch

import nasprune
import nasprune.train
from nasprune.checkpoint import load
from nasprune.cost import count_model
from nasprune.search.early_stop import should_stop
from nasprune.search.objective import Objective, strip_se
from nasprune.search.recipe import PrunerConfig, parse_recipe
from nasprune.search.space import FixedParams, load_space, resolve

RECIPE = {"budget_mflops": 8, "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
          "space": "fd_mobilenet", "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
          "parent": {"epochs": 1, "batch_size": 60, "lr": 0.05, "sparsity_lambda": 1e-4},
          "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2},
          "budget_floor": 0}  # the trial as sampled (the band has its own tests: test_search_band, _seeds)


pytestmark = pytest.mark.usefixtures("torch_single_thread")  # far faster than 2 threads on a busy 2-core VM


@pytest.fixture
def fit_calls(monkeypatch):
    calls = []
    real = nasprune.train.fit

    def counting_fit(model, data, config, **kw):
        calls.append(config.epochs)
        return real(model, data, config, **kw)

    monkeypatch.setattr(nasprune.train, "fit", counting_fit)
    return calls


def _study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))


def _params(width, ratio, schedule="fast", **extra):
    return {"schedule": schedule, "width": width, "criterion": "gamma_sparsity",
            **{f"ratio_{i}": ratio for i in range(13)}, **{f"se_{i}": False for i in range(13)}, **extra}


def test_over_budget_trials_train_nothing(tmp_path, fit_calls):
    study = _study()
    for ratio in (0.0, 0.1, 0.2):
        study.enqueue_trial(_params(0.5, ratio, "slow"))
    study.optimize(Objective(parse_recipe(RECIPE, "r.yaml"), tmp_path), n_trials=3)
    assert fit_calls == []
    for t in study.trials:
        assert t.state.name == "COMPLETE" and t.user_attrs["feasible"] is False
        assert t.constraints["budget"] == pytest.approx(t.user_attrs["mflops"] - 8) and t.constraints["budget"] > 0
        assert t.values == [0.0, t.user_attrs["mflops"]]
        assert "val_acc" not in t.user_attrs and "artifact_id" not in t.user_attrs
    assert not (tmp_path / "parents").exists()


@pytest.mark.parametrize("mode", ["per_trial", "shared"])
def test_counted_child_is_the_trained_child(tmp_path, fit_calls, mode):
    recipe = parse_recipe({**RECIPE, "budget_mflops": 40, "parent": {**RECIPE["parent"], "mode": mode}}, "r.yaml")
    study = _study()
    study.enqueue_trial(_params(0.5, 0.3, se_2=True, ratio_4=0.5, criterion="l1"))
    study.enqueue_trial(_params(0.5, 0.2, se_2=True))
    study.optimize(Objective(recipe, tmp_path), n_trials=2)
    # parent trained once (shared by both trials in either mode: same width and SE), one fine-tune each
    assert fit_calls == [1, 1, 1] and len(list((tmp_path / "parents").glob("*.pt"))) == 1
    for t in study.trials:
        a = t.user_attrs
        assert t.state.name == "COMPLETE" and a["feasible"] and 0 <= a["val_acc"] <= 1 and a["latency_ms"] > 0
        assert a["latency_ort_ms"] > 0 and 0 < a["latency_ort_seconds"] < t.user_attrs["seconds"]
        assert "latency_ort_error" not in a
        assert a["proxy"] == f"{mode}+ft1" and "recalibrate_batches" not in a  # fine-tuned, not recalibrated
        path = tmp_path / "child.pt"
        optuna.artifacts.download_artifact(artifact_store=optuna.artifacts.FileSystemArtifactStore(str(tmp_path)),
                                           artifact_id=a["artifact_id"], file_path=str(path))
        child = load(path)
        path.unlink()
        assert child.spec.to_dict() == a["child_spec"] and child.spec.resolution == 224
        assert count_model(child, child.spec, layers=False).macs == a["macs"] == round(a["mflops"] * 1e6)
        assert sum(p.numel() for p in child.parameters()) == a["params"]
        assert a["se_blocks"] == [2] and a["se_count"] == 1 and a["parent_mode"] == mode
        assert a["downsample_layers"] == [0, 1, 3, 5] and len(a["feature_sizes"]) == 12
        assert a["layers"][4]["after"] < a["layers"][4]["before"]
    assert [t.user_attrs["parent_cached"] for t in study.trials] == [False, True]


@pytest.mark.parametrize(("third", "expected"), [(None, (0.5, 10.0)), ("latency_ms", (0.5, 10.0, 2.0)),
                                               ("latency_ort_ms", (0.5, 10.0, 0.7)), ("params", (0.5, 10.0, 1234.0))])
def test_values_return_the_recipes_third_objective(tmp_path, third, expected):
    objectives = ["val_acc", "mflops"] + ([third] if third else [])
    objective = Objective(parse_recipe({**RECIPE, "objectives": objectives}, "r.yaml"), tmp_path)
    assert objective._values(0.5, 10.0, 1234, 2.0, 0.7) == expected


def test_over_budget_trials_have_infinite_onnxruntime_latency(tmp_path, fit_calls):
    recipe = parse_recipe({**RECIPE, "objectives": ["val_acc", "mflops", "latency_ort_ms"]}, "r.yaml")
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.enqueue_trial(_params(0.5, 0.0, "slow"))
    study.optimize(Objective(recipe, tmp_path), n_trials=1)
    t = study.trials[0]
    assert fit_calls == [] and t.values == [0.0, t.user_attrs["mflops"], float("inf")]
    assert "latency_ort_ms" not in t.user_attrs


@pytest.mark.parametrize("as_objective", [False, True])
def test_a_failed_onnx_export_is_recorded_unless_it_is_the_objective(tmp_path, monkeypatch, as_objective):
    import math

    import nasprune.cost
    from nasprune.errors import NaspruneError

    def refuse(*args, **kwargs):
        raise NaspruneError("ONNX export (legacy) of 'x' failed: RuntimeError: no")

    monkeypatch.setattr(nasprune.cost, "measure_latency_ort", refuse)
    objectives = ["val_acc", "mflops"] + (["latency_ort_ms"] if as_objective else [])
    objective = Objective(parse_recipe({**RECIPE, "objectives": objectives}, "r.yaml"), tmp_path)
    trial = _study().ask()
    child = nasprune.build(nasprune.fd_mobilenet(0.25, resolution=32, in_channels=1, num_classes=4))
    if as_objective:
        with pytest.raises(NaspruneError, match="ONNX export"):
            objective._latency_ort(trial, child)
        return
    assert math.isnan(objective._latency_ort(trial, child))
    assert trial.user_attrs == {"latency_ort_error": "ONNX export (legacy) of 'x' failed: RuntimeError: no"}


def test_strip_se_keeps_every_other_weight():
    space = load_space("fd_mobilenet")
    spec = resolve(space, space.sample(FixedParams({"schedule": "fast", "width": 0.25}, se=True)),
                   mode="per_trial", resolution=32).parent
    model = nasprune.build(spec)
    stripped = strip_se(model, [0, 5])
    assert stripped.spec.se_count == spec.se_count - 2
    kept = stripped.state_dict()
    for k, v in model.state_dict().items():
        if k.startswith(("blocks.0.se.", "blocks.5.se.")):
            assert k not in kept
        else:
            assert torch.equal(kept[k], v)


def test_median_rule_stops_below_the_median_after_warmup():
    cfg = PrunerConfig(name="median", warmup_trials=3, min_epochs=1)
    peers = [[0.5, 0.6], [0.7, 0.8], [0.6, 0.9]]
    assert should_stop(cfg, 1, 0.55, peers) and not should_stop(cfg, 1, 0.65, peers)
    assert not should_stop(cfg, 1, 0.1, peers[:2])  # fewer than warmup_trials peers
    assert not should_stop(PrunerConfig(name="none"), 1, 0.0, peers)


def test_successive_halving_keeps_the_top_third_at_rungs():
    cfg = PrunerConfig(name="successive_halving", warmup_trials=2, min_epochs=1, reduction=3)
    peers = [[0.9] * 9, [0.8] * 9, [0.7] * 9, [0.6] * 9, [0.5] * 9]
    assert not should_stop(cfg, 1, 0.85, peers) and should_stop(cfg, 1, 0.75, peers)  # 6 values: top 2 survive
    assert not should_stop(cfg, 2, 0.1, peers)  # 2 is not a rung (1, 3, 9, ...)
    assert should_stop(cfg, 3, 0.75, peers) and should_stop(cfg, 9, 0.1, peers)


def test_a_stop_rule_prunes_the_trial_mid_finetune(tmp_path, fit_calls, monkeypatch):
    import nasprune.search.early_stop

    recipe = parse_recipe({**RECIPE, "budget_mflops": 40, "finetune": {**RECIPE["finetune"], "epochs": 2},
                           "pruner": {"name": "median", "warmup_trials": 1}}, "r.yaml")
    study = _study()
    objective = Objective(recipe, tmp_path)
    study.enqueue_trial(_params(0.25, 0.2))
    study.optimize(objective, n_trials=1)  # no finished peer yet: runs both epochs
    assert study.trials[0].state.name == "COMPLETE" and len(study.trials[0].user_attrs["val_acc_history"]) == 2
    seen = []

    def stop(cfg, epoch, acc, histories):
        seen.append((cfg.name, epoch, [list(h) for h in histories]))
        return True

    monkeypatch.setattr(nasprune.search.early_stop, "should_stop", stop)
    study.enqueue_trial(_params(0.25, 0.3))
    study.optimize(objective, n_trials=1)
    t = study.trials[1]
    assert t.state.name == "PRUNED" and len(t.user_attrs["val_acc_history"]) == 1
    assert "artifact_id" not in t.user_attrs and t.user_attrs["val_acc"] == t.user_attrs["val_acc_history"][0]
    assert seen == [("median", 1, [study.trials[0].user_attrs["val_acc_history"]])]


def test_parent_training_is_reproducible(tmp_path):
    from nasprune.search.parents import ParentCache

    recipe = parse_recipe(RECIPE, "r.yaml")
    objective = Objective(recipe, tmp_path / "a")
    spec = nasprune.fd_mobilenet(0.25, in_channels=1, num_classes=4)
    torch.manual_seed(123)  # whatever ran before must not matter
    first, _ = ParentCache(tmp_path / "a", "k", seed=0).get(spec, objective._train_parent)
    torch.rand(7)
    second, _ = ParentCache(tmp_path / "b", "k", seed=0).get(spec, objective._train_parent)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
