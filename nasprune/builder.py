"""Turn an :class:`~nasprune.spec.ArchSpec` into a ``torch.nn.Module``; nothing is decided here."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from nasprune.blocks import ACT_LAYERS, BLOCK_BUILDERS, ConvBNAct
from nasprune.spec import ArchSpec

__all__ = ["NasNet", "build"]


class Head(nn.Module):
    """``[conv_head] -> pool -> [fc_hidden -> act_hidden] -> dropout -> classifier``."""

    def __init__(self, spec: ArchSpec, norm_layer) -> None:
        super().__init__()
        h = spec.head
        channels = spec.out_channels
        if h.conv_channels:
            self.conv_head = ConvBNAct(channels, h.conv_channels, act=h.conv_act, norm_layer=norm_layer)
            channels = h.conv_channels
        else:
            self.conv_head = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        if h.hidden_features:
            self.fc_hidden = nn.Linear(channels, h.hidden_features)
            self.act_hidden = ACT_LAYERS[h.hidden_act]()
            channels = h.hidden_features
        else:
            self.fc_hidden = nn.Identity()
            self.act_hidden = nn.Identity()
        self.dropout = nn.Dropout(h.dropout) if h.dropout else nn.Identity()
        self.classifier = nn.Linear(channels, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.conv_head(x)))
        return self.classifier(self.dropout(self.act_hidden(self.fc_hidden(x))))


class NasNet(nn.Module):
    """A built spec: ``stem``, ``blocks`` (``blocks.0``, ``blocks.1``, ...) and ``head``.

    The spec travels with the module (``model.spec``) so pruning, checkpoints and export never guess it.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        norm_layer = partial(nn.BatchNorm2d, eps=spec.bn_eps, momentum=spec.bn_momentum)
        self.stem = ConvBNAct(spec.in_channels, spec.stem.out_channels, kernel_size=spec.stem.kernel_size,
                              stride=spec.stem.stride, act=spec.stem.act, norm_layer=norm_layer)
        self.blocks = nn.Sequential(*(BLOCK_BUILDERS[b.kind](b, norm_layer=norm_layer) for b in spec.blocks))
        self.head = Head(spec, norm_layer)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's MobileNet initialisation: Kaiming-normal convs, unit BN, small-normal linears."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(spec: ArchSpec) -> NasNet:
    """Build ``spec`` into a freshly initialised :class:`NasNet`."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"build() expects an ArchSpec, got {type(spec).__name__}")
    return NasNet(spec)
