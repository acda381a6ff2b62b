"""Structured pruning in three layers: importance (scores), selection (kept channels), surgery (a smaller net).

See ``docs/pruning.md``. The prunable units are channel groups (:mod:`nasprune.prune.groups` declares them and
the tensors that follow them): the expansion channels of inverted-residual blocks, and the paths between blocks
(``stem``, block outputs), a stage of residual blocks being one path.
"""

from nasprune.prune.budget import PruneFit, fit_global_ratio, kept_spec, smallest_child
from nasprune.prune.groups import (
    DEFAULT_SE_RATIO,
    ChannelGroup,
    Slice,
    apply_channels,
    channel_groups,
    layer_channels,
    prunable_layers,
    squeeze_channels,
)
from nasprune.prune.importance import CRITERIA, DEFAULT_CRITERION, compute_scores, filter_sparsity
from nasprune.prune.pipeline import PruneConfig, PruneResult, prune_by_config, run_pipeline
from nasprune.prune.selection import (
    DEFAULT_FLOOR,
    check_ratio,
    global_threshold,
    keep_count,
    select_global,
    select_per_layer,
)
from nasprune.prune.surgery import child_spec, layer_report, prune_model

__all__ = [
    "CRITERIA",
    "DEFAULT_CRITERION",
    "DEFAULT_FLOOR",
    "DEFAULT_SE_RATIO",
    "ChannelGroup",
    "PruneConfig",
    "PruneFit",
    "PruneResult",
    "Slice",
    "apply_channels",
    "channel_groups",
    "check_ratio",
    "child_spec",
    "compute_scores",
    "filter_sparsity",
    "fit_global_ratio",
    "global_threshold",
    "keep_count",
    "kept_spec",
    "layer_channels",
    "layer_report",
    "prunable_layers",
    "prune_by_config",
    "prune_model",
    "run_pipeline",
    "select_global",
    "select_per_layer",
    "smallest_child",
    "squeeze_channels",
]
