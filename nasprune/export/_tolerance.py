"""How close an exported file's outputs must be to the trained PyTorch model's.

Convention: for each input sample ``i`` (a row of logits) with PyTorch's outputs ``b_i`` and the exported file's
``a_i``, the check passes when every element satisfies ``|a - b| <= atol + rtol * max|b_i|``.

The relative part is scaled by the **largest logit of the sample**, not by each element's own ``|b|`` (as
``numpy.isclose`` does): float32 rounding reaches the logits through the last linear layer, so the error on
every logit of a sample is of the order of that sample's output scale, and a logit near zero has as large an
absolute error as the largest one. Scaled per element, a logit of 0.01 next to one of 7 would be allowed only
``atol`` and a correct export would be refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from nasprune.errors import NaspruneError

__all__ = ["EXPECTED", "Closeness", "Tolerance", "compare_outputs", "require_close", "worst"]

EXPECTED = "RTOL or RTOL,ATOL, numbers >= 0 (e.g. 1e-4,1e-5)"  # what --tolerance accepts


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Accepted difference ``|a - b| <= atol + rtol * max|b|`` (per sample; see the module docstring).

    Attributes:
        rtol: relative to the largest absolute output (logit) of the sample; ``>= 0``.
        atol: absolute floor, for outputs near zero; ``>= 0``. ``rtol = atol = 0`` asks for equal outputs.
    """

    rtol: float = 1e-4
    atol: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise NaspruneError(f"tolerance {name}={value!r} is invalid: expected a finite number >= 0")

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """``"RTOL"`` or ``"RTOL,ATOL"`` (``atol`` defaults to 1e-5), e.g. ``"1e-3"`` or ``"1e-3,1e-4"``."""
        parts = [p.strip() for p in text.split(",")]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if not 1 <= len(numbers) <= 2 or not all(math.isfinite(v) and v >= 0 for v in numbers):
            raise NaspruneError(f"--tolerance {text!r} is invalid: expected {EXPECTED}")
        return cls(rtol=numbers[0], atol=numbers[1]) if len(numbers) == 2 else cls(rtol=numbers[0])

    @property
    def flag(self) -> str:
        """The ``--tolerance`` value that asks for this tolerance."""
        return f"{self.rtol:g},{self.atol:g}"

    def __str__(self) -> str:
        return f"|a - b| <= {self.atol:g} + {self.rtol:g} x max|b|"


class Closeness(NamedTuple):
    """How far an exported file's outputs are from PyTorch's, over the samples compared.

    Attributes:
        max_abs_diff: largest ``|a - b|``.
        max_rel_diff: largest ``max|a_i - b_i| / max|b_i|`` over samples ``i`` (the error relative to the output's
            scale; ``inf`` where a sample's outputs are all zero but differ).
        worst: largest ``|a - b| / (atol + rtol * max|b_i|)``; the check passes when it is ``<= 1``.
        tolerance: the tolerance ``worst`` is measured against.
    """

    max_abs_diff: float
    max_rel_diff: float
    worst: float
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return self.worst <= 1.0  # False for NaN


def _ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator`` elementwise, with ``0 / 0 = 0`` and ``x / 0 = inf`` for ``x > 0``."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    return np.where(denominator > 0, out, np.where(numerator > 0, np.inf, np.where(numerator == 0, 0.0, np.nan)))


def compare_outputs(got: Any, expected: Any, tolerance: Tolerance) -> Closeness:
    """Compare ``got`` (the exported file's outputs) with ``expected`` (PyTorch's); first axis = samples.

    Arrays of equal shape (numpy or anything ``numpy.asarray`` takes); computed in float64. A NaN anywhere
    makes every figure NaN, so the check fails.
    """
    import numpy as np

    a, b = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        raise NaspruneError(f"output shape {a.shape} differs from PyTorch's {b.shape}")
    if a.size == 0:
        return Closeness(0.0, 0.0, 0.0, tolerance)
    rows = 1 if b.ndim < 2 else b.shape[0]
    diff, scale = np.abs(a - b).reshape(rows, -1), np.abs(b).reshape(rows, -1).max(axis=1, keepdims=True)
    if np.isnan(diff).any() or np.isnan(scale).any():
        return Closeness(math.nan, math.nan, math.nan, tolerance)
    rel = _ratio(diff.max(axis=1), scale[:, 0])
    allowed = tolerance.atol + tolerance.rtol * scale
    return Closeness(float(diff.max()), float(rel.max()), float(_ratio(diff, allowed).max()), tolerance)


def worst(closenesses: Sequence[Closeness]) -> Closeness:
    """The largest of each figure over several comparisons against one tolerance (e.g. one per input shape)."""
    tolerances = {c.tolerance for c in closenesses}
    if len(tolerances) != 1:
        raise ValueError(f"expected comparisons against one tolerance, got {len(tolerances)}")
    figures = ("max_abs_diff", "max_rel_diff", "worst")
    return Closeness(*(max(getattr(c, f) for c in closenesses) for f in figures), tolerances.pop())


def _loosened(closeness: Closeness) -> Tolerance:
    """The same ``atol`` with ``rtol`` the next power of ten above the measured relative difference.

    A failed check has ``max_rel_diff > rtol`` (a sample over ``atol + rtol * scale`` is over ``rtol * scale``),
    so the suggestion is always looser than ``tolerance``, and it passes.
    """
    rtol = 10.0 ** (math.floor(math.log10(closeness.max_rel_diff)) + 1)
    while rtol <= closeness.max_rel_diff:  # rounding of the power of ten
        rtol *= 10.0
    return Tolerance(rtol=rtol, atol=closeness.tolerance.atol)


def require_close(what: str, closeness: Closeness) -> None:
    """Raise a one-line :class:`NaspruneError` that says how to loosen the check when ``closeness`` fails."""
    if closeness.ok:
        return
    tolerance = closeness.tolerance
    found = (f"{what} differs from the trained PyTorch model by {closeness.max_abs_diff:.3g} (max abs), "
             f"{closeness.max_rel_diff:.3g} relative to the output's scale")
    if not math.isfinite(closeness.max_rel_diff):
        raise NaspruneError(f"{found}: no tolerance accepts that (non-finite or all-zero outputs); the exported "
                            "file does not reproduce the model")
    raise NaspruneError(f"{found}, beyond the tolerance {tolerance} (rtol {tolerance.rtol:g}, atol "
                        f"{tolerance.atol:g}): if that is acceptable, loosen it with "
                        f"--tolerance {_loosened(closeness).flag}")
