"""Proxy fidelity: how well the search's cheap accuracy ranks networks the way a longer training does.

A search trial's accuracy is a *proxy*: a few fine-tuning epochs of a child pruned from a shared parent. This
module holds what ``benchmarks/proxy_fidelity.py`` measures it with:

* rank agreement between a proxy and a reference ("truth", e.g. accuracy after retraining from scratch):
  Kendall's tau-b (:func:`kendall_tau_b`), Spearman's rho with average ranks for ties (:func:`spearman_rho`),
  top-k retrieval (:func:`top_k_overlap`) and the regret of trusting the proxy's best (:func:`top1_regret`),
  all together in :func:`rank_agreement`;
* which trials to retrain (:func:`spread_picks`: the proxy's best ones plus a spread over the rest);
* how far the BN scales of a trained parent spread (:func:`gamma_spread`), which decides whether a gamma-based
  criterion can tell channels apart;
* re-deriving a trial's child from any trained parent of its schedule (:func:`trial_design`,
  :func:`prune_trial`), exactly as :class:`~nasprune.search.objective.Objective` cut it.

No SciPy: the statistics are a few lines each and tested against hand-computed values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["GammaSpread", "RankAgreement", "average_ranks", "gamma_spread", "kendall_tau_b", "prune_trial",
           "rank_agreement", "spearman_rho", "spread_picks", "top1_regret", "top_k_overlap", "trial_design"]


def _check_pair(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(f"sequences of {len(x)} and {len(y)} values: expected equal lengths")


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences (a pair tied in either one is neither concordant nor not).

    ``(concordant - discordant) / sqrt((n0 - ties_x) * (n0 - ties_y))`` over the ``n0 = n (n - 1) / 2`` pairs;
    NaN when one sequence is constant or has fewer than two values.
    """
    _check_pair(x, y)
    concordant = discordant = ties_x = ties_y = pairs = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            pairs += 1
            ties_x += dx == 0
            ties_y += dy == 0
            concordant += dx * dy > 0
            discordant += dx * dy < 0
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def average_ranks(x: Sequence[float]) -> list[float]:
    """1-based ranks of ``x`` in increasing order, tied values sharing the mean of their ranks."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and x[order[end + 1]] == x[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks; NaN when one sequence is constant."""
    _check_pair(x, y)
    rx, ry = average_ranks(x), average_ranks(y)
    n = len(rx)
    if n < 2:
        return math.nan
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else math.nan


def _top(values: Sequence[float], k: int) -> set[int]:
    """Indices of the ``k`` highest values (ties: the earlier index first)."""
    return set(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])


def top_k_overlap(proxy: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Share of the truth's ``k`` best that are among the proxy's ``k`` best (``k`` 1: 1.0 when the proxy's
    best is the truth's best, else 0.0); NaN when there are fewer than ``k`` values."""
    _check_pair(proxy, truth)
    if k < 1:
        raise ValueError(f"k={k!r} is invalid: expected an integer >= 1")
    if len(proxy) < k:
        return math.nan
    return len(_top(proxy, k) & _top(truth, k)) / k


def top1_regret(proxy: Sequence[float], truth: Sequence[float]) -> float:
    """How much truth is lost by keeping the proxy's best: ``max(truth) - truth[argmax(proxy)]``."""
    _check_pair(proxy, truth)
    if not proxy:
        return math.nan
    (best,) = _top(proxy, 1)
    return max(truth) - truth[best]


@dataclass(frozen=True, kw_only=True)
class RankAgreement:
    """How a proxy ranks ``n`` networks against the truth (:func:`rank_agreement`)."""

    n: int
    tau: float
    rho: float
    top1: float
    top3: float
    regret: float

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "tau": self.tau, "rho": self.rho, "top1": self.top1, "top3": self.top3,
                "regret": self.regret}


def rank_agreement(proxy: Sequence[float], truth: Sequence[float]) -> RankAgreement:
    """Tau-b, rho, top-1 and top-3 retrieval and the top-1 regret of ``proxy`` against ``truth``."""
    return RankAgreement(n=len(proxy), tau=kendall_tau_b(proxy, truth), rho=spearman_rho(proxy, truth),
                         top1=top_k_overlap(proxy, truth, 1), top3=top_k_overlap(proxy, truth, 3),
                         regret=top1_regret(proxy, truth))


def spread_picks(values: Sequence[float], k: int, top: int) -> list[int]:
    """Indices of ``k`` values: the ``top`` highest, then ``k - top`` more spread evenly by rank over the rest
    (the lowest included), highest first. All of them when there are at most ``k``."""
    if not 0 <= top <= k:
        raise ValueError(f"top={top!r} is invalid for k={k!r}: expected 0 <= top <= k")
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    if len(order) <= k:
        return order
    rest, extra = order[top:], k - top
    if extra == 1:
        return order[:top] + [rest[-1]]
    positions = sorted({round(j * (len(rest) - 1) / (extra - 1)) for j in range(extra)}) if extra else []
    return order[:top] + [rest[p] for p in positions]


@dataclass(frozen=True, kw_only=True)
class GammaSpread:
    """How far a network's BN scale factors |gamma| spread (:func:`gamma_spread`).

    Attributes:
        channels: how many scales were pooled.
        mean: mean |gamma|.
        cv: coefficient of variation, std / mean (population std).
        share_below: share of scales under ``threshold``.
        threshold: the threshold.
    """

    channels: int
    mean: float
    cv: float
    share_below: float
    threshold: float

    def to_dict(self) -> dict[str, float]:
        return {"channels": self.channels, "mean": self.mean, "cv": self.cv, "share_below": self.share_below,
                "threshold": self.threshold}


def gamma_spread(model, threshold: float = 0.01) -> GammaSpread:
    """|gamma| of every BatchNorm layer of ``model`` pooled: mean, coefficient of variation, share under
    ``threshold`` (sparse training drives unimportant channels' scales to 0, so a gamma-based criterion only
    separates channels when the scales spread)."""
    import torch
    from torch import nn

    scales = [m.weight.detach().abs().double().flatten() for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not scales:
        raise ValueError("the model has no BatchNorm layer with a scale")
    g = torch.cat(scales)
    mean = float(g.mean())
    return GammaSpread(channels=g.numel(), mean=mean, cv=float(g.std(unbiased=False)) / mean if mean else math.nan,
                       share_below=float((g < threshold).double().mean()), threshold=threshold)


def trial_design(recipe, params: Mapping, *, baseline: bool = False, seed_design: str | None = None,
                 shape: tuple[int, int]):
    """The :class:`~nasprune.search.space.Design` a search trial with ``params`` was counted and cut by: its parent,
    the SE it dropped, the band-filled ratios (``ratios_got``) and the child (``child_spec``).

    Args:
        recipe: the study's recipe.
        params: the trial's parameters (``FrozenTrial.params``).
        baseline: the trial is an enqueued baseline (its own parent, no band).
        seed_design: its ``seed_design`` attribute (an unpruned seed design is not moved by the band).
        shape: ``(in_channels, num_classes)`` of the dataset.
    """
    from optuna.trial import TrialState

    from nasprune.search.band import band_design
    from nasprune.search.objective import band_floor
    from nasprune.search.record import TrialRecord
    from nasprune.search.space import FixedParams, resolve

    cand = recipe.space.sample(FixedParams(params))
    design = resolve(recipe.space, cand, mode="per_trial" if baseline else recipe.parent_mode,
                     resolution=recipe.deploy_resolution, in_channels=shape[0], num_classes=shape[1])
    given = TrialRecord(number=-1, state=TrialState.COMPLETE, baseline="yes" if baseline else None,
                        seed_design=seed_design)
    design, _ = band_design(design, recipe.budget_mflops, band_floor(recipe, given),
                            se_ratio=recipe.space.member(cand.family).se_ratio)
    return design


def prune_trial(parent, design, criterion: str, *, se_ratio: float | None, seed: int = 0):
    """Cut ``design``'s child out of a trained ``parent`` with ``criterion``, exactly as the search does (it is
    :func:`nasprune.search.objective.cut_child`)."""
    from nasprune.search.objective import cut_child

    return cut_child(parent, design, criterion, se_ratio=se_ratio, seed=seed)
