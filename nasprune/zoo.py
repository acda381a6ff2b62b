"""Registered hand-designed networks, as spec functions.

Each takes ``width`` (the multiplier alpha), ``resolution``, ``num_classes`` and ``in_channels`` and
returns an :class:`~nasprune.spec.ArchSpec`. Width rules follow the papers' code:

* MobileNetV1 and FD-MobileNet: ``int(c * alpha)`` for every channel count, stem included.
* MobileNetV2 and V3: ``make_divisible(c * alpha, 8)``; the SE squeeze is ``make_divisible(exp // 4, 8)``
  of the scaled expansion; V2's last conv is ``make_divisible(1280 * max(1, alpha), 8)``; V3's head conv is
  6x the last block's scaled output and its hidden linear ``make_divisible(1280 * alpha, 8)`` (Small: 1024).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, SpecError, StemSpec, make_divisible

__all__ = [
    "FD_SCHEDULE",
    "MOBILENET_V1_SCHEDULE",
    "ZOO",
    "dws_network",
    "fd_mobilenet",
    "get_spec",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "register",
]

ZOO: dict[str, Callable[..., ArchSpec]] = {}


def register(fn: Callable[..., ArchSpec]) -> Callable[..., ArchSpec]:
    ZOO[fn.__name__] = fn
    return fn


def _check_width(width: float) -> None:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise SpecError(f"width={width!r} is invalid: expected a number > 0")


# -- depthwise-separable networks ------------------------------------------------------------------
class DWSStage(NamedTuple):
    out_channels: int
    stride: int


# MobileNetV1: "slow" downsampling, 32x only at block 12 of 13 (stem s2 + four more stride-2 blocks).
MOBILENET_V1_SCHEDULE: tuple[DWSStage, ...] = (
    DWSStage(64, 1),    # 112x112
    DWSStage(128, 2),   # -> 56
    DWSStage(128, 1),
    DWSStage(256, 2),   # -> 28
    DWSStage(256, 1),
    DWSStage(512, 2),   # -> 14
    DWSStage(512, 1), DWSStage(512, 1), DWSStage(512, 1), DWSStage(512, 1), DWSStage(512, 1),
    DWSStage(1024, 2),  # -> 7
    DWSStage(1024, 1),
)

# FD-MobileNet: "fast" downsampling, 32x within the first 12 layers (stem + 5 dws + the 6th dw).
FD_SCHEDULE: tuple[DWSStage, ...] = (
    DWSStage(64, 2),    # 112 -> 56
    DWSStage(128, 2),   # -> 28
    DWSStage(128, 1),
    DWSStage(256, 2),   # -> 14
    DWSStage(256, 1),
    DWSStage(512, 2),   # -> 7
    DWSStage(512, 1), DWSStage(512, 1), DWSStage(512, 1), DWSStage(512, 1),
    DWSStage(1024, 1),
)


def dws_network(
    name: str,
    stages: Sequence[DWSStage],
    *,
    width: float = 1.0,
    stem_channels: int = 32,
    se: Sequence[bool] | None = None,
    se_ratio: float = 0.25,
    resolution: int = 224,
    num_classes: int = 1000,
    in_channels: int = 3,
) -> ArchSpec:
    """A MobileNetV1-style network from base channels and strides, scaled by ``int(c * width)``.

    ``se[i]`` adds squeeze-and-excite to block ``i`` with squeeze ``make_divisible(dw_channels * se_ratio, 8)``.
    """
    _check_width(width)
    se = tuple(se) if se is not None else (False,) * len(stages)
    if len(se) != len(stages):
        raise SpecError(f"se has {len(se)} entries: expected one per block ({len(stages)})")
    stem_out = max(1, int(stem_channels * width))
    blocks, c_in = [], stem_out
    for stage, with_se in zip(stages, se, strict=True):
        c_out = max(1, int(stage.out_channels * width))
        blocks.append(DWSBlockSpec(
            in_channels=c_in, out_channels=c_out, stride=stage.stride,
            se_channels=make_divisible(c_in * se_ratio, 8) if with_se else 0,
        ))
        c_in = c_out
    return ArchSpec(
        name=name, in_channels=in_channels, resolution=resolution, num_classes=num_classes,
        stem=StemSpec(out_channels=stem_out, stride=2), blocks=tuple(blocks), head=HeadSpec(),
    )


def _width_tag(width: float) -> str:
    _check_width(width)  # before formatting: a bad width must give the SpecError, not a format error
    return f"{width:g}"


@register
def mobilenet_v1(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 in_channels: int = 3) -> ArchSpec:
    """MobileNetV1 (Howard et al., 2017), slow downsampling."""
    return dws_network(f"mobilenet_v1_{_width_tag(width)}", MOBILENET_V1_SCHEDULE, width=width,
                       resolution=resolution, num_classes=num_classes, in_channels=in_channels)


@register
def fd_mobilenet(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 in_channels: int = 3) -> ArchSpec:
    """FD-MobileNet (Qin et al., 2018), fast downsampling: 32x within 12 layers."""
    return dws_network(f"fd_mobilenet_{_width_tag(width)}", FD_SCHEDULE, width=width,
                       resolution=resolution, num_classes=num_classes, in_channels=in_channels)


# -- inverted-residual networks --------------------------------------------------------------------
class IRStage(NamedTuple):
    kernel_size: int
    exp_channels: int
    out_channels: int
    se: bool
    act: str
    stride: int


def ir_network(
    name: str,
    stages: Sequence[IRStage],
    *,
    width: float,
    stem_channels: int,
    stem_act: str,
    head: HeadSpec,
    resolution: int,
    num_classes: int,
    in_channels: int,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
) -> ArchSpec:
    """A V2/V3-style network: channels, expansions and SE squeezes through ``make_divisible(c * width, 8)``."""
    _check_width(width)
    stem_out = make_divisible(stem_channels * width)
    blocks, c_in = [], stem_out
    for s in stages:
        exp = make_divisible(s.exp_channels * width)
        c_out = make_divisible(s.out_channels * width)
        blocks.append(IRBlockSpec(
            in_channels=c_in, exp_channels=exp, out_channels=c_out, expand=exp != c_in,
            kernel_size=s.kernel_size, stride=s.stride, act=s.act,
            se_channels=make_divisible(exp // 4, 8) if s.se else 0,
        ))
        c_in = c_out
    return ArchSpec(
        name=name, in_channels=in_channels, resolution=resolution, num_classes=num_classes,
        stem=StemSpec(out_channels=stem_out, stride=2, act=stem_act), blocks=tuple(blocks), head=head,
        bn_eps=bn_eps, bn_momentum=bn_momentum,
    )


def _v2_stages() -> list[IRStage]:
    # (t, c, n, s) of the MobileNetV2 paper, unrolled; exp = t * in, so it is filled per block below.
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)]
    return [IRStage(3, t, c, False, "relu6", s if i == 0 else 1)
            for t, c, n, s in table for i in range(n)]


@register
def mobilenet_v2(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 in_channels: int = 3) -> ArchSpec:
    """MobileNetV2 (Sandler et al., 2018), torchvision's width rules."""
    _check_width(width)
    stem_out = make_divisible(32 * width)
    blocks, c_in = [], stem_out
    for s in _v2_stages():  # exp_channels holds t here: V2 expands the *scaled* input t-fold
        c_out = make_divisible(s.out_channels * width)
        exp = c_in * s.exp_channels
        blocks.append(IRBlockSpec(in_channels=c_in, exp_channels=exp, out_channels=c_out, expand=s.exp_channels != 1,
                                  kernel_size=3, stride=s.stride, act="relu6"))
        c_in = c_out
    head = HeadSpec(conv_channels=make_divisible(1280 * max(1.0, width)), conv_act="relu6", dropout=0.2)
    return ArchSpec(name=f"mobilenet_v2_{_width_tag(width)}", in_channels=in_channels, resolution=resolution,
                    num_classes=num_classes, stem=StemSpec(out_channels=stem_out, stride=2, act="relu6"),
                    blocks=tuple(blocks), head=head)


MOBILENET_V3_LARGE: tuple[IRStage, ...] = (
    IRStage(3, 16, 16, False, "relu", 1),      # 112
    IRStage(3, 64, 24, False, "relu", 2),      # -> 56
    IRStage(3, 72, 24, False, "relu", 1),
    IRStage(5, 72, 40, True, "relu", 2),       # -> 28
    IRStage(5, 120, 40, True, "relu", 1),
    IRStage(5, 120, 40, True, "relu", 1),
    IRStage(3, 240, 80, False, "hswish", 2),   # -> 14
    IRStage(3, 200, 80, False, "hswish", 1),
    IRStage(3, 184, 80, False, "hswish", 1),
    IRStage(3, 184, 80, False, "hswish", 1),
    IRStage(3, 480, 112, True, "hswish", 1),
    IRStage(3, 672, 112, True, "hswish", 1),
    IRStage(5, 672, 160, True, "hswish", 2),   # -> 7
    IRStage(5, 960, 160, True, "hswish", 1),
    IRStage(5, 960, 160, True, "hswish", 1),
)

MOBILENET_V3_SMALL: tuple[IRStage, ...] = (
    IRStage(3, 16, 16, True, "relu", 2),       # 112 -> 56
    IRStage(3, 72, 24, False, "relu", 2),      # -> 28
    IRStage(3, 88, 24, False, "relu", 1),
    IRStage(5, 96, 40, True, "hswish", 2),     # -> 14
    IRStage(5, 240, 40, True, "hswish", 1),
    IRStage(5, 240, 40, True, "hswish", 1),
    IRStage(5, 120, 48, True, "hswish", 1),
    IRStage(5, 144, 48, True, "hswish", 1),
    IRStage(5, 288, 96, True, "hswish", 2),    # -> 7
    IRStage(5, 576, 96, True, "hswish", 1),
    IRStage(5, 576, 96, True, "hswish", 1),
)


def _v3(name: str, stages: Sequence[IRStage], hidden: int, width: float, resolution: int,
        num_classes: int, in_channels: int) -> ArchSpec:
    _check_width(width)
    last = make_divisible(stages[-1].out_channels * width)
    head = HeadSpec(conv_channels=6 * last, conv_act="hswish", hidden_features=make_divisible(hidden * width),
                    hidden_act="hswish", dropout=0.2)
    return ir_network(f"{name}_{_width_tag(width)}", stages, width=width, stem_channels=16, stem_act="hswish",
                      head=head, resolution=resolution, num_classes=num_classes, in_channels=in_channels,
                      bn_eps=0.001, bn_momentum=0.01)


@register
def mobilenet_v3_large(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                       in_channels: int = 3) -> ArchSpec:
    """MobileNetV3-Large (Howard et al., 2019), torchvision's configuration."""
    return _v3("mobilenet_v3_large", MOBILENET_V3_LARGE, 1280, width, resolution, num_classes, in_channels)


@register
def mobilenet_v3_small(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                       in_channels: int = 3) -> ArchSpec:
    """MobileNetV3-Small (Howard et al., 2019), torchvision's configuration."""
    return _v3("mobilenet_v3_small", MOBILENET_V3_SMALL, 1024, width, resolution, num_classes, in_channels)


def get_spec(name: str, **kwargs) -> ArchSpec:
    """Zoo lookup with an error that lists the known names."""
    if name not in ZOO:
        raise SpecError(f"unknown model {name!r}: expected one of {', '.join(sorted(ZOO))} or a spec JSON file")
    return ZOO[name](**kwargs)
