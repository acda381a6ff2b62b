"""Study recipes: defaults, overrides, the parent-cache key, and one-line errors."""

from __future__ import annotations

import pytest
import yaml

from nasprune.errors import NaspruneError
from nasprune.search.recipe import load_recipe, parse_recipe


def test_quickstart_recipe_is_the_default():
    r = load_recipe(None)
    assert (r.study, r.budget_mflops, r.data["name"], r.parent_mode) == ("quickstart", 40, "fashion-mnist", "shared")
    assert r.space.free is None and r.objectives == ("val_acc", "mflops")
    assert r.train_config("parent").sparsity_lambda > 0 and r.train_config("finetune").sparsity_lambda == 0


def test_overrides_replace_file_values():
    r = load_recipe("quickstart", budget_mflops=12.5, trials=3, sampler="nsga2", data_name="synthetic",
                    space="mobilenet_v3", study="other", seed=None)
    assert (r.budget_mflops, r.trials, r.sampler, r.data["name"], r.space.name, r.study, r.seed) == \
        (12.5, 3, "nsga2", "synthetic", "mobilenet_v3", "other", 0)


def test_parent_key_depends_on_data_and_parent_training_only():
    base = {"budget_mflops": 10, "data": {"name": "synthetic"}, "parent": {"epochs": 2}}
    key = parse_recipe(base, "r.yaml").parent_key()
    assert parse_recipe({**base, "budget_mflops": 20, "finetune": {"epochs": 3}}, "r.yaml").parent_key() == key
    assert parse_recipe({**base, "parent": {"epochs": 3}}, "r.yaml").parent_key() != key
    assert parse_recipe({**base, "data": {"name": "synthetic", "subset": 10}}, "r.yaml").parent_key() != key


@pytest.mark.parametrize("raw, expected", [
    ({"budget_mflops": 0}, "budget_mflops=0 is invalid: expected a number of MFLOPs > 0"),
    ({"budget_mflops": -3}, "budget_mflops=-3 is invalid"),
    ({}, "budget_mflops is missing: give it in the recipe or with --budget MFLOPS"),
    ({"budget_mflops": 5, "sampler": "cmaes"}, "sampler='cmaes' is invalid: expected one of tpe, nsga2, random"),
    ({"budget_mflops": 5, "epochs": 3}, "unknown key 'epochs' (value 3): expected one of study, space"),
    ({"budget_mflops": 5, "parent": {"epochs": 0}}, "parent.epochs=0 is invalid: expected an integer >= 1"),
    ({"budget_mflops": 5, "parent": {"mode": "global"}}, "parent.mode='global' is invalid"),
    ({"budget_mflops": 5, "finetune": {"lr": -1}}, "finetune.lr=-1 is invalid"),
    ({"budget_mflops": 5, "data": {"name": "x", "colour": 1}}, "unknown key 'data.colour' (value 1)"),
    ({"budget_mflops": 5, "objectives": ["mflops", "val_acc"]}, "objectives=['mflops', 'val_acc'] is invalid"),
    ({"budget_mflops": 5, "pruner": {"name": "hyperband"}}, "pruner.name='hyperband' is invalid: expected one of "
                                                            "none, median, successive_halving"),
])
def test_bad_recipe_is_one_line_naming_the_file(tmp_path, raw, expected):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(NaspruneError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value) and "\n" not in str(err.value)


def test_cli_budget_override_is_checked_too():
    with pytest.raises(NaspruneError, match="budget_mflops=-1.0 is invalid"):
        load_recipe("quickstart", budget_mflops=-1.0)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_machines_draw_different_points_with_the_same_training_seed(sampler):
    import optuna

    from nasprune.search.runner import make_sampler

    recipe = load_recipe("quickstart", sampler=sampler, data_name="synthetic")

    def first_points(worker: int) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(recipe, worker), directions=["maximize", "minimize"])
        return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)]

    assert first_points(0) == first_points(0)              # one machine: reproducible
    assert first_points(0) != first_points(1000)           # --machine 1: its own stream
