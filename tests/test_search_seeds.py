"""Seed designs, the budget band in real searches, and the two-family space, end to end on synthetic data."""

from __future__ import annotations

import pytest
import yaml

from nasprune.cli import main
from nasprune.search.record import records
from nasprune.spec import ArchSpec
from nasprune.storage import load_study
from nasprune.zoo import get_spec

SYNTHETIC = {"study": "syn", "space": "fd_mobilenet",
             "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
             "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
             "budget_mflops": 12, "trials": 4, "sampler": "random",
             "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05},
             "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2}}


@pytest.fixture
def search(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(*flags: str, **changes):
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({**SYNTHETIC, **changes}))
        assert main(["search", str(path), "--no-progress", *flags]) == 0
        return load_study(changes.get("study", "syn"))

    return run


def test_seed_designs_are_the_first_trials_and_the_search_fills_the_band(search):
    study = search()
    recs = sorted(records(study), key=lambda r: r.number)
    # FD-MobileNet 0.25x (9.98 MFLOPs with 1 channel and 4 classes) fits; the narrowest over-budget width of each
    # hand design (FD 0.5x, MobileNet 0.25x) is pruned uniformly into the band
    assert [r.seed_design for r in recs] == ["fd_mobilenet_0.25", "fd_mobilenet_0.5@band",
                                             "mobilenet_v1_0.25@band", None]
    hand = recs[0]
    assert hand.keep_scale == 1.0 and hand.trained and not hand.constraints.get("band")
    zoo = get_spec("fd_mobilenet", width=0.25, resolution=224, num_classes=4, in_channels=1)
    assert ArchSpec.from_dict(hand.child_spec).hash == zoo.hash  # the hand design itself, cut from the 0.5x parent
    for r in recs[1:]:
        assert r.trained and 0.85 * 12 <= r.mflops <= 12, (r.number, r.mflops)
        assert set(r.constraints) == {"budget", "band"} and max(r.constraints.values()) <= 0
        assert set(r.ratios_asked) == set(r.ratios_got) == {layer["name"] for layer in r.layers}
    pruned = recs[1]
    assert len(set(pruned.ratios_asked.values())) == 1  # uniform: one width-scaling ratio everywhere
    assert study.user_attrs["budget_floor"] == 0.85
    # resuming enqueues nothing again
    study = search("--trials", "5")
    names = [r.seed_design for r in records(study) if r.seed_design]
    assert sorted(names) == sorted(set(names)) and len(names) == 3


def test_no_seed_designs_and_band_off(search):
    study = search("--no-seed-designs", "--budget-floor", "0", "--trials", "3")
    recs = records(study)
    assert all(r.seed_design is None for r in recs) and all(r.keep_scale == 1.0 for r in recs)
    assert all(set(r.constraints) == {"budget"} for r in recs)
    assert study.user_attrs["budget_floor"] == 0.0


def test_a_structure_that_cannot_reach_the_band_is_infeasible_and_untrained(search):
    study = search("--no-seed-designs", "--trials", "2", budget_mflops=5000)  # over every network of the space
    for r in records(study):
        assert r.constraints["band"] > 0 and r.constraints["budget"] < 0
        assert not r.feasible and not r.trained and r.artifact_id is None and r.val_acc is None


def test_the_two_family_space_trains_both_families_in_one_study(search):
    study = search("--trials", "7", space="mobilenets", budget_mflops=40,
                   space_overrides={"free_placement": None, "width": [0.25, 0.5, 0.75]})
    recs = records(study)
    assert {r.family for r in recs if r.trained} == {"dws", "ir"}
    assert "mobilenet_v3_large_0.5@band" in {r.seed_design for r in recs}
    for t in study.trials:  # a family's parameters are sampled only where that family was chosen
        family = t.params["family"]
        assert all(name == "family" or name.startswith(f"{family}.") for name in t.params), t.params
    parents = {(r.family, r.schedule): r.parent_hash for r in recs if r.trained}
    assert len(set(parents.values())) == len(parents)  # one shared parent per (family, schedule)


def test_a_space_with_its_own_bn_momentum_still_reproduces_the_hand_designs(tmp_path):
    from nasprune.search.recipe import load_recipe
    from nasprune.search.seeds import hand_designs

    def names(overrides):
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({**SYNTHETIC, "space": "mobilenet_v3", "budget_mflops": 300,
                                        "space_overrides": {"free_placement": None, **overrides}}))
        return [h.name for h in hand_designs(load_recipe(path), (1, 4))]

    torchvision = names({})
    assert torchvision == ["mobilenet_v3_large_0.5", "mobilenet_v3_large_0.75", "mobilenet_v3_large_1"]
    assert names({"bn_momentum": 0.1}) == torchvision          # a training setting, not the architecture
    assert names({"bn_eps": 1e-5}) == []                       # the numerics of the network itself differ
