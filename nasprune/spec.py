"""Declarative architecture specs.

An :class:`ArchSpec` is plain, frozen data: every channel count is an explicit integer (width
multipliers and ``make_divisible`` are applied once, by the zoo or the search space, before a spec
exists). :func:`nasprune.build` turns a spec into a module; :func:`ArchSpec.to_json` and
:func:`ArchSpec.from_json` round-trip it without loss, and :attr:`ArchSpec.hash` keys caches.

Example, FD-MobileNet 0.25x as data (the first two blocks)::

    ArchSpec(
        name="fd_mobilenet_0.25",
        stem=StemSpec(out_channels=8, stride=2),                            # 224 -> 112
        blocks=(
            DWSBlockSpec(in_channels=8, out_channels=16, stride=2),         # 112 -> 56
            DWSBlockSpec(in_channels=16, out_channels=32, stride=2),        # 56 -> 28
            ...
        ),
        head=HeadSpec(),                                                    # pool + linear
    )
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "ACTIVATIONS",
    "GATES",
    "ArchSpec",
    "BlockSpec",
    "DWSBlockSpec",
    "HeadSpec",
    "IRBlockSpec",
    "SpecError",
    "StemSpec",
    "conv_out_size",
    "make_divisible",
]

ACTIVATIONS = ("relu", "relu6", "hswish")
GATES = ("hsigmoid", "sigmoid")
KERNELS = (3, 5)
STRIDES = (1, 2)
SPEC_VERSION = 1


class SpecError(ValueError):
    """An architecture spec is malformed; the message names the field, the value and what is allowed."""


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going more than 10 % below it.

    This is the rule of the MobileNetV2/V3 reference code: ``max(8, int(v + 4) // 8 * 8)``, plus one
    ``divisor`` if that falls below ``0.9 * v``.
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_out_size(size: int, kernel_size: int, stride: int) -> int:
    """Spatial output size of a conv with ``padding = kernel_size // 2`` (every conv here)."""
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // stride + 1


def _check_fraction(where: str, value: Any, low_open: bool, high_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0 < value if low_open else 0 <= value) and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise SpecError(f"{where}={value!r} is invalid: expected a number in {interval}")


def _as_float(obj: Any, *names: str) -> None:
    """Store integral values of float fields as floats, so ``0`` and ``0.0`` give the same JSON and hash."""
    for name in names:
        value = getattr(obj, name)
        if type(value) is int:
            object.__setattr__(obj, name, float(value))


def _check_int(where: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}={value!r} is invalid: expected an integer >= {minimum}")


def _check_choice(where: str, value: Any, allowed: tuple) -> None:
    # Compare types too: JSON ``true`` is not stride 1 and ``3.0`` is not kernel 3 (they would hash differently).
    if not any(type(value) is type(a) and value == a for a in allowed):
        choices = ", ".join(repr(a) for a in allowed)
        raise SpecError(f"{where}={value!r} is invalid: expected one of {choices}")


@dataclass(frozen=True, kw_only=True)
class StemSpec:
    """The first, standard conv: ``conv kxk (stride) -> BN -> act``."""

    out_channels: int
    kernel_size: int = 3
    stride: int = 2
    act: str = "relu"

    def validate(self, where: str = "stem") -> None:
        _check_int(f"{where}.out_channels", self.out_channels)
        _check_choice(f"{where}.kernel_size", self.kernel_size, KERNELS)
        _check_choice(f"{where}.stride", self.stride, STRIDES)
        _check_choice(f"{where}.act", self.act, ACTIVATIONS)


@dataclass(frozen=True, kw_only=True)
class BlockSpec:
    """Fields every block kind shares. Concrete kinds register themselves in ``BLOCK_KINDS``."""

    kind: ClassVar[str] = ""
    in_channels: int
    out_channels: int
    stride: int = 1
    kernel_size: int = 3
    act: str = "relu"
    se_channels: int = 0  # squeeze width of squeeze-and-excite after the depthwise conv; 0 = no SE
    se_gate: str = "hsigmoid"

    @property
    def dw_channels(self) -> int:
        """Channels of the depthwise conv (and of the SE that scales them)."""
        raise NotImplementedError

    @property
    def has_se(self) -> bool:
        return self.se_channels > 0

    def validate(self, where: str) -> None:
        _check_int(f"{where}.in_channels", self.in_channels)
        _check_int(f"{where}.out_channels", self.out_channels)
        _check_choice(f"{where}.stride", self.stride, STRIDES)
        _check_choice(f"{where}.kernel_size", self.kernel_size, KERNELS)
        _check_choice(f"{where}.act", self.act, ACTIVATIONS)
        _check_int(f"{where}.se_channels", self.se_channels, minimum=0)
        _check_choice(f"{where}.se_gate", self.se_gate, GATES)


@dataclass(frozen=True, kw_only=True)
class DWSBlockSpec(BlockSpec):
    """Depthwise-separable block (MobileNetV1 / FD-MobileNet).

    ``dw kxk (stride) -> BN -> act -> [SE] -> pw 1x1 -> BN -> act``. The optional SE sits after the
    depthwise conv, on ``in_channels`` channels, as in MobileNetV3.
    """

    kind: ClassVar[str] = "dws"

    @property
    def dw_channels(self) -> int:
        return self.in_channels


@dataclass(frozen=True, kw_only=True)
class IRBlockSpec(BlockSpec):
    """Inverted residual with linear bottleneck (MobileNetV2) or V3 ``bneck``.

    ``[pw 1x1 expand -> BN -> act] -> dw kxk (stride) -> BN -> act -> [SE] -> pw 1x1 project -> BN``
    plus the input when ``stride == 1`` and ``in_channels == out_channels``. ``expand=False`` (allowed
    only with ``exp_channels == in_channels``) skips the expansion conv, as torchvision does for t = 1.
    """

    kind: ClassVar[str] = "ir"
    exp_channels: int
    expand: bool = True

    @property
    def dw_channels(self) -> int:
        return self.exp_channels

    @property
    def use_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_int(f"{where}.exp_channels", self.exp_channels)
        _check_choice(f"{where}.expand", self.expand, (True, False))
        if not self.expand and self.exp_channels != self.in_channels:
            raise SpecError(
                f"{where}.exp_channels={self.exp_channels} is invalid with expand=false: "
                f"expected in_channels={self.in_channels}"
            )


BLOCK_KINDS: dict[str, type[BlockSpec]] = {cls.kind: cls for cls in (DWSBlockSpec, IRBlockSpec)}


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """Classifier head.

    V1 style (the defaults): global average pool -> dropout -> linear. V3 style: ``conv_channels > 0``
    adds a 1x1 conv -> BN -> ``conv_act`` before the pool, ``hidden_features > 0`` a hidden linear
    (with bias) -> ``hidden_act`` after it; V2 has the conv but no hidden linear.
    """

    conv_channels: int = 0
    conv_act: str = "relu"
    hidden_features: int = 0
    hidden_act: str = "hswish"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _as_float(self, "dropout")

    def validate(self, where: str = "head") -> None:
        _check_int(f"{where}.conv_channels", self.conv_channels, minimum=0)
        _check_choice(f"{where}.conv_act", self.conv_act, ACTIVATIONS)
        _check_int(f"{where}.hidden_features", self.hidden_features, minimum=0)
        _check_choice(f"{where}.hidden_act", self.hidden_act, ACTIVATIONS)
        _check_fraction(f"{where}.dropout", self.dropout, low_open=False)


@dataclass(frozen=True, kw_only=True)
class ArchSpec:
    """A whole network: stem, blocks, head, and what it is built for (input channels, resolution, classes)."""

    name: str = "custom"
    in_channels: int = 3
    resolution: int = 224
    num_classes: int = 1000
    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.blocks, Iterable) and not isinstance(self.blocks, (str, bytes, Mapping)):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        _as_float(self, "bn_eps", "bn_momentum")
        self.validate()

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first bad field."""
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"name={self.name!r} is invalid: expected a non-empty string")
        _check_int("in_channels", self.in_channels)
        _check_int("resolution", self.resolution)
        _check_int("num_classes", self.num_classes)
        if not isinstance(self.stem, StemSpec):
            raise SpecError(f"stem={self.stem!r} is invalid: expected a StemSpec")
        self.stem.validate()
        if not isinstance(self.blocks, tuple) or not self.blocks:
            raise SpecError(f"blocks={self.blocks!r} is invalid: expected a non-empty list of blocks")
        channels = self.stem.out_channels
        for i, block in enumerate(self.blocks):
            where = f"blocks[{i}]"
            if not isinstance(block, BlockSpec) or type(block) is BlockSpec:
                raise SpecError(f"{where}={block!r} is invalid: expected one of {sorted(BLOCK_KINDS)}")
            block.validate(where)
            if block.in_channels != channels:
                raise SpecError(
                    f"{where}.in_channels={block.in_channels} is invalid: expected {channels} "
                    "(the previous layer's out_channels)"
                )
            channels = block.out_channels
        if not isinstance(self.head, HeadSpec):
            raise SpecError(f"head={self.head!r} is invalid: expected a HeadSpec")
        self.head.validate()
        _check_fraction("bn_eps", self.bn_eps, low_open=True)
        _check_fraction("bn_momentum", self.bn_momentum, low_open=True)
        if self.resolution < self.total_stride:
            raise SpecError(
                f"resolution={self.resolution} is too small: this network downsamples "
                f"{self.total_stride}x, so it needs resolution >= {self.total_stride}"
            )

    # -- derived facts ----------------------------------------------------------------------------
    @property
    def total_stride(self) -> int:
        stride = self.stem.stride
        for block in self.blocks:
            stride *= block.stride
        return stride

    @property
    def out_channels(self) -> int:
        """Channels entering the head's pooling (or its 1x1 conv)."""
        return self.blocks[-1].out_channels

    def feature_sizes(self, resolution: int | None = None) -> list[int]:
        """Output side length of the stem and of every block, in order."""
        size = conv_out_size(resolution or self.resolution, self.stem.kernel_size, self.stem.stride)
        sizes = [size]
        for block in self.blocks:
            size = conv_out_size(size, block.kernel_size, block.stride)
            sizes.append(size)
        return sizes

    def downsample_layers(self) -> list[int]:
        """Indices of the blocks with stride 2 (the downsampling schedule)."""
        return [i for i, b in enumerate(self.blocks) if b.stride == 2]

    @property
    def se_count(self) -> int:
        return sum(1 for b in self.blocks if b.has_se)

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        blocks = []
        for block in self.blocks:
            blocks.append({"type": block.kind, **dataclasses.asdict(block)})
        return {
            "version": SPEC_VERSION,
            "name": self.name,
            "in_channels": self.in_channels,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "bn_eps": self.bn_eps,
            "bn_momentum": self.bn_momentum,
            "stem": dataclasses.asdict(self.stem),
            "blocks": blocks,
            "head": dataclasses.asdict(self.head),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        """Inverse of :meth:`to_dict`; raises :class:`SpecError` naming the first bad, unknown or missing key."""
        if not isinstance(data, Mapping):
            raise SpecError(f"spec={type(data).__name__} is invalid: expected a JSON object")
        data = dict(data)
        _check_keys(data, {f.name for f in dataclasses.fields(cls)} | {"version"}, {"stem", "blocks"}, "spec")
        version = data.pop("version", SPEC_VERSION)
        if type(version) is not int or version != SPEC_VERSION:
            raise SpecError(f"version={version!r} is invalid: expected {SPEC_VERSION}")
        raw_blocks = data.pop("blocks")
        if not isinstance(raw_blocks, list):
            raise SpecError(f"blocks={raw_blocks!r} is invalid: expected a list of block objects")
        stem = _from_fields(StemSpec, data.pop("stem"), "stem")
        blocks = tuple(_block_from_dict(raw, f"blocks[{i}]") for i, raw in enumerate(raw_blocks))
        head = _from_fields(HeadSpec, data.pop("head", {}), "head")
        return cls(stem=stem, blocks=blocks, head=head, **data)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        """Stable content hash (hex, 16 chars) of everything that determines the network; ignores ``name``."""
        content = self.to_dict()
        content.pop("name")
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_keys(raw: Mapping[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r} in {where}: expected keys among {sorted(allowed)}")
    missing = sorted(required - set(raw))
    if missing:
        key = missing[0] if where == "spec" else f"{where}.{missing[0]}"
        raise SpecError(f"{key} is missing: required keys are {sorted(required)}")


def _from_fields(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}={raw!r} is invalid: expected an object")
    fields = dataclasses.fields(cls)
    required = {f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    _check_keys(raw, {f.name for f in fields}, required, where)
    return cls(**raw)


def _block_from_dict(raw: Any, where: str) -> BlockSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}={raw!r} is invalid: expected an object")
    raw = dict(raw)
    kind = raw.pop("type", None)
    if kind not in BLOCK_KINDS:
        raise SpecError(f"{where}.type={kind!r} is invalid: expected one of {sorted(BLOCK_KINDS)}")
    return _from_fields(BLOCK_KINDS[kind], raw, where)
