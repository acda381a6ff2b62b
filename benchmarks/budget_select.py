"""Which hand-designed network stands in each budget row, and how far MobileNetV3-Large is pruned to fit.

Everything here is decided from specs and MAC counts alone (no training), so it is fast and tested exactly
in ``tests/test_budget_table.py``. MACs follow nasprune's convention (conv + linear multiply-adds, BN folded)
for Fashion-MNIST: 1 input channel, 10 classes, counted at the deployment resolution with the library's
closed form (:func:`nasprune.cost.closed_form_macs`); the pruning fit is :func:`nasprune.prune.fit_global_ratio`.

Rules (stated in ``benchmarks/README.md``):

* **MobileNetV1**: among the standard widths (1, 0.75, 0.5, 0.25) and the resolutions of a ladder that keeps
  the deploy/training ratio of the whole table (224 <-> 32: deploy ``7 t`` for training side ``t`` = 32, 28,
  24, 20, 16, i.e. 224, 196, 168, 140, 112), the configuration with the **most MACs within the budget**
  (ties: the higher resolution). A point below 224 is trained and tested at its own, proportionally smaller,
  training resolution, so it sees what it would see deployed.
* **FD-MobileNet**: the paper's width for the budget (0.25x, 0.5x, 1x at 12, 40, 140 MFLOPs) at 224.
* **The >= 64 px table** (:func:`wide_hand_designed`) trains every network at the table's own side, so no
  ladder: MobileNetV1 at 224 and the **widest multiple of 1/32** within the budget (the standard widths are
  multiples of 1/32; 12 MFLOPs has none, so 0.125x stands in there, 140 MFLOPs gets 0.46875x instead of 0.25x);
  FD-MobileNet as above; MobileNetV3-Large and -Small at the **widest standard width** (1, 0.75, 0.5, 0.35) that
  fits at 224 (MobileNetV3-Large has none at 12 MFLOPs: its 0.35x has 33 M).
* **MobileNetV3-Large, pruned**: the widest width (1, 0.75, 0.5, 0.35) whose smallest expansion-only child
  (every prunable layer at the selection floor) fits the budget; then the **smallest global ratio** whose
  gamma x S selection fits, found by bisection over the number of pruned channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nasprune import get_spec
from nasprune.cost import closed_form_macs
from nasprune.errors import NaspruneError
from nasprune.prune import DEFAULT_FLOOR, smallest_child
from nasprune.spec import ArchSpec

__all__ = [
    "BUDGETS",
    "FD_WIDTHS",
    "V1_WIDTHS",
    "V3_WIDTHS",
    "Candidate",
    "deploy_ladder",
    "fd_candidate",
    "hand_designed",
    "mobilenet_v1_candidate",
    "mobilenet_v1_grid_candidate",
    "v3_candidates",
    "v3_parent_width",
    "wide_hand_designed",
]

BUDGETS: tuple[int, ...] = (12, 40, 140)       # MFLOPs at 224x224
DEPLOY_RESOLUTION = 224
NUM_CLASSES = 10                               # Fashion-MNIST
IN_CHANNELS = 1
V1_WIDTHS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
FD_WIDTHS: Mapping[int, float] = {12: 0.25, 40: 0.5, 140: 1.0}
V3_WIDTHS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35)
V1_GRID = 32                                   # the >= 64 px table's MobileNetV1 widths: multiples of 1/32
V3_MODELS: tuple[str, ...] = ("mobilenet_v3_large", "mobilenet_v3_small")
LADDER_STEP = 4                                 # training-side pixels between rungs of the V1 ladder
LADDER_MIN = 16


@dataclass(frozen=True)
class Candidate:
    """One hand-designed network of a budget row.

    Attributes:
        model: zoo name.
        width: width multiplier.
        spec: the spec at its deployment resolution (Fashion-MNIST's 1 channel, 10 classes).
        train_resolution: side of the images it is trained and tested on.
        macs: MACs at the deployment resolution.
    """

    model: str
    width: float
    spec: ArchSpec
    train_resolution: int
    macs: int

    @property
    def deploy_resolution(self) -> int:
        return self.spec.resolution


def fashion_spec(model: str, width: float, resolution: int = DEPLOY_RESOLUTION) -> ArchSpec:
    return get_spec(model, width=width, resolution=resolution, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)


def deploy_ladder(train_resolution: int, deploy: int = DEPLOY_RESOLUTION,
                  min_train: int = LADDER_MIN) -> list[tuple[int, int]]:
    """``(deploy, train)`` resolution pairs, highest first, keeping ``deploy / train`` of the table exact.

    Training sides step down by 4 from ``train_resolution`` to ``min_train`` (16; the >= 64 px table keeps its
    own side so that no MobileNetV1 ends on 1x1 maps); a rung is kept only when its deployment side
    ``deploy * t / train_resolution`` is a whole number.
    """
    rungs = []
    for t in range(train_resolution, min_train - 1, -LADDER_STEP):
        if deploy * t % train_resolution == 0:
            rungs.append((deploy * t // train_resolution, t))
    return rungs


def mobilenet_v1_candidate(budget_mflops: float, train_resolution: int, min_train: int = LADDER_MIN) -> Candidate:
    """MobileNetV1 with the most MACs within the budget over standard widths x the ladder (module doc)."""
    best: Candidate | None = None
    for deploy, train in deploy_ladder(train_resolution, min_train=min_train):
        for width in V1_WIDTHS:
            spec = fashion_spec("mobilenet_v1", width, deploy)
            macs = closed_form_macs(spec)
            if macs <= budget_mflops * 1e6 and (best is None or macs > best.macs):
                best = Candidate("mobilenet_v1", width, spec, train, macs)
    if best is None:
        smallest = deploy_ladder(train_resolution, min_train=min_train)[-1][0]
        raise NaspruneError(f"budget {budget_mflops} MFLOPs is below every MobileNetV1 of the ladder: expected at "
                            f"least {closed_form_macs(fashion_spec('mobilenet_v1', 0.25, smallest)) / 1e6:.2f}")
    return best


def fd_candidate(budget_mflops: int, train_resolution: int) -> Candidate:
    """FD-MobileNet at the paper's width for ``budget_mflops`` (one of :data:`FD_WIDTHS`), at 224."""
    if budget_mflops not in FD_WIDTHS:
        raise NaspruneError(f"budget {budget_mflops} has no FD-MobileNet width: expected one of {sorted(FD_WIDTHS)}")
    width = FD_WIDTHS[budget_mflops]
    spec = fashion_spec("fd_mobilenet", width)
    return Candidate("fd_mobilenet", width, spec, train_resolution, closed_form_macs(spec))


def v3_parent_width(budget_mflops: float, floor: int = DEFAULT_FLOOR) -> float:
    """The widest MobileNetV3-Large width whose smallest expansion-only child fits the budget."""
    for width in V3_WIDTHS:
        if closed_form_macs(smallest_child(fashion_spec("mobilenet_v3_large", width), floor)) <= budget_mflops * 1e6:
            return width
    raise NaspruneError(f"budget {budget_mflops} MFLOPs is below every pruned MobileNetV3-Large width "
                        f"{', '.join(map(str, V3_WIDTHS))}")


def hand_designed(budgets: Sequence[int], train_resolution: int,
                  min_train: int = LADDER_MIN) -> dict[int, list[Candidate]]:
    """MobileNetV1 and FD-MobileNet candidates per budget.

    With ``min_train`` above :data:`LADDER_MIN` (the >= 64 px table) a budget below every MobileNetV1 of the
    shortened ladder has no MobileNetV1 row; with the full ladder that is an error.
    """
    table: dict[int, list[Candidate]] = {}
    for b in budgets:
        try:
            v1 = [mobilenet_v1_candidate(b, train_resolution, min_train)]
        except NaspruneError:
            if min_train <= LADDER_MIN:
                raise
            v1 = []
        table[b] = [*v1, fd_candidate(b, train_resolution)]
    return table


def mobilenet_v1_grid_candidate(budget_mflops: float, train_resolution: int) -> Candidate:
    """MobileNetV1 at 224 and the widest multiple of 1/:data:`V1_GRID` within the budget (the >= 64 px table)."""
    for k in range(V1_GRID, 0, -1):
        spec = fashion_spec("mobilenet_v1", k / V1_GRID)
        if (macs := closed_form_macs(spec)) <= budget_mflops * 1e6:
            return Candidate("mobilenet_v1", k / V1_GRID, spec, train_resolution, macs)
    raise NaspruneError(f"budget {budget_mflops} MFLOPs is below every MobileNetV1 width k/{V1_GRID}: expected at "
                        f"least {closed_form_macs(fashion_spec('mobilenet_v1', 1 / V1_GRID)) / 1e6:.2f}")


def v3_candidates(budget_mflops: float, train_resolution: int) -> list[Candidate]:
    """MobileNetV3-Large and -Small, each at its widest standard width (:data:`V3_WIDTHS`) that fits at 224.

    BN momentum is 0.1 like every other network of the table (see :func:`budget_table.v3_parent`). A model with no
    width within the budget has no candidate.
    """
    found = []
    for model in V3_MODELS:
        for width in V3_WIDTHS:
            spec = fashion_spec(model, width).replace(bn_momentum=0.1)
            if (macs := closed_form_macs(spec)) <= budget_mflops * 1e6:
                found.append(Candidate(model, width, spec, train_resolution, macs))
                break
    return found


def wide_hand_designed(budgets: Sequence[int], train_resolution: int) -> dict[int, list[Candidate]]:
    """The >= 64 px table's hand designs per budget (module doc): MobileNetV1, FD-MobileNet, MobileNetV3-Large
    and -Small, every one at 224 and trained at ``train_resolution``."""
    return {b: [mobilenet_v1_grid_candidate(b, train_resolution), fd_candidate(b, train_resolution),
                *v3_candidates(b, train_resolution)] for b in budgets}
