"""Study recipes: defaults, overrides, the parent-cache key, and one-line errors."""

from __future__ import annotations

import pytest
import yaml

from nasprune.errors import NaspruneError
from nasprune.search.recipe import load_recipe, parse_recipe
from nasprune.search.shipped import RECIPES, SPACES


def test_quickstart_recipe_is_the_default():
    r = load_recipe(None)
    assert (r.study, r.budget_mflops, r.data["name"], r.parent_mode) == ("quickstart", 40, "fashion-mnist", "oneshot")
    assert r.finetune_epochs == 0 and r.oneshot.epochs >= 1 and r.space.criteria == ("l1",)  # one-shot: one order
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


# -- typed schema: every wrong type is one line naming file, key, value and the expected type -----------------------
BASE = {"budget_mflops": 5, "data": {"name": "synthetic"}}


@pytest.mark.parametrize("change, key, value, expected", [
    ({"with_baselines": "false"}, "with_baselines", "'false'", "true or false"),
    ({"finetune": {"augment": "no"}}, "finetune.augment", "'no'", "true or false"),
    ({"parent": {"amp": "yes"}}, "parent.amp", "'yes'", "true or false"),
    ({"parent": {"cache": "yes"}}, "parent.cache", "'yes'", "true or false"),
    ({"seed": "abc"}, "seed", "'abc'", "an integer >= 0"),
    ({"trials": 2.5}, "trials", "2.5", "an integer >= 1"),
    ({"trials": True}, "trials", "True", "an integer >= 1"),
    ({"data": "synthetic"}, "data", "'synthetic'", "a mapping with keys among name, data_dir, resolution"),
    ({"data": {"subset": "all"}}, "data.subset", "'all'", "an integer or null"),
    ({"data": {"data_dir": 3}}, "data.data_dir", "3", "a string or null"),
    ({"parent": [1, 2]}, "parent", "[1, 2]", "a mapping with keys among mode, cache, epochs, batch_size"),
    ({"finetune": {"lr": "fast"}}, "finetune.lr", "'fast'", "a number"),
    ({"finetune": {"epochs": -1}}, "finetune.epochs", "-1", "an integer >= 0"),
    ({"space_overrides": "x"}, "space_overrides", "'x'", "a mapping of space keys"),
    ({"space_overrides": {"width": [0.5, 0]}}, "space_overrides.width[1]", "0", "a number in (0, 4]"),
    ({"space": 5}, "space", "5", "the name or path of a space file, or a space mapping"),
    ({"storage": 5}, "storage", "5", "a string or null"),
    ({"artifacts": 7}, "artifacts", "7", "a string or null"),
    ({"objectives": "val_acc"}, "objectives", "'val_acc'", "[val_acc, mflops] plus optionally one of latency_ms, "
                                                           "latency_ort_ms, params"),
    ({"objectives": ["val_acc", "mflops", "energy"]}, "objectives", "['val_acc', 'mflops', 'energy']",
     "[val_acc, mflops] plus optionally"),
    ({"budget_mflops": "40"}, "budget_mflops", "'40'", "a number of MFLOPs > 0"),
    ({"sampler": ["tpe"]}, "sampler", "['tpe']", "one of tpe, nsga2, random"),
    ({"pruner": {"reduction": 1}}, "pruner.reduction", "1", "an integer >= 2"),
    ({"pruner": 3}, "pruner.name", "3", "one of none, median, successive_halving"),
    ({"latency": {"runs": "20"}}, "latency.runs", "'20'", "an integer in [1, 10000]"),
    ({"latency": [20]}, "latency", "[20]", "a mapping with keys among runs, threads"),
    ({"study": ""}, "study", "''", "a non-empty string"),
])
def test_wrong_type_names_file_key_value_and_expected(tmp_path, change, key, value, expected):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    with pytest.raises(NaspruneError) as err:
        load_recipe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}={value} is invalid: expected {expected}"), message
    assert "\n" not in message


def test_a_string_boolean_never_turns_baselines_on():
    assert parse_recipe({**BASE, "with_baselines": False}, "r.yaml").with_baselines is False
    assert parse_recipe({**BASE, "with_baselines": True}, "r.yaml").with_baselines is True
    with pytest.raises(NaspruneError, match="with_baselines='false' is invalid"):
        parse_recipe({**BASE, "with_baselines": "false"}, "r.yaml")


def test_values_are_stored_with_their_declared_types():
    r = parse_recipe({**BASE, "budget_mflops": 40, "finetune": {"lr": 1, "epochs": 0}, "pruner": "median",
                      "objectives": ["val_acc", "mflops", "latency_ort_ms"]}, "r.yaml")
    assert type(r.budget_mflops) is float and type(r.finetune["lr"]) is float and r.finetune["epochs"] == 0
    assert r.pruner.name == "median" and r.objectives == ("val_acc", "mflops", "latency_ort_ms")
    assert r.data == {"name": "synthetic", "data_dir": None, "resolution": 32, "subset": None, "val_size": 5000,
                      "seed": 0, "channels": None}  # filled with DataConfig's defaults


@pytest.mark.parametrize("change, message", [
    ({"with_baselines": "false"}, "with_baselines='false' is invalid: expected true or false"),
    ({"parent": {"amp": "yes"}}, "parent.amp='yes' is invalid: expected true or false"),
    ({"data": "synthetic"}, "data='synthetic' is invalid: expected a mapping"),
    ({"objectives": "val_acc"}, "objectives='val_acc' is invalid"),
])
def test_cli_bad_recipe_exits_2_with_one_line_before_any_work(tmp_path, capsys, monkeypatch, change, message):
    from nasprune.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    assert main(["search", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nasprune: error: {path}: {message}")
    assert err.count("\n") == 1 and not list(tmp_path.glob("studies"))  # nothing created


def test_cli_bad_recipe_has_no_traceback(tmp_path, run_cli):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**BASE, "finetune": {"augment": "no"}}))
    proc = run_cli("search", "r.yaml", "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == "nasprune: error: r.yaml: finetune.augment='no' is invalid: expected true or false\n"


# -- the stored form round-trips -------------------------------------------------------------------------------------
def _stored(r):
    import json

    return json.loads(json.dumps(r.to_dict()))  # as Optuna keeps a user attr


@pytest.mark.parametrize("name", RECIPES.names())
@pytest.mark.parametrize("overrides", [
    {},
    {"space": "mobilenet_v3", "budget_mflops": 60.0, "sampler": "nsga2", "data_name": "synthetic", "seed": 3},
    {"trials": 7, "storage": "sqlite:///x.db", "artifacts": "arts", "with_baselines": True, "study": "other"},
])
def test_shipped_recipes_round_trip(name, overrides):
    from nasprune.search.recipe import Recipe

    r = load_recipe(name, **overrides)
    assert Recipe.from_dict(_stored(r)) == r
    assert Recipe.from_dict(_stored(r)).parent_key() == r.parent_key()


@pytest.mark.parametrize("space_name", SPACES.names())
def test_every_shipped_space_with_overrides_round_trips(space_name):
    from nasprune.search.recipe import Recipe

    r = parse_recipe({**BASE, "space": space_name, "space_overrides": {"free_placement": None, "width": [0.5, 1]},
                      "objectives": ["val_acc", "mflops", "params"], "parent": {"mode": "shared", "lr": 0.2},
                      "finetune": {"epochs": 0}, "pruner": {"name": "successive_halving", "reduction": 2},
                      "latency": {"runs": 3}}, "r.yaml")
    assert all(m.free is None for m in r.space.members.values()) and r.space.widths == (0.5, 1.0)
    assert Recipe.from_dict(_stored(r)) == r


def test_the_stored_space_does_not_need_its_file(tmp_path):
    from nasprune.search.recipe import Recipe

    space = tmp_path / "mine.yaml"
    space.write_text(open(load_recipe(None).space.path).read())
    r = parse_recipe({**BASE, "space": str(space)}, tmp_path / "r.yaml")
    stored = _stored(r)
    space.unlink()
    assert Recipe.from_dict(stored) == r and stored["space_path"] == str(space)


def test_an_inline_space_and_a_legacy_stored_recipe():
    from nasprune.search.recipe import Recipe

    content = dict(load_recipe(None).space.raw)
    r = parse_recipe({**BASE, "space": content}, "r.yaml")
    assert r.space.schedule_choices == ["fast", "slow"] and Recipe.from_dict(_stored(r)) == r
    legacy = {**_stored(r), "space": "fd_mobilenet"}  # stored before spaces were stored by content
    del legacy["space_path"]
    assert Recipe.from_dict(legacy).space.name == "fd_mobilenet"


def test_a_bad_stored_recipe_names_its_source():
    from nasprune.search.recipe import Recipe

    stored = {**_stored(parse_recipe(BASE, "r.yaml")), "seed": "x"}
    with pytest.raises(NaspruneError, match=r"^study 's' recipe: seed='x' is invalid: expected an integer >= 0$"):
        Recipe.from_dict(stored, source="study 's' recipe")


def test_storage_password_is_not_stored():
    r = load_recipe(None, storage="postgresql://user:secret@db:5432/nas")
    assert r.storage.endswith("secret@db:5432/nas") and r.to_dict()["storage"] == "postgresql://user:***@db:5432/nas"


def test_override_revalidates_like_the_file():
    r = load_recipe(None)
    assert r.override(parent_mode="per_trial").to_dict()["parent"]["mode"] == "per_trial"
    assert r.override(trials=None) is r
    with pytest.raises(NaspruneError, match="parent.mode='both' is invalid: expected one of shared, per_trial"):
        r.override(parent_mode="both")
