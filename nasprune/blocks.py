"""Torch modules for the block kinds of :mod:`nasprune.spec`.

Attribute names are stable and are what pruning and export address:

* ``ConvBNAct``: ``conv``, ``bn``, ``act``
* ``SqueezeExcite``: ``fc1``, ``act``, ``fc2``, ``gate``
* ``DepthwiseSeparable``: ``conv_dw``, ``se``, ``conv_pw``
* ``InvertedResidual``: ``conv_pw`` (expansion), ``conv_dw``, ``se``, ``conv_pwl`` (projection)

A part that is switched off is an ``nn.Identity()``, so the names never move.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from nasprune.spec import DWSBlockSpec, IRBlockSpec

__all__ = [
    "ACT_LAYERS",
    "BLOCK_BUILDERS",
    "ConvBNAct",
    "DepthwiseSeparable",
    "InvertedResidual",
    "SqueezeExcite",
]

ACT_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": partial(nn.ReLU, inplace=True),
    "relu6": partial(nn.ReLU6, inplace=True),
    "hswish": partial(nn.Hardswish, inplace=True),
}
GATE_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "hsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
}


class ConvBNAct(nn.Sequential):
    """``conv (no bias) -> BN -> act``; ``act=None`` gives a linear (bottleneck) output."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            groups=groups, bias=False,
        )
        self.bn = norm_layer(out_channels)
        self.act = ACT_LAYERS[act]() if act else nn.Identity()


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite as in MobileNetV3: pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> gate -> scale."""

    def __init__(self, channels: int, squeeze_channels: int, *, gate: str = "hsigmoid") -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = GATE_LAYERS[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.fc2(self.act(self.fc1(scale))))
        return x * scale


def _se(spec: DWSBlockSpec | IRBlockSpec) -> nn.Module:
    if not spec.has_se:
        return nn.Identity()
    return SqueezeExcite(spec.dw_channels, spec.se_channels, gate=spec.se_gate)


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 / FD-MobileNet block: ``conv_dw -> se -> conv_pw``."""

    def __init__(self, spec: DWSBlockSpec, *, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        c = spec.in_channels
        self.conv_dw = ConvBNAct(c, c, kernel_size=spec.kernel_size, stride=spec.stride, groups=c,
                                 act=spec.act, norm_layer=norm_layer)
        self.se = _se(spec)
        self.conv_pw = ConvBNAct(c, spec.out_channels, act=spec.act, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_pw(self.se(self.conv_dw(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 / V3 block: ``conv_pw -> conv_dw -> se -> conv_pwl (+ input)``."""

    def __init__(self, spec: IRBlockSpec, *, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        e = spec.exp_channels
        self.use_residual = spec.use_residual
        self.conv_pw = (ConvBNAct(spec.in_channels, e, act=spec.act, norm_layer=norm_layer)
                        if spec.expand else nn.Identity())
        self.conv_dw = ConvBNAct(e, e, kernel_size=spec.kernel_size, stride=spec.stride, groups=e,
                                 act=spec.act, norm_layer=norm_layer)
        self.se = _se(spec)
        self.conv_pwl = ConvBNAct(e, spec.out_channels, act=None, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return out + x if self.use_residual else out


BLOCK_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    DWSBlockSpec.kind: DepthwiseSeparable,
    IRBlockSpec.kind: InvertedResidual,
}
