"""Helpers of the pruning tests: random weights, and the masked network computed from the structure alone.

The masking is derived from the network's layout on its own (which feature map a residual add joins to which),
not from ``nasprune.prune.groups``, so the tests check the declared coupling against it.
"""

from __future__ import annotations

import torch
from torch import nn

import nasprune
from nasprune.prune import keep_count, layer_channels
from nasprune.spec import ArchSpec, IRBlockSpec


def randomised(spec: ArchSpec, seed: int = 0) -> nn.Module:
    """A built model whose BN statistics, gammas, betas, biases and weights are all random, in eval mode."""
    torch.manual_seed(seed)
    model = nasprune.build(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(0, 1)
                m.bias.normal_(0, 1)
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0, 0.3)
                if m.bias is not None:
                    m.bias.normal_(0, 0.5)
    return model.eval()


def residual(block) -> bool:
    return isinstance(block, IRBlockSpec) and block.stride == 1 and block.in_channels == block.out_channels


def path_names(spec: ArchSpec) -> list[str]:
    """Group of feature map ``j`` (0: the stem's output, ``i + 1``: block ``i``'s output)."""
    names = ["stem"]
    for i, block in enumerate(spec.blocks):
        own = f"blocks.{i}.{'conv_pwl' if isinstance(block, IRBlockSpec) else 'conv_pw'}"
        names.append(names[-1] if residual(block) else own)
    return names


def dw_name(spec: ArchSpec, i: int) -> str:
    """Group of block ``i``'s depthwise channels: its expansion, else its input path."""
    block = spec.blocks[i]
    return f"blocks.{i}.conv_pw" if isinstance(block, IRBlockSpec) and block.expand else path_names(spec)[i]


def random_keep(spec: ArchSpec, seed: int) -> dict[str, torch.Tensor]:
    """A random ratio in [0, 0.9] per group, then a random (not top-k) subset of that size."""
    g = torch.Generator().manual_seed(seed)
    keep = {}
    for layer, n in layer_channels(spec).items():
        ratio = float(torch.rand(1, generator=g)) * 0.9
        keep[layer] = torch.randperm(n, generator=g)[: keep_count(n, ratio, floor=1)]
    return keep


def masked_logits(model: nn.Module, keep: dict[str, torch.Tensor], x: torch.Tensor, *,
                  dw: bool = True) -> torch.Tensor:
    """``model(x)`` with every removed channel zeroed where it leaves a layer (feature maps and depthwise outputs).

    ``dw=False`` zeroes the expansion conv's output instead of the depthwise conv's (a leaky mask, for the test
    that shows the equivalence can fail).
    """
    spec, names = model.spec, path_names(model.spec)
    handles = []

    def mask(module: nn.Module, index: torch.Tensor | None) -> None:
        if index is None:
            return

        def hook(m, inp, out, index=index):
            m = torch.zeros(out.shape[1])
            m[index] = 1.0
            return out * m.view(1, -1, 1, 1)

        handles.append(module.register_forward_hook(hook))

    mask(model.stem, keep.get("stem"))
    for i, block in enumerate(model.blocks):
        mask(block, keep.get(names[i + 1]))  # after the residual add
        if dw:
            mask(block.conv_dw, keep.get(dw_name(spec, i)))
        elif isinstance(spec.blocks[i], IRBlockSpec) and spec.blocks[i].expand:
            mask(block.conv_pw, keep.get(f"blocks.{i}.conv_pw"))
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    return out


def expected_widths(spec: ArchSpec, keep: dict[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """``(in, dw, out)`` channels of every block after cutting, from the structure alone."""
    def kept(name: str, full: int) -> int:
        return len(keep[name]) if name in keep else full

    names, rows = path_names(spec), []
    for i, b in enumerate(spec.blocks):
        c_in = kept(names[i], b.in_channels)
        rows.append((c_in, kept(dw_name(spec, i), b.dw_channels), kept(names[i + 1], b.out_channels)))
    return rows


def closed_form_macs(spec: ArchSpec, widths: list[tuple[int, int, int]], stem: int, se: list[int]) -> int:
    """Conv and linear multiply-adds of ``spec``'s layout at the given widths (the MobileNet papers' FLOPs)."""
    sizes = spec.feature_sizes()
    macs = spec.stem.kernel_size ** 2 * spec.in_channels * stem * sizes[0] ** 2
    for block, (c_in, dw, c_out), s_in, s_out, squeeze in zip(spec.blocks, widths, sizes, sizes[1:], se,
                                                             strict=False):
        if isinstance(block, IRBlockSpec) and block.expand:
            macs += c_in * dw * s_in ** 2
        macs += block.kernel_size ** 2 * dw * s_out ** 2 + 2 * dw * squeeze + dw * c_out * s_out ** 2
    channels = widths[-1][2]
    if spec.head.conv_channels:
        macs += channels * spec.head.conv_channels * sizes[-1] ** 2
        channels = spec.head.conv_channels
    if spec.head.hidden_features:
        macs += channels * spec.head.hidden_features
        channels = spec.head.hidden_features
    return macs + channels * spec.num_classes
