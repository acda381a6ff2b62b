"""The budget table's selection logic (benchmarks/budget_select.py), run cache, table and command-line errors.

No training here: which MobileNetV1 / FD-MobileNet / MobileNetV3-Large width fits each budget and the aggregation
of seeds, all with exact MAC counts (1 input channel, 10 classes, 224x224). How far V3 is pruned to fit
(``nasprune.prune.fit_global_ratio``) is tested in tests/test_prune_budget.py, the closed-form MACs in
tests/test_cost.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import budget_report  # noqa: E402
import budget_select as sel  # noqa: E402
import budget_table  # noqa: E402
from budget_runs import RunCache, run_key  # noqa: E402

from nasprune.cost import closed_form_macs  # noqa: E402
from nasprune.errors import NaspruneError  # noqa: E402
from nasprune.prune import smallest_child  # noqa: E402


def test_ladder_keeps_the_deploy_to_training_ratio():
    assert sel.deploy_ladder(32) == [(224, 32), (196, 28), (168, 24), (140, 20), (112, 16)]
    assert sel.deploy_ladder(28) == [(224, 28), (192, 24), (160, 20), (128, 16)]


@pytest.mark.parametrize("budget, width, deploy, train, macs", [
    (12, 0.25, 112, 16, 10_126_144),    # nothing fits at 224 or 140 (0.25x @140 has 15.8 M)
    (40, 0.25, 224, 32, 38_970_496),
    (140, 0.75, 140, 20, 134_655_888),  # 0.5x @224 (the paper's comparator) has 145.4 M: over budget
])
def test_mobilenet_v1_takes_the_most_macs_within_budget(budget, width, deploy, train, macs):
    c = sel.mobilenet_v1_candidate(budget, 32)
    assert (c.width, c.deploy_resolution, c.train_resolution, c.macs) == (width, deploy, train, macs)
    over = [closed_form_macs(sel.fashion_spec("mobilenet_v1", w, d)) for d, _ in sel.deploy_ladder(32)
            for w in sel.V1_WIDTHS]
    assert not [m for m in over if macs < m <= budget * 1e6]


def test_paper_comparator_is_over_the_140_budget():
    assert closed_form_macs(sel.fashion_spec("mobilenet_v1", 0.5)) == 145_377_536


@pytest.mark.parametrize("budget, macs", [(12, 9_978_176), (40, 36_012_672), (140, 136_250_624)])
def test_fd_mobilenet_width_per_budget(budget, macs):
    c = sel.fd_candidate(budget, 32)
    assert (c.width, c.deploy_resolution, c.macs) == (sel.FD_WIDTHS[budget], 224, macs)


def test_v3_width_is_the_widest_whose_smallest_child_fits():
    assert closed_form_macs(smallest_child(sel.fashion_spec("mobilenet_v3_large", 1.0))) == 7_337_048
    assert closed_form_macs(smallest_child(sel.fashion_spec("mobilenet_v3_large", 0.5))) == 6_220_888
    assert closed_form_macs(smallest_child(sel.fashion_spec("mobilenet_v3_large", 0.35))) == 6_005_848
    assert [sel.v3_parent_width(b) for b in (6.1, 6.5, 12, 40, 140)] == [0.35, 0.5, 1.0, 1.0, 1.0]
    with pytest.raises(NaspruneError, match="below every pruned MobileNetV3-Large"):
        sel.v3_parent_width(5)


def test_run_cache_round_trip_and_replace(tmp_path):
    cache = RunCache(tmp_path / "runs.jsonl")
    key = run_key(kind="train", seed=0)
    assert key == run_key(seed=0, kind="train") and len(key) == 16
    cache.add({"key": key, "test_acc": 0.5})
    cache.add({"key": "other", "test_acc": 0.1})
    cache.add({"key": key, "test_acc": 0.75})
    assert cache.get(key) == {"key": key, "test_acc": 0.75}
    assert [r["key"] for r in cache] == ["other", key]


def _run(seed, acc, family="fd_mobilenet", budget=40):
    return {"key": f"{family}{seed}", "kind": "train", "budget": budget, "family": family, "network": family,
            "seed": seed, "mflops": 36.0, "params": 10, "test_acc": acc, "val_acc": acc, "latency_deploy_ms": 2.0,
            "latency_train_ms": 1.0, "deploy_resolution": 224, "train_resolution": 32, "note": "",
            "spec_hash": "h"}


def test_pruned_rows_merge_seeds_and_list_their_ratios():
    notes = ["from width 1; global ratio 0.933 (4664 of 5000 expansion channels), then fine-tuned",
             "from width 1; global ratio 0.924 (4621 of 5000 expansion channels), then fine-tuned"]
    percents = ("93.3", "92.4")
    records = [{**_run(seed, 0.7 + seed / 10, "v3_pruned"), "note": note, "params": 100 + seed,
                "network": f"MobileNetV3-Large 1x pruned {percents[seed]} %"} for seed, note in enumerate(notes)]
    row = budget_report.summarize(records).iloc[0]
    assert (row.network, row.seeds, row.params) == ("MobileNetV3-Large 1x pruned", 2, 100)
    assert row.note == "from width 1; global ratio 0.933 / 0.924 per seed (of 5000 expansion channels), then fine-tuned"


def test_summary_mean_and_sample_std_over_seeds():
    records = [_run(0, 0.80), _run(1, 0.86), _run(2, 0.83), _run(0, 0.70, "mobilenet_v1"),
               _run(0, 0.9, "reference", None),
               {"key": "latency-session", "kind": "latency", "ms": {"h@224": 1.5}, "ms_ort": {"h@224": 0.25}}]
    table = budget_report.summarize(records)
    assert list(table["family"]) == ["mobilenet_v1", "fd_mobilenet", "reference"]
    fd = table.iloc[1]
    # 0.80, 0.86, 0.83: deviations -3, +3, 0 points, so the sample std is sqrt(18 / 2) = 3 points
    assert (fd.seeds, fd.test_acc, fd.test_spread) == (3, pytest.approx(0.83), pytest.approx(0.03))
    assert (fd.latency_224_ms, fd.latency_train_ms, fd.latency_ort_224_ms) == (1.5, 1.0, 0.25)
    assert table.iloc[0].test_spread == 0.0                             # one seed: no spread
    text = budget_report.markdown(table, budget_report.search_table(records))
    assert "| 40 | FD-MobileNet | fd_mobilenet | 36.00 | 10 | 83.00 ± 3.00 | 3 |" in text
    assert "| — | reference (over budget) | reference |" in text
    assert budget_report.summarize(records, recipe={"epochs": 1}).empty


@pytest.mark.parametrize("argv, message", [
    (["--budgets", "13"], "--budgets 13 is invalid"),
    (["--epochs", "0"], "--epochs 0 is invalid"),
    (["--resolution", "8"], "--resolution 8 is invalid"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert budget_table.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("budget_table: error: ") and message in err and err.count("\n") == 1


def test_32_px_table_keeps_the_search_before_the_band():
    s = budget_table.settings_from_args(budget_table.parse_args(["--resolution", "32"]))
    raw = s.search.recipe(s.table, 40.0)
    assert (s.stem, s.work_dir.name, raw["space"], s.wide) == ("budget_table_32", "budget_table_32",
                                                               "fd_mobilenet", False)
    assert not {"budget_floor", "seed_designs", "rerank"} & set(raw)   # the committed cache keys stay valid
    assert "searched_ft" not in s.stages                               # its searches kept no re-ranked weights
    ran = s.search.file_recipe(s.table, 40.0)
    assert (ran["budget_floor"], ran["seed_designs"]) == (0.0, False) and "rerank" not in ran


def test_the_main_table_is_64_px_with_the_new_search():
    s = budget_table.settings_from_args(budget_table.parse_args([]))
    assert s == budget_table.settings_from_args(budget_table.parse_args(["--resolution", "64"]))
    assert (s.stem, s.work_dir.name, s.table.resolution, s.wide) == ("budget_table", "budget_table", 64, True)
    assert s.stages == budget_table.DEFAULT_STAGES and "searched_ft" in s.stages
    ran = s.search.file_recipe(s.table, 12.0)
    assert (ran["space"], ran["budget_floor"], ran["seed_designs"], ran["rerank"]["top"]) == ("mobilenets", 0.85,
                                                                                              True, 4)
    assert ran["data"]["resolution"] == 64
    assert (s.seeds, s.table.epochs, s.table.subset, ran["trials"]) == ((0, 1, 2), 4, 4000, 16)   # the sizing
    quick = budget_table.settings_from_args(budget_table.parse_args(["--quick"]))
    assert (quick.stem, quick.out_dir.name, quick.search.rerank["top"]) == ("budget_table",
                                                                            "budget_table_quick", 2)
    other = budget_table.settings_from_args(budget_table.parse_args(["--resolution", "96"]))
    assert (other.stem, other.table.resolution, other.wide) == ("budget_table_96", 96, True)


def test_search_winner_is_the_rerank_winner(monkeypatch):
    from types import SimpleNamespace

    import nasprune.search.record as record

    def trial(number, val_acc, rerank=()):
        return SimpleNamespace(number=number, val_acc=val_acc, trained=True, state=SimpleNamespace(name="COMPLETE"),
                               duration_s=1.0, mflops=11.0, schedule="fast", width=0.5, se_count=0, child_spec={},
                               family="ir", seed_design=None, rerank=rerank)

    trials = [trial(0, 0.80), trial(1, 0.70, (SimpleNamespace(val_acc=0.85),))]
    monkeypatch.setattr(record, "records", lambda study: trials)
    assert budget_table._search_summary(None, 12, "mobilenets", 1.0)["best_trial"] == 0
    found = budget_table._search_summary(None, 12, "mobilenets", 1.0, SimpleNamespace(winner=1))
    assert (found["best_trial"], found["rerank_winner"], found["rerank_val_acc"]) == (1, 1, 0.85)


def test_64_px_hand_designs_fill_each_budget_at_224():
    table = sel.wide_hand_designed((12, 40, 140), 64)
    got = {b: [(c.model, c.width, round(c.macs / 1e6, 2)) for c in cs] for b, cs in table.items()}
    assert got == {
        12: [("mobilenet_v1", 0.125, 11.06), ("fd_mobilenet", 0.25, 9.98), ("mobilenet_v3_small", 0.35, 9.08)],
        40: [("mobilenet_v1", 0.25, 38.97), ("fd_mobilenet", 0.5, 36.01), ("mobilenet_v3_large", 0.35, 33.03),
             ("mobilenet_v3_small", 0.75, 34.74)],
        140: [("mobilenet_v1", 0.46875, 128.39), ("fd_mobilenet", 1.0, 136.25), ("mobilenet_v3_large", 0.75, 135.47),
              ("mobilenet_v3_small", 1.0, 51.88)]}
    for b, cs in table.items():                       # each is the widest of its grid: the next step is over budget
        for c in cs:
            assert c.spec.resolution == 224 and c.train_resolution == 64 and c.macs == closed_form_macs(c.spec)
            assert min(c.spec.feature_sizes(64)) == 2                   # the point of 64 px: no 1x1 maps
            assert min(c.spec.feature_sizes(32)) == 1                   # and every one of them at 32 px
        v1 = cs[0]
        assert closed_form_macs(sel.fashion_spec("mobilenet_v1", v1.width + 1 / 32)) > b * 1e6
    assert closed_form_macs(sel.fashion_spec("mobilenet_v3_large", 0.35)) > 12e6      # so no V3-Large at 12
    assert closed_form_macs(sel.fashion_spec("mobilenet_v3_small", 0.5)) > 12e6
    with pytest.raises(NaspruneError, match="below every MobileNetV1 width"):
        sel.mobilenet_v1_grid_candidate(1, 64)


def test_64_px_mobilenet_v1_ladder_stays_at_its_own_side():
    assert sel.deploy_ladder(64, min_train=64) == [(224, 64)]
    table = sel.hand_designed((12, 40, 140), 64, min_train=64)
    assert [c.model for c in table[12]] == ["fd_mobilenet"]            # no standard width fits 12 at 224
    assert [(c.width, c.train_resolution) for c in table[140]] == [(0.25, 64), (1.0, 64)]   # 0.5x has 145.4 M
    with pytest.raises(NaspruneError, match="below every MobileNetV1"):
        sel.hand_designed((5,), 32)                                    # the full ladder: an error


def test_claims_compare_rows_trained_alike_and_the_best_of_all():
    records = [_run(0, 0.80, "mobilenet_v1"), _run(1, 0.82, "mobilenet_v1"), _run(0, 0.85), _run(1, 0.87),
               _run(0, 0.90, "v3_pruned"), _run(1, 0.90, "v3_pruned"), _run(0, 0.91, "searched_ft"),
               _run(1, 0.93, "searched_ft"), _run(0, 0.84, "searched"), _run(0, 0.95, "reference", None),
               {"key": "s", "kind": "search", "budget": 40, "space": "mobilenets", "family_searched": "ir",
                "schedule": "slow"}]
    table = budget_report.summarize(records)
    text = budget_report.claims(table, budget_report.search_table(records))
    # FD 86 - V1 81 = +5 points; the retrained winner (84, one seed) against the best from-scratch row (FD, 86);
    # no equal-epoch control ran; the best searched row (92) against the best other budget row (pruned V3, 90),
    # not the over-budget reference parent (95)
    std = 2 ** 0.5                                   # two seeds one point either side of the mean: std sqrt(2)
    assert (f"| 40 | +5.00 (± {std:.2f} against ± {std:.2f}) | +5.6 | -2.00 (± 0.00 against ± {std:.2f}) against "
            f"fd_mobilenet |  | +2.00 (± {std:.2f} against ± 0.00) against v3_pruned | ir, slow |") in text
    assert text.count("\n| ") == 2                  # header and one budget


def test_the_fine_tuned_searched_row_starts_from_the_rerank_winners_weights(tmp_path):
    import yaml

    from nasprune import build
    from nasprune.search.recipe import load_recipe
    from nasprune.search.record import records
    from nasprune.search.runner import RunOptions, run_search
    from nasprune.spec import ArchSpec

    raw = {"space": "fd_mobilenet", "space_overrides": {"free_placement": None, "width": [0.25, 0.5]},
           "data": {"name": "synthetic", "resolution": 16, "subset": 120, "val_size": 60},
           "budget_mflops": 12, "trials": 3, "sampler": "random", "seed_designs": False,
           "parent": {"mode": "shared", "epochs": 1, "batch_size": 60, "lr": 0.05},
           "finetune": {"epochs": 1, "batch_size": 60, "lr": 0.02}, "latency": {"runs": 2},
           "rerank": {"top": 2, "epochs": 1, "growth": 2, "seeds": 1, "from": "weights"}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    recipe = load_recipe(path, study="budget_12_k", storage=f"journal:{tmp_path / 'searches.journal'}",
                         artifacts=str(tmp_path / "search_artifacts"))
    result = run_search(recipe, RunOptions(progress=False))
    found = {"key": "k", **budget_table._search_summary(result.study, 12, "fd_mobilenet", 1.0, result.rerank)}
    settings = budget_table.Settings(table=budget_table.TableRecipe(), search=budget_table.SearchSettings(),
                                     work_dir=tmp_path, out_dir=tmp_path)
    model, artifact = budget_table.search_weights(budget_table.Bench(settings, RunCache(tmp_path / "c.jsonl")),
                                                  12, found)
    winner = next(r for r in records(result.study) if r.number == found["best_trial"])
    assert found["best_trial"] == result.rerank.winner and winner.rerank
    assert artifact == winner.rerank[-1].artifact_id != winner.artifact_id     # the last rung's, not the trial's
    assert model.spec.hash == ArchSpec.from_dict(found["child_spec"]).hash
    fresh = build(model.spec).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in model.state_dict().items())   # trained, not initialised


def test_a_longer_control_has_its_own_key_and_the_recipe_rows_keep_theirs():
    s = budget_table.settings_from_args(budget_table.parse_args([]))
    spec = sel.fashion_spec("fd_mobilenet", 0.25)
    row = budget_table.Row(12, "v3_pruned", "x", spec, 64)
    before = run_key(kind="train", spec=spec.hash, deploy=224, train_res=64, seed=0, recipe=s.table.to_dict(),
                     init="scratch", budget=12, family="v3_pruned")       # the key every cached run was stored under
    assert budget_table.row_key(s, row, 0) == before != budget_table.row_key(s, row, 0, epochs=8)
    # the searched row's weights saw the shared parent, the trial's fine-tuning and the last of the re-rank's
    # rungs (top 4: rungs of 4, 2, 1 trials), which starts from the trial's checkpoint
    from nasprune.search.recipe import RerankConfig
    from nasprune.search.rerank import schedule

    rerank = RerankConfig(**{k: v for k, v in s.search.rerank.items() if k != "from"})
    last = schedule(rerank, 16)[-1]
    assert budget_table.searched_prior_epochs(s.search) == 8 == (s.search.parent_epochs + s.search.finetune_epochs
                                                                 + last.epochs)   # the 8 the table's keys hold


def test_a_parent_whose_checkpoint_is_gone_is_trained_again(tmp_path, monkeypatch):
    settings = budget_table.Settings(table=budget_table.TableRecipe(epochs=1), search=budget_table.SearchSettings(),
                                     work_dir=tmp_path, out_dir=tmp_path)
    bench = budget_table.Bench(settings, RunCache(tmp_path / "c.jsonl"))
    calls = []

    def train_row(bench, row, seed, model=None, init="scratch", epochs=None, *, force=False):
        calls.append((row.family, init, force))
        return {"test_acc": 0.5}

    monkeypatch.setattr(budget_table, "train_row", train_row)
    budget_table.v3_parent(bench, 0.35, 0)                           # the cache is not asked: there is no checkpoint
    assert calls == [("reference", "sparse", True)] and budget_table._parent_path(settings, 0.35, 0).is_file()


def test_search_stats_of_a_table_that_never_searched_is_one_line_exit_2(capsys):
    import budget_search_stats

    assert budget_search_stats.main(["--stem", "no_such_table"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("budget_search_stats: error: --stem 'no_such_table' has no ") and err.count("\n") == 1
