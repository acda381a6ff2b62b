"""A small nasprune study built by hand for the report tests, with every number known in advance.

The trials follow the contract in docs/design.md (trial user_attrs, the budget as a trial constraint,
values = [validation accuracy, MFLOPs]). Budget 40 MFLOPs. Feasible completed trials (accuracy, MFLOPs):

    0 fd_mobilenet baseline (0.80, 30.0)   dominated by 6
    1                       (0.85, 38.0)   Pareto
    2                       (0.78, 32.0)   dominated by 6 and 0
    4                       (0.70, 12.0)   Pareto
    6                       (0.83, 25.0)   Pareto
    7 mobilenet_v1 baseline (0.86, 39.5)   Pareto

Trials 3 (55 MFLOPs) and 9 (47 MFLOPs) are over budget and were never trained; 5 was stopped early by the
pruner after reporting 0.5 then 0.6; 8 failed. Hypervolume against (0 accuracy, 40 MFLOPs) of the final
front: 0.70 * (25 - 12) + 0.83 * (38 - 25) + 0.85 * (39.5 - 38) + 0.86 * (40 - 39.5) = 21.595.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

BUDGET = 40.0
STUDY = "demo"
PARETO = [4, 6, 1, 7]  # sorted by MFLOPs
FINAL_HYPERVOLUME = (0.70 * 13 + 0.83 * 13 + 0.85 * 1.5 + 0.86 * 0.5) / BUDGET
N_BLOCKS = 6
SCHEDULES = {"fast": [0, 1, 3], "slow": [1, 3, 5], "custom": [0, 2, 4]}  # stride-2 blocks
DISTRIBUTIONS = {
    "width": CategoricalDistribution([0.5, 0.75, 1.0]),
    "schedule": CategoricalDistribution(["fast", "slow", "custom"]),
    "se_last": CategoricalDistribution([False, True]),
    "ratio_1": FloatDistribution(0.0, 0.75, step=0.25),
    "ratio_3": FloatDistribution(0.0, 0.75, step=0.25),
}

#        number: (acc, mflops, width, schedule, se_last, ratio_1, ratio_3, baseline)
TRAINED = {
    0: (0.80, 30.0, 0.5, "fast", False, 0.0, 0.0, "fd_mobilenet"),
    1: (0.85, 38.0, 1.0, "slow", True, 0.5, 0.25, None),
    2: (0.78, 32.0, 0.75, "fast", False, 0.25, 0.5, None),
    4: (0.70, 12.0, 0.5, "fast", True, 0.75, 0.75, None),
    6: (0.83, 25.0, 0.75, "custom", True, 0.25, 0.25, None),
    7: (0.86, 39.5, 1.0, "slow", False, 0.0, 0.0, "mobilenet_v1"),
}
OVER_BUDGET = {3: (55.0, 1.0, "slow"), 9: (47.0, 1.0, "custom")}


def feature_sizes(schedule: str, resolution: int = 224) -> list[int]:
    """Stem (stride 2) then each block; a stride-2 block halves the side."""
    sizes = [resolution // 2]
    for block in range(N_BLOCKS):
        sizes.append(sizes[-1] // 2 if block in SCHEDULES[schedule] else sizes[-1])
    return sizes


def layers(width: float, ratio_1: float, ratio_3: float) -> list[dict]:
    """Two prunable layers: blocks.1.conv_pw and blocks.3.conv_pw."""
    before_1, before_3 = int(64 * width), int(128 * width)
    return [{"name": "blocks.1.conv_pw", "before": before_1, "after": round(before_1 * (1 - ratio_1))},
            {"name": "blocks.3.conv_pw", "before": before_3, "after": round(before_3 * (1 - ratio_3))}]


def _attrs(mflops: float, width: float, schedule: str, se_blocks: list[int], **extra) -> dict:
    return {"macs": int(round(mflops * 1e6)), "mflops": mflops, "schedule": schedule, "width": width,
            "downsample_layers": SCHEDULES[schedule], "se_blocks": se_blocks, "se_count": len(se_blocks),
            "criterion": "gamma_sparsity", "feature_sizes": feature_sizes(schedule),
            "feasible": mflops <= BUDGET, **extra}


def trained_trial(number: int) -> optuna.trial.FrozenTrial:
    acc, mflops, width, schedule, se_last, r1, r3, baseline = TRAINED[number]
    se_blocks = [4, 5] if se_last else []
    attrs = _attrs(mflops, width, schedule, se_blocks, val_acc=acc, params=100_000 + 1000 * number,
                   latency_ms=1.5 + number / 10, layers=layers(width, r1, r3), artifact_id=f"artifact-{number}")
    if baseline:
        attrs["baseline"] = baseline
    if number:  # trial 0 is from before onnxruntime was measured
        attrs["latency_ort_ms"] = 0.25 + number / 100
    params = {"width": width, "schedule": schedule, "se_last": se_last, "ratio_1": r1, "ratio_3": r3}
    return create_trial(values=[acc, mflops], params=params, distributions=DISTRIBUTIONS, user_attrs=attrs,
                        constraints={"mflops": mflops - BUDGET}, intermediate_values={0: acc - 0.1, 1: acc})


def over_budget_trial(number: int) -> optuna.trial.FrozenTrial:
    mflops, width, schedule = OVER_BUDGET[number]
    params = {"width": width, "schedule": schedule, "se_last": False, "ratio_1": 0.0, "ratio_3": 0.0}
    return create_trial(values=[0.0, mflops], params=params, distributions=DISTRIBUTIONS,
                        user_attrs=_attrs(mflops, width, schedule, []), constraints={"mflops": mflops - BUDGET})


def pruned_trial() -> optuna.trial.FrozenTrial:
    params = {"width": 0.75, "schedule": "slow", "se_last": False, "ratio_1": 0.5, "ratio_3": 0.5}
    return create_trial(state=TrialState.PRUNED, params=params, distributions=DISTRIBUTIONS,
                        user_attrs=_attrs(20.0, 0.75, "slow", []), constraints={"mflops": 20.0 - BUDGET},
                        intermediate_values={0: 0.5, 1: 0.6})


def make_trial(number: int) -> optuna.trial.FrozenTrial:
    if number in TRAINED:
        return trained_trial(number)
    if number in OVER_BUDGET:
        return over_budget_trial(number)
    if number == 5:
        return pruned_trial()
    return create_trial(state=TrialState.FAIL, params={}, distributions={})


def create_study(storage: str, name: str = STUDY, numbers=range(10)) -> optuna.Study:
    """The study above (or the given subset of its trials, renumbered in order) in ``storage``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("budget_mflops", BUDGET)
    study.set_user_attr("objectives", ["val_acc", "mflops"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_acc", "mflops"])
    for number in numbers:
        study.add_trial(make_trial(number))
    return study
