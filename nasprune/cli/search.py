"""``nasprune search``: run (or resume) a budgeted joint architecture + pruning search."""

from __future__ import annotations

import argparse

from nasprune.cli.choices import registry
from nasprune.cli.common import (
    SEED_MAX,
    fraction,
    int_between,
    nonnegative_int,
    positive_float,
    positive_int,
    seed_int,
    threads_int,
)

WORKERS_MAX = 1000  # process i of machine K draws sampler seed seed + 1000 * (1000 * K + i): i < 1000 keeps them apart


def add_parser(sub) -> None:
    p = sub.add_parser(
        "search", help="budgeted joint search: width, downsampling schedule, SE placement, per-layer pruning",
        description="Run a study recipe (default: studies/quickstart.yaml). Re-running the same command resumes "
                    "the study up to its requested number of finished trials. Flags override the recipe.",
    )
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE",
                   help="study recipe YAML, or the name of one in studies/ (default: quickstart)")
    p.add_argument("--budget", type=positive_float, default=None, metavar="MFLOPS",
                   help="budget in MFLOPs (multiply-adds / 1e6 at the deployment resolution, 224 by default)")
    p.add_argument("--trials", type=positive_int, default=None, metavar="N", help="finished trials to reach")
    p.add_argument("--study", default=None, metavar="NAME", help="study name (default: the recipe's)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL (default: sqlite:///studies/<study>.db)")
    p.add_argument("--space", default=None, metavar="FILE", help="search space YAML (or a name in search_spaces/)")
    p.add_argument("--data", default=None, metavar="NAME", help="dataset (fashion-mnist, cifar10, synthetic, ...)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where the dataset's files are")
    p.add_argument("--sampler", choices=registry("nasprune.search.recipe:SAMPLERS"), default=None, metavar="NAME",
                   help="%(choices)s (default: the recipe's, tpe)")
    p.add_argument("--workers", type=int_between(1, WORKERS_MAX), default=1, metavar="N",
                   help="worker processes on this machine sharing the storage (default 1)")
    p.add_argument("--machine", type=nonnegative_int, default=0, metavar="K",
                   help="index of this machine when several run the same study (0, 1, 2, ...): gives each its own "
                        "sampler seed; training seeds, and so the shared parents, stay the same")
    p.add_argument("--threads", type=threads_int, default=1, metavar="N",
                   help="torch threads per worker (default 1: on a busy machine more threads per process are "
                        "much slower; use --workers to occupy more cores)")
    p.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="start no new trial after S seconds")
    p.add_argument("--seed", type=seed_int, default=None, help="sampler and training seed")
    p.add_argument("--with-baselines", action="store_true", default=None,
                   help="also train FD-MobileNet / MobileNet at standard widths that fit the budget")
    p.add_argument("--budget-floor", type=fraction, default=None, metavar="F",
                   help="scale every child into [F, 1] x budget before training (0 turns the band off; "
                        "default: the recipe's, 0.85)")
    p.add_argument("--no-seed-designs", dest="seed_designs", action="store_false", default=None,
                   help="do not start the study with the space's hand designs and their pruned versions")
    p.add_argument("--artifacts", default=None, metavar="DIR",
                   help="trained parents and children (default: beside the study's database)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_before_work(args: argparse.Namespace, recipe) -> None:
    """The storage URL keeps a study, the artifacts directory is writable and every worker's sampler seed is
    valid, before the study opens."""
    from nasprune.cli.common import check_output_dir
    from nasprune.errors import NaspruneError
    from nasprune.search.runner import artifacts_dir_for, storage_url
    from nasprune.storage import check_url

    check_url(storage_url(recipe))  # first: the default artifacts directory is derived from it
    where = "--artifacts" if args.artifacts else "artifacts" if recipe.artifacts else "default artifacts directory"
    check_output_dir(artifacts_dir_for(recipe, storage_url(recipe)), where)
    last = recipe.seed + 1000 * (1000 * args.machine + args.workers - 1) if isinstance(recipe.seed, int) else 0
    if last > SEED_MAX:
        raise NaspruneError(f"--machine {args.machine} with seed {recipe.seed} and {args.workers} workers gives "
                            f"sampler seed {last}: expected seed + 1000 * (1000 * machine + workers - 1) <= "
                            f"{SEED_MAX}: use a smaller --machine or --seed")


def run(args: argparse.Namespace) -> int:
    from nasprune.search.recipe import load_recipe
    from nasprune.search.record import records
    from nasprune.search.runner import RunOptions, format_pareto, pareto_table, run_search
    from nasprune.storage import redact_url

    recipe = load_recipe(args.recipe, budget_mflops=args.budget, trials=args.trials, study=args.study,
                         storage=args.storage, space=args.space, data_name=args.data, data_dir=args.data_dir,
                         sampler=args.sampler, seed=args.seed, with_baselines=args.with_baselines,
                         artifacts=args.artifacts, budget_floor=args.budget_floor,
                         seed_designs=args.seed_designs)
    _check_before_work(args, recipe)
    result = run_search(recipe, RunOptions(workers=args.workers, timeout=args.timeout, threads=args.threads,
                                           machine=args.machine, progress=not args.no_progress))
    study = result.study
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    trained = [r for r in records(study) if r.trained]
    distinct = len({r.network or f"trial {r.number}" for r in trained})
    print(f"study {recipe.study!r} ({redact_url(result.url)}): {states.count('COMPLETE')} complete "
          f"({len(trained)} within {recipe.budget_mflops:g} MFLOPs, {distinct} distinct networks), "
          f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed; {result.ran} finished in this run "
          f"({result.seconds:.0f} s)")
    print(f"Pareto front (validation accuracy vs MFLOPs at {recipe.deploy_resolution}x{recipe.deploy_resolution}):")
    print(format_pareto(pareto_table(study)))
    if result.rerank is not None:
        from nasprune.cli.rerank import describe_plan

        print(describe_plan(result.rerank))
    return 0
