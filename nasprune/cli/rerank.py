"""``nasprune rerank``: re-rank a study's top trials by successive halving (again, later, or after a crash)."""

from __future__ import annotations

import argparse

from nasprune.cli.common import positive_int, threads_int

HELP = "re-rank a study's top trials by successive halving with more epochs per rung (export --trial best uses it)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerank", help=HELP, description=HELP + ". The settings are the recipe's 'rerank' section "
                       "(its defaults where the recipe has none); a finished (trial, rung) is never retrained, so "
                       "re-running resumes, and several processes may share the work.")
    p.add_argument("--study", required=True, metavar="NAME", help="study name")
    p.add_argument("--storage", default=None, metavar="URL", help="storage URL (default: sqlite:///studies/NAME.db)")
    p.add_argument("--top", type=positive_int, default=None, metavar="K",
                   help="re-rank the K most accurate trained trials (default: the recipe's rerank.top, else 4)")
    p.add_argument("--artifacts", default=None, metavar="DIR",
                   help="artifact store directory (default: the study's artifacts_dir)")
    p.add_argument("--threads", type=threads_int, default=1, metavar="N", help="torch threads (default 1)")
    p.set_defaults(func=run)


def _setup(args: argparse.Namespace):
    """Study, recipe, settings, artifacts directory and data, all checked before any training."""
    import dataclasses
    from pathlib import Path

    from nasprune.cli.common import check_output_dir
    from nasprune.data import load_data
    from nasprune.errors import NaspruneError
    from nasprune.search.recipe import Recipe, RerankConfig
    from nasprune.search.record import records
    from nasprune.storage import default_storage_url, load_study

    url = args.storage or default_storage_url(args.study)
    study = load_study(args.study, url)
    stored = study.user_attrs.get("recipe")
    if stored is None:
        raise NaspruneError(f"study {args.study!r} has no stored recipe (user attr 'recipe'): it was not created by "
                            "'nasprune search', so there is nothing to retrain it with")
    recipe = Recipe.from_dict(stored, source=f"study {args.study!r} recipe")
    config = recipe.rerank or RerankConfig()
    top = args.top or (config.top if config.enabled else RerankConfig().top)
    config = dataclasses.replace(config, top=top)
    if not any(r.trained for r in records(study)):
        raise NaspruneError(f"study {args.study!r} has no feasible trained trial to re-rank: run 'nasprune search' "
                            "first")
    where = args.artifacts or study.user_attrs.get("artifacts_dir")
    if not where:
        raise NaspruneError(f"study {args.study!r} has no 'artifacts_dir' attribute: pass --artifacts DIR")
    artifacts = check_output_dir(Path(where), "--artifacts" if args.artifacts else "the study's artifacts_dir")
    return study, url, recipe, config, artifacts, load_data(recipe.data_config())


def describe_plan(plan) -> str:
    """The re-rank's rungs and winner, a few lines for the terminal."""
    c = plan.config
    lines = [f"re-rank of the top {plan.sizes[0].size} of {len(plan.proxy)} trained trials by proxy accuracy "
             f"(from {c.source}, {c.seeds} seed{'s' if c.seeds != 1 else ''}):"]
    for rung in plan.rungs:
        cells = [f"trial {n} {100 * rung.results[n].val_acc:.2f} %" for n in rung.ranking(plan.proxy_rank)]
        left = len(rung.members) - len(cells)
        lines.append(f"  rung {rung.index} ({rung.epochs} epochs): " + ", ".join(cells)
                     + (f" ({left} unfinished)" if left else ""))
    if plan.complete:
        lines.append(f"winner: trial {plan.winner} (proxy rank {plan.proxy_rank[plan.winner]}); "
                     "'nasprune export --trial best' exports it with its last rung's weights")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from nasprune.search.rerank import run_rerank
    from nasprune.threads import torch_threads

    study, url, recipe, config, artifacts, data = _setup(args)
    with torch_threads(args.threads):
        plan = run_rerank(study, recipe, config, url=url, artifacts=artifacts, data=data, log=print)
    print(describe_plan(plan))
    return 0
