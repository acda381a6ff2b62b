"""Budgeted joint search over width, downsampling schedule, SE placement and per-layer pruning (Optuna).

* :mod:`~nasprune.search.space`: search space YAML -> candidates -> parent and child specs;
* :mod:`~nasprune.search.recipe`: study recipe YAML (data, budget, objectives, sampler, fidelity);
* :mod:`~nasprune.search.objective`: one trial (count before training; train, prune, fine-tune, measure);
* :mod:`~nasprune.search.parents`: the parent cache shared by workers;
* :mod:`~nasprune.search.early_stop`: early stopping of fine-tuning (median, successive halving);
* :mod:`~nasprune.search.runner`: study creation, resume, workers, progress and the Pareto table.

See ``docs/search.md``.
"""

from nasprune.search.recipe import Recipe, load_recipe, parse_recipe
from nasprune.search.runner import RunOptions, pareto_table, run_search
from nasprune.search.space import Candidate, Design, FixedParams, SearchSpace, load_space, parse_space, resolve

__all__ = [
    "Candidate",
    "Design",
    "FixedParams",
    "Recipe",
    "RunOptions",
    "SearchSpace",
    "load_recipe",
    "load_space",
    "pareto_table",
    "parse_recipe",
    "parse_space",
    "resolve",
    "run_search",
]
