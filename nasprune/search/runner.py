"""Running a study: checks before starting, study creation and resume, worker processes, progress, Pareto table.

Re-running the same recipe resumes the study until it holds exactly ``recipe.trials`` finished trials (COMPLETE
or PRUNED; FAILED ones, e.g. interrupted by Ctrl-C, are not counted and get redone), through
:func:`nasprune.storage.optimize_until`. ``workers > 1`` starts that many processes on this machine, all sharing
the storage (see :mod:`nasprune.storage`) and the parent cache; more processes or machines may join the same
study with the same command and ``--storage``.

Once the study holds its ``recipe.trials`` finished trials, a recipe with a ``rerank`` section re-ranks the top
trials (:func:`nasprune.search.rerank.run_rerank`; every worker process takes part, and a resumed search finishes
a re-rank cut short).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasprune.errors import NaspruneError
from nasprune.search.recipe import OBJECTIVES, Recipe
from nasprune.search.seeds import enqueue_baselines, enqueue_seed_designs
from nasprune.search.space import FixedParams, resolve
from nasprune.threads import torch_threads

__all__ = ["RunOptions", "artifacts_dir_for", "enqueue_baselines", "finished_count", "make_sampler", "open_study",
           "pareto_table", "run_search", "smallest_network", "storage_url"]

FINISHED = ("COMPLETE", "PRUNED")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    workers: int = 1
    timeout: float | None = None
    progress: bool = True
    cache: bool = True          # the parent cache (False: retrain every parent; benchmarks)
    threads: int = 1            # torch threads per worker: one each is the fastest on a shared, loaded machine
    machine: int = 0            # index of this machine among several sharing the study (sampler seed stream)


# -- where things live ------------------------------------------------------------------------------------
def storage_url(recipe: Recipe) -> str:
    from nasprune.storage import default_storage_url

    return recipe.storage or default_storage_url(recipe.study)


def artifacts_dir_for(recipe: Recipe, url: str) -> Path:
    """``recipe.artifacts``, else ``<db file without .db>.artifacts`` beside a SQLite/journal file, else
    ``studies/<study>.artifacts``."""
    if recipe.artifacts:
        return Path(recipe.artifacts)
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            path = Path(url.removeprefix(prefix))
            return path.with_name(f"{path.stem}.artifacts")
    return Path("studies") / f"{recipe.study}.artifacts"


# -- checks before starting ---------------------------------------------------------------------------------
def smallest_network(recipe: Recipe, shape: tuple[int, int]) -> tuple[float, str]:
    """MFLOPs and schedule of the cheapest child the space can produce in the recipe's parent mode.

    The cheapest is the smallest width, every layer at the highest pruning ratio, no SE; for ``custom``
    schedules, every stride-2 block at the start of its window.
    """
    from nasprune.cost import count

    best = (math.inf, "")
    for family, space in recipe.space.members.items():
        prefix = recipe.space.param_prefix(family)
        for schedule in space.schedule_choices:
            params: dict[str, Any] = {"family": family, prefix + "schedule": schedule,
                                      prefix + "width": min(space.widths)}
            if schedule == "custom":
                params.update({f"{prefix}ds_{k}": lo for k, (lo, _) in enumerate(space.free.windows)})
            cand = recipe.space.sample(FixedParams(params, se=False, ratio=space.ratio_high))
            design = resolve(recipe.space, cand, mode=recipe.parent_mode, resolution=recipe.deploy_resolution,
                             in_channels=shape[0], num_classes=shape[1])
            best = min(best, (count(design.child, layers=False).macs / 1e6, f"{prefix}{schedule}"))
    return best


def check_memory_fits(recipe: Recipe, shape: tuple[int, int]) -> None:
    """The widest network of every schedule (SE on every block it may go on), counted at the deployment resolution,
    fits in memory: a huge ``deploy_resolution`` is refused here, not by the allocator inside a trial."""
    from nasprune.cost import check_memory

    for space in recipe.space.members.values():
        for schedule in space.schedule_choices:
            downsample = space.free.positions([lo for lo, _ in space.free.windows]) if schedule == "custom" else ()
            n_blocks = len(space.rows(schedule, downsample))
            widest = space.network(schedule, downsample, max(space.widths), space.se_allowed(n_blocks),
                                   resolution=recipe.deploy_resolution, in_channels=shape[0], num_classes=shape[1])
            check_memory(widest, recipe.deploy_resolution)


def check_budget(recipe: Recipe, shape: tuple[int, int]) -> None:
    check_memory_fits(recipe, shape)
    mflops, schedule = smallest_network(recipe, shape)
    if mflops > recipe.budget_mflops:
        s = recipe.space
        raise NaspruneError(
            f"budget {recipe.budget_mflops:g} MFLOPs is below the smallest network space {s.path} can produce: "
            f"{mflops:.2f} MFLOPs ({schedule} schedule, width {min(s.widths):g}, every layer pruned "
            f"{s.ratio_high:g}, no SE, {recipe.parent_mode} parents, {recipe.deploy_resolution}x"
            f"{recipe.deploy_resolution}): expected a budget >= {math.ceil(mflops * 100) / 100:g}")


# -- the study ------------------------------------------------------------------------------------------------
def make_sampler(recipe: Recipe, worker: int = 0):
    """The recipe's sampler, with its own seed per worker.

    ``worker`` is ``1000 * machine + process index``, so machines started with different ``--machine`` draw
    different random points while their training seeds (and hence the shared parents) stay the same. TPE's
    proposals on a nasprune space do not depend on the seed once it leaves its random start, so TPE and random
    search propose through :class:`~nasprune.search.distinct.DistinctSampler`: a point no trial holds yet.
    """
    import optuna

    from nasprune.search.distinct import DistinctSampler

    seed = recipe.seed + 1000 * worker
    samplers = {
        "tpe": lambda: DistinctSampler(optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=min(10, max(3, recipe.trials // 4))), seed, network_of(recipe)),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(6, recipe.trials // 4))),
        "random": lambda: DistinctSampler(optuna.samplers.RandomSampler(seed=seed), seed, network_of(recipe)),
    }
    return samplers[recipe.sampler]()


class _Given(FixedParams):
    """The parameters of a trial, the only value of a parameter with one, and an error for any other (they do
    not fix the network)."""

    def suggest_categorical(self, name: str, choices):
        return choices[0] if len(choices) == 1 and name not in self.params else self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        return low if low == high and name not in self.params else float(self.params[name])


def network_of(recipe: Recipe):
    """``(params, (in_channels, num_classes)) -> (criterion, child spec hash)``: the network a sampled trial with
    ``params`` trains (the band applied, as the objective does), ``None`` when ``params`` do not fix it."""
    from nasprune.search.band import band_design

    def network(params, shape):
        try:
            cand = recipe.space.sample(_Given(params))
            design = resolve(recipe.space, cand, mode=recipe.parent_mode, resolution=recipe.deploy_resolution,
                             in_channels=shape[0], num_classes=shape[1])
        except (KeyError, ValueError):  # a parameter missing, a mode resolve does not know
            return None
        design, _ = band_design(design, recipe.budget_mflops, recipe.budget_floor,
                                se_ratio=recipe.space.member(cand.family).se_ratio)
        return cand.criterion, design.child.hash

    return network


def _study_attrs(recipe: Recipe, artifacts: Path) -> dict[str, Any]:
    return {"budget_mflops": recipe.budget_mflops, "budget_floor": recipe.budget_floor,
            "objectives": list(recipe.objectives),
            "recipe": recipe.to_dict(), "space": recipe.space.to_dict(), "artifacts_dir": str(artifacts.resolve()),
            "deploy_resolution": recipe.deploy_resolution, "train_resolution": recipe.data["resolution"]}


def _check_compatible(study, recipe: Recipe, url: str, artifacts: Path | None = None) -> None:
    """Resuming keeps the study what it was (:mod:`nasprune.search.resume`) and its artifacts where they are."""
    from nasprune.search.resume import check_resume
    from nasprune.storage import redact_url

    old = study.user_attrs
    if "recipe" in old:
        check_resume(study, recipe, redact_url(url))
    else:  # a study stored before its recipe was: the attributes it does have
        for key, new in (("budget_mflops", recipe.budget_mflops), ("objectives", list(recipe.objectives)),
                         ("deploy_resolution", recipe.deploy_resolution)):
            if key in old and old[key] != new:
                raise NaspruneError(f"study {recipe.study!r} in {redact_url(url)} was created with "
                                    f"{key}={old[key]!r}, not {new!r}: resume it with the same recipe, or start a "
                                    "new one with --study NAME")
    recorded = old.get("artifacts_dir")
    if artifacts is not None and isinstance(recorded, str) and not _same_directory(recorded, artifacts):
        raise NaspruneError(
            f"study {recipe.study!r} in {redact_url(url)} keeps its trained networks in {recorded!r}, not in "
            f"{str(artifacts.resolve())!r}: resume it with --artifacts {recorded} (export and the parent cache read "
            "the recorded directory), or start a new study with --study NAME")


def _same_directory(recorded: str, artifacts: Path) -> bool:
    """``artifacts`` is the study's recorded ``artifacts_dir`` (an old relative record is not judged)."""
    path = Path(recorded)
    if not path.is_absolute() or path == artifacts.resolve():
        return True
    try:  # the same directory by another path (a symlinked mount)
        return path.exists() and artifacts.exists() and os.path.samefile(path, artifacts)
    except OSError:
        return False


def check_existing(recipe: Recipe, url: str, artifacts: Path) -> None:
    """If the study exists already, refuse a resume that would change it (:func:`_check_compatible`), reading the
    storage only: called before the data is loaded, so nothing starts and nothing is created."""
    import optuna

    from nasprune.storage import MissingStorage, open_storage

    try:
        storage = open_storage(url, heartbeat=False, create=False)
    except MissingStorage:
        return  # a new study in a new file
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=recipe.study, storage=storage)
    except KeyError:
        return
    _check_compatible(study, recipe, url, artifacts)


def open_study(recipe: Recipe, url: str, artifacts: Path, *, worker: int = 0, heartbeat: bool = True):
    """Create the study or load it to resume (refusing a different budget or objectives)."""
    import optuna

    from nasprune.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat=heartbeat)
    directions = [OBJECTIVES[name] for name in recipe.objectives]
    try:
        study = optuna.create_study(study_name=recipe.study, storage=storage, directions=directions,
                                    sampler=make_sampler(recipe, worker), load_if_exists=True)
    except ValueError as exc:  # existing study with other directions
        raise NaspruneError(f"study {recipe.study!r} in {url}: {exc}") from None
    _check_compatible(study, recipe, url, artifacts)
    if "budget_mflops" not in study.user_attrs:
        for key, value in _study_attrs(recipe, artifacts).items():
            study.set_user_attr(key, value)
    _name_objectives(study, recipe)
    return study


def _name_objectives(study, recipe: Recipe) -> None:
    """Optuna's metric names = the recipe's objectives (optuna-dashboard and Optuna's plots show them), on creation
    and on resuming a study created before nasprune set them."""
    import warnings

    import optuna

    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(recipe.objectives))


def finished_count(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


# -- progress and results --------------------------------------------------------------------------------------
def _study_front(study, recs) -> list:
    """The trained records on the front of the study's own objectives (its ``values``), by MFLOPs."""
    from nasprune.search.record import pareto_front, study_objectives

    return pareto_front(recs, study_objectives(study))


def pareto_table(study):
    """A pandas table of the Pareto front: trial, accuracy, MFLOPs, params, latency (PyTorch and onnxruntime),
    family, schedule, sampled width, the band's keep-scale, SE count, and the hand design a trial is (baseline
    or seed design)."""
    import pandas as pd

    from nasprune.search.record import records

    columns = ["trial", "val_acc", "mflops", "params", "latency_ms", "latency_ort_ms", "family", "schedule",
               "width", "keep_scale", "se_count", "design"]
    rows = [{"trial": r.number, "val_acc": r.val_acc, "mflops": r.mflops, "params": r.params,
             "latency_ms": r.latency_ms, "latency_ort_ms": r.latency_ort_ms, "family": r.family,
             "schedule": r.schedule, "width": r.width, "keep_scale": r.keep_scale, "se_count": r.se_count,
             "design": r.baseline or r.seed_design or ""}
            for r in _study_front(study, records(study))]
    return pd.DataFrame(rows, columns=columns)


def _shown(values, spec: str):
    return values.map(lambda v: "-" if v is None or v != v else format(v, spec))


def format_pareto(table) -> str:
    if table.empty:
        return "no feasible completed trial yet: nothing on the Pareto front"
    shown = table.assign(val_acc=_shown(table.val_acc * 100, ".2f") + "%", mflops=_shown(table.mflops, ".2f"),
                         params=_shown(table.params, ","), latency_ms=_shown(table.latency_ms, ".2f"),
                         latency_ort_ms=_shown(table.latency_ort_ms, ".2f"), width=_shown(table.width, "g"),
                         keep_scale=_shown(table.keep_scale, ".2f"), family=table.family.fillna("-"))
    shown = shown.rename(columns={"val_acc": "accuracy", "mflops": "MFLOPs", "latency_ms": "torch ms",
                                  "latency_ort_ms": "ort ms", "keep_scale": "scale", "se_count": "SE"})
    return shown.to_string(index=False)


class Progress:
    """A tqdm bar on stderr: finished trials, feasible ones, best accuracy under budget, Pareto size."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=min(initial, total), desc="trials", unit="trial", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True)
        self.done = initial

    def update(self, study) -> None:
        from nasprune.search.record import records

        recs = records(study)
        done = sum(1 for r in recs if r.state.name in FINISHED)
        trained = [r for r in recs if r.trained]
        best = max((r.val_acc for r in trained), default=None)
        self.bar.n = min(done, self.bar.total)
        self.bar.set_postfix_str(f"feasible {len(trained)}, best {'-' if best is None else f'{best:.2%}'}, "
                                 f"pareto {len(_study_front(study, trained))}")  # also redraws
        self.done = done

    def close(self) -> None:
        self.bar.close()


# -- running -----------------------------------------------------------------------------------------------------
class _QuietInterrupt(logging.Filter):
    """Drops Optuna's report of a trial stopped by Ctrl-C: the KeyboardInterrupt traceback and the
    "Trial N failed with value None." line after it (the trial is still marked FAIL; the CLI says
    ``nasprune: interrupted``). Other failures are reported as before."""

    def __init__(self) -> None:
        super().__init__()
        self._after_interrupt = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self._after_interrupt = True
            return False
        follows, self._after_interrupt = self._after_interrupt, False
        return not (follows and "failed with value" in record.getMessage())


def _quiet_interrupts() -> None:
    """Install :class:`_QuietInterrupt` on the logger of Optuna's trial loop (once per process)."""
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _QuietInterrupt) for f in logger.filters):
        logger.addFilter(_QuietInterrupt())


def _optimize(study, recipe: Recipe, url: str, artifacts: Path, timeout: float | None, cache: bool,
              callbacks: Sequence = (), data=None) -> None:
    """Run trials until the study holds exactly ``recipe.trials`` finished ones, however many workers share it
    (:func:`nasprune.storage.optimize_until`: admission under a study-wide lock, stale trials failed)."""
    import optuna

    from nasprune.search.objective import Objective
    from nasprune.storage import optimize_until
    from nasprune.train import TrainingDiverged

    objective = Objective(recipe, artifacts, cache=cache, data=data)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _quiet_interrupts()
    # the parameters are written while the admission lock is held: the next worker's sampler sees them
    optimize_until(study, objective, total=recipe.trials, url=url, timeout=timeout, catch=(TrainingDiverged,),
                   callbacks=callbacks, before_release=recipe.space.sample)


def _worker(recipe: Recipe, url: str, artifacts: str, index: int, threads: int, timeout: float | None,
            cache: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    study = open_study(recipe, url, Path(artifacts), worker=index)
    try:
        _optimize(study, recipe, url, Path(artifacts), timeout, cache)
        _rerank(study, recipe, url, Path(artifacts))
    except KeyboardInterrupt:  # the running trial is already marked FAIL by Optuna
        sys.exit(130)


def _run_workers(study, recipe: Recipe, url: str, artifacts: Path, opts: RunOptions, progress: Progress) -> None:
    ctx = multiprocessing.get_context("spawn")
    args = (recipe, url, str(artifacts))
    tail = (opts.threads, opts.timeout, opts.cache)
    first = 1000 * opts.machine
    procs = [ctx.Process(target=_worker, args=(*args, first + i, *tail)) for i in range(opts.workers)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            progress.update(study)
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        raise
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise NaspruneError(f"{len(bad)} of {opts.workers} worker processes failed (exit codes {bad}); "
                            "see their messages above")



@dataclass(frozen=True)
class SearchResult:
    study: Any
    url: str
    artifacts: Path
    ran: int          # trials finished by this run
    seconds: float
    rerank: Any = None  # the final nasprune.search.rerank.RerankPlan when the recipe re-ranks, else None


def _rerank(study, recipe: Recipe, url: str, artifacts: Path, data=None, log=None):
    """The recipe's re-rank stage, once the study holds all its trials (else ``None``: a resumed search does it;
    also ``None`` when no trial was trained: nothing to re-rank)."""
    if recipe.rerank is None or not recipe.rerank.enabled or finished_count(study) < recipe.trials:
        return None
    from nasprune.search.record import records
    from nasprune.search.rerank import run_rerank

    if not any(r.trained for r in records(study)):
        return None

    return run_rerank(study, recipe, recipe.rerank, url=url, artifacts=artifacts, data=data, log=log)


def prepare(recipe: Recipe):
    """Storage URL, artifacts directory and the loaded data; checks a resume, the data and the budget before anything
    starts."""
    from nasprune.data import load_data
    from nasprune.search.objective import data_shape

    url = storage_url(recipe)
    artifacts = artifacts_dir_for(recipe, url)
    check_existing(recipe, url, artifacts)  # a resume that changes the study: refused before the data loads
    data = load_data(recipe.data_config())  # missing or malformed data: an error now, not in a trial
    check_budget(recipe, data_shape(recipe, data))
    return url, artifacts, data


def run_search(recipe: Recipe, opts: RunOptions = RunOptions()) -> SearchResult:
    """Create or resume the study and run it until it holds ``recipe.trials`` finished trials."""
    url, artifacts, data = prepare(recipe)
    study = open_study(recipe, url, artifacts, worker=1000 * opts.machine)
    shape = (data.in_channels, data.num_classes)
    from nasprune.storage import study_mutex

    with study_mutex(recipe.study, url):  # machines starting together enqueue each hand design once
        if recipe.seed_designs:
            enqueue_seed_designs(study, recipe, shape)
        if recipe.with_baselines:
            enqueue_baselines(study, recipe, shape)
    before = finished_count(study)
    start = time.perf_counter()
    progress = Progress(recipe.trials, before, opts.progress)
    try:
        if before < recipe.trials:
            if opts.workers == 1:
                with torch_threads(opts.threads):
                    _optimize(study, recipe, url, artifacts, opts.timeout, opts.cache,
                              callbacks=[lambda s, t: progress.update(s)], data=data)
            else:
                _run_workers(study, recipe, url, artifacts, opts, progress)
        progress.update(study)
    finally:
        progress.close()
    ran = finished_count(study) - before
    log = (lambda line: print(line, file=sys.stderr)) if opts.progress else None
    with torch_threads(opts.threads):
        plan = _rerank(study, recipe, url, artifacts, data, log)
    return SearchResult(study, url, artifacts, ran, time.perf_counter() - start, plan)
