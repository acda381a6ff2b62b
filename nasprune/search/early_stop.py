"""Multi-fidelity: stop a trial's fine-tuning early when its per-epoch validation accuracy lags.

Optuna's pruners need ``Trial.report``, which Optuna 5 does not support for multi-objective studies, so the
same rules are applied here to the accuracy histories stored on the trials (user attr ``val_acc_history``,
one value per fine-tune epoch):

* ``median`` (Optuna's ``MedianPruner``): stop at epoch ``e >= min_epochs`` if the accuracy is below the
  median of the other finished trials' accuracies at epoch ``e``;
* ``successive_halving`` (asynchronous, as Optuna's ``SuccessiveHalvingPruner``): rungs at epochs
  ``min_epochs * reduction**k``; at a rung a trial continues only if it is in the top ``1 / reduction`` of
  all accuracies recorded at that rung.

Nothing is stopped while fewer than ``warmup_trials`` finished trials reached the epoch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from nasprune.search.recipe import PrunerConfig

__all__ = ["STOP_RULES", "should_stop"]


def _median(cfg: PrunerConfig, epoch: int, acc: float, peers: list[float]) -> bool:
    return acc < statistics.median(peers)


def _is_rung(cfg: PrunerConfig, epoch: int) -> bool:
    k = math.log(epoch / cfg.min_epochs, cfg.reduction) if epoch >= cfg.min_epochs else -1
    return k >= 0 and abs(k - round(k)) < 1e-9


def _successive_halving(cfg: PrunerConfig, epoch: int, acc: float, peers: list[float]) -> bool:
    if not _is_rung(cfg, epoch):
        return False
    everyone = sorted([*peers, acc], reverse=True)
    survivors = max(1, len(everyone) // cfg.reduction)
    return acc < everyone[survivors - 1]


STOP_RULES: dict[str, Callable[[PrunerConfig, int, float, list[float]], bool]] = {
    "median": _median,
    "successive_halving": _successive_halving,
}


def should_stop(cfg: PrunerConfig, epoch: int, acc: float, histories: Sequence[Sequence[float]]) -> bool:
    """Whether a trial with accuracy ``acc`` after fine-tune ``epoch`` (from 1) should stop.

    ``histories`` are the per-epoch accuracies of the study's other finished trials.
    """
    if cfg.name == "none" or epoch < cfg.min_epochs:
        return False
    peers = [h[epoch - 1] for h in histories if len(h) >= epoch]
    if len(peers) < max(1, cfg.warmup_trials):
        return False
    return STOP_RULES[cfg.name](cfg, epoch, acc, peers)
