"""Importance criteria: one score per prunable channel; a higher score means more important.

Every criterion is a small callable ``criterion(model, *, seed=0) -> {layer: scores}`` where ``layer`` runs
over :func:`~nasprune.prune.groups.prunable_layers` (the channel groups) and ``scores`` is a 1-D float64 CPU
tensor with one entry per channel of the group. A group's score is the **sum of its members' scores**
(:attr:`~nasprune.prune.groups.ChannelGroup.producers`: one conv for an expansion group or a plain path, the
stem or first conv plus every residual projection for a stage joined by residual adds). For a member conv
``l`` with weight ``K_l`` (``N x C x H x W``) and BN scale ``gamma`` (Liu & Lei 2022, "A Structured Pruning
Method Integrating Characteristics of MobileNetV3"):

* ``gamma_sparsity`` (default): ``m_n = |gamma_n| * S_l(n)``.
* ``gamma``: ``|gamma_n|`` (Network Slimming, Liu et al. 2017).
* ``l1``: ``sum |K_l[n]|``, the filter's L1 norm (Li et al. 2017).
* ``sparsity``: ``S_l(n) = mean_{c,h,w} [ |K_l[n,c,h,w]| >= M_l ]`` with ``M_l = mean |K_l|`` over the
  whole layer: the fraction of the filter's coefficients at or above the layer's mean magnitude.
* ``random``: uniform in [0, 1) from a generator seeded with ``seed`` (a control).

Scores of different layers are compared directly by the global threshold, as in the paper; a group of
``m`` members sums ``m`` scores, so the global threshold tends to keep multi-member (residual) groups.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from nasprune.errors import NaspruneError
from nasprune.prune.groups import channel_groups

__all__ = ["CRITERIA", "DEFAULT_CRITERION", "compute_scores", "filter_sparsity"]

Criterion = Callable[..., dict[str, Tensor]]
DEFAULT_CRITERION = "gamma_sparsity"


def filter_sparsity(weight: Tensor) -> Tensor:
    """``S_l(n)`` for every filter ``n`` of a conv weight ``N x C x H x W``."""
    magnitude = weight.detach().abs().double()
    layer_mean = magnitude.mean()
    return (magnitude >= layer_mean).double().flatten(1).mean(1)


def _members(model: nn.Module) -> dict[str, list[tuple[nn.Conv2d, nn.BatchNorm2d]]]:
    """``{group: [(conv, bn) of every producer]}``."""
    return {layer: [(model.get_submodule(f"{m}.conv"), model.get_submodule(f"{m}.bn")) for m in group.producers]
            for layer, group in channel_groups(model.spec).items()}


def _per_layer(score: Callable[[nn.Conv2d, nn.BatchNorm2d], Tensor]) -> Criterion:
    def criterion(model: nn.Module, *, seed: int = 0) -> dict[str, Tensor]:
        with torch.no_grad():
            return {layer: torch.stack([score(conv, bn).detach().double().cpu() for conv, bn in members]).sum(0)
                    for layer, members in _members(model).items()}

    criterion.__doc__ = score.__doc__
    return criterion


def _gamma(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """|gamma| of the BN after the conv."""
    return bn.weight.abs()


def _l1(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """L1 norm of each filter."""
    return conv.weight.abs().flatten(1).sum(1)


def _sparsity(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """Filter sparsity value S_l(n)."""
    return filter_sparsity(conv.weight)


def _gamma_sparsity(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """|gamma| * S_l(n), the paper's criterion."""
    return bn.weight.detach().abs().double().cpu() * filter_sparsity(conv.weight).cpu()


def _random(model: nn.Module, *, seed: int = 0) -> dict[str, Tensor]:
    """Uniform random scores from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return {layer: torch.rand(group.channels, generator=generator, dtype=torch.float64)
            for layer, group in channel_groups(model.spec).items()}


CRITERIA: dict[str, Criterion] = {
    "gamma_sparsity": _per_layer(_gamma_sparsity),
    "gamma": _per_layer(_gamma),
    "l1": _per_layer(_l1),
    "sparsity": _per_layer(_sparsity),
    "random": _random,
}


def compute_scores(model: nn.Module, criterion: str = DEFAULT_CRITERION, *, seed: int = 0) -> dict[str, Tensor]:
    """Scores of every prunable channel of ``model`` by the named criterion."""
    if criterion not in CRITERIA:
        raise NaspruneError(f"unknown criterion {criterion!r}: expected one of {', '.join(CRITERIA)}")
    return CRITERIA[criterion](model, seed=seed)
