"""Re-ranking the top trials before export: successive halving with more epochs at each rung.

A search trial's accuracy is a proxy (a few fine-tuning epochs of a child cut from a shared parent), so its
ranking is loose. The re-rank takes the ``top`` trained trials by proxy accuracy (:func:`proxy_order`, the rule
of ``export --trial best``) and trains each again for ``epochs`` epochs (rung 0); the better half (rounded up)
goes on to rung 1 with ``growth`` times the epochs, and so on down to one trial, the winner
(:func:`schedule`: top 4 -> rungs of 4, 2 and 1 trials at 2, 4 and 8 epochs by default). Each training starts
afresh from the trial's own checkpoint (``from: weights``, fine-tuned like the search's fine-tuning) or from a
fresh initialisation of its ``child_spec`` (``from: scratch``, trained like the parent without its sparsity
penalty); :data:`TRAINERS` holds both. Ranking uses the validation split, never the test split.

Where it lives (Optuna refuses to change a finished trial):

* study user attr ``rerank_config``: the :class:`~nasprune.search.recipe.RerankConfig` the last re-rank ran with
  (what ``export`` and ``report`` rebuild the plan from);
* study user attr ``rerank:<number>``: the trial's rung results, a list of
  :class:`~nasprune.search.record.RungResult` mappings (read through :attr:`TrialRecord.rerank`);
* study user attr ``rerank_claim:<number>:<rung>``: who trains that (trial, rung) now (``None`` once done);
* each rung's weights (the first seed's): a study artifact, its id in the rung result.

The plan (:func:`build_plan`) is recomputed from the records every time, so the stage resumes where it stopped:
a rung result already recorded (same rung, epochs, seeds and ``from``) is never recomputed, and a (trial, rung)
whose worker died is redone. Claims are taken and results written under the study-wide lock
(:func:`nasprune.storage.study_mutex`: an ``flock`` beside a SQLite file, a PostgreSQL advisory lock), so any
number of ``nasprune rerank`` processes on one study never train the same (trial, rung) twice and reach the
same result. A claim is stale (and taken over) when its heartbeat is older than the grace period
(``NASPRUNE_GRACE_PERIOD``, default 60 s; beats every ``NASPRUNE_HEARTBEAT_INTERVAL``, default 10 s) or its
process is gone from this host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from nasprune.errors import NaspruneError
from nasprune.search.recipe import Recipe, RerankConfig
from nasprune.search.record import RERANK_PREFIX, RungResult, TrialRecord

__all__ = ["CLAIM_PREFIX", "CONFIG_ATTR", "TRAINERS", "RerankPlan", "Rung", "RungSize", "build_plan", "evidence",
           "distinct_networks", "proxy_order", "run_rerank", "schedule", "stored_plan", "train_rung"]

CONFIG_ATTR = "rerank_config"
CLAIM_PREFIX = "rerank_claim:"


# -- the plan (pure: tested with equality asserts) ---------------------------------------------------------------
class RungSize(NamedTuple):
    """Rung ``index`` holds ``size`` trials, each trained for ``epochs`` epochs."""

    index: int
    size: int
    epochs: int


def schedule(config: RerankConfig, available: int) -> tuple[RungSize, ...]:
    """The rungs of a re-rank over ``min(config.top, available)`` trials: K, ceil(K/2), ..., 1."""
    size = min(config.top, available)
    rungs: list[RungSize] = []
    while size >= 1:
        rungs.append(RungSize(len(rungs), size, config.rung_epochs(len(rungs))))
        if size == 1:
            break
        size = math.ceil(size / 2)
    return tuple(rungs)


def proxy_order(recs: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trained records by proxy (search) accuracy, best first; ties: fewer MFLOPs, then the lower number."""
    trained = [r for r in recs if r.trained]
    return sorted(trained, key=lambda r: (-r.val_acc, r.mflops if r.mflops is not None else math.inf, r.number))


def _matching(record: TrialRecord, config: RerankConfig, rung: int) -> RungResult | None:
    """The trial's result at ``rung`` if it was trained as ``config`` trains that rung."""
    return next((r for r in record.rerank if r.rung == rung and r.epochs == config.rung_epochs(rung)
                 and r.seeds == config.seeds and r.source == config.source), None)


@dataclass(frozen=True)
class Rung:
    """One rung: its members (in proxy order) and the results recorded for them so far."""

    index: int
    epochs: int
    members: tuple[int, ...]
    results: Mapping[int, RungResult]

    @property
    def complete(self) -> bool:
        return all(n in self.results for n in self.members)

    def ranking(self, proxy_rank: Mapping[int, int]) -> tuple[int, ...]:
        """The members with results, best re-ranked accuracy first (ties: the better proxy rank)."""
        done = [n for n in self.members if n in self.results]
        return tuple(sorted(done, key=lambda n: (-self.results[n].val_acc, proxy_rank[n])))


@dataclass(frozen=True)
class RerankPlan:
    """Where a re-rank stands: the proxy order, the planned rung sizes and the rungs whose members are known.

    Attributes:
        config: the re-rank's settings.
        proxy: every trained record, in :func:`proxy_order`.
        sizes: the planned rungs (:func:`schedule`).
        rungs: rung 0 and each next rung whose predecessor is complete.
    """

    config: RerankConfig
    proxy: tuple[TrialRecord, ...]
    sizes: tuple[RungSize, ...]
    rungs: tuple[Rung, ...]
    proxy_rank: Mapping[int, int] = field(default_factory=dict)  # trial number -> 1-based proxy rank

    @property
    def complete(self) -> bool:
        return len(self.rungs) == len(self.sizes) and bool(self.rungs) and self.rungs[-1].complete

    @property
    def decided(self) -> Rung | None:
        """The deepest complete rung (the last one once the re-rank is finished), ``None`` before rung 0 is done."""
        done = [r for r in self.rungs if r.complete]
        return done[-1] if done else None

    @property
    def winner(self) -> int | None:
        """The best trial of :attr:`decided` (the last rung's survivor once complete)."""
        rung = self.decided
        return rung.ranking(self.proxy_rank)[0] if rung is not None else None

    def pending(self) -> tuple[Rung, tuple[int, ...]] | None:
        """The first incomplete rung and its members still without a result, ``None`` when complete."""
        rung = next((r for r in self.rungs if not r.complete), None)
        return None if rung is None else (rung, tuple(n for n in rung.members if n not in rung.results))

    def record(self, number: int) -> TrialRecord:
        return next(r for r in self.proxy if r.number == number)


def distinct_networks(ordered: Sequence[TrialRecord]) -> list[TrialRecord]:
    """``ordered`` with each network once: the first trial of every ``child_spec`` hash (a record without one is
    its own network)."""
    from nasprune.spec import ArchSpec

    seen: set[str] = set()
    out = []
    for r in ordered:
        key = ArchSpec.from_dict(r.child_spec).hash if r.child_spec else f"trial {r.number}"
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def build_plan(recs: Sequence[TrialRecord], config: RerankConfig) -> RerankPlan:
    """The re-rank of ``recs`` (records with :attr:`TrialRecord.rerank`) under ``config``, as far as it got.

    The candidates are the ``top`` of :func:`proxy_order`, each network once where ``config.distinct``
    (:func:`distinct_networks`): a rung that trains one network twice compares it with itself.
    """
    proxy = tuple(proxy_order(recs))
    by_number = {r.number: r for r in proxy}
    rank = {r.number: i + 1 for i, r in enumerate(proxy)}
    candidates = distinct_networks(proxy) if config.distinct else list(proxy)
    sizes = schedule(config, len(candidates))
    rungs: list[Rung] = []
    members = tuple(r.number for r in candidates[:sizes[0].size]) if sizes else ()
    for size in sizes:
        results = {n: res for n in members if (res := _matching(by_number[n], config, size.index)) is not None}
        rung = Rung(size.index, size.epochs, members, results)
        rungs.append(rung)
        if not rung.complete or size.index + 1 == len(sizes):
            break
        members = rung.ranking(rank)[:sizes[size.index + 1].size]
    return RerankPlan(config=config, proxy=proxy, sizes=sizes, rungs=tuple(rungs), proxy_rank=rank)


def stored_config(study_attrs: Mapping[str, Any]) -> RerankConfig | None:
    """The configuration the study's last re-rank ran with (study attr ``rerank_config``), ``None`` without one."""
    from nasprune.schema import SchemaError, read

    raw = study_attrs.get(CONFIG_ATTR)
    if raw is None:
        return None
    if isinstance(raw, Mapping) and "distinct" not in raw:
        raw = {**raw, "distinct": False}  # re-ranked before ``distinct`` existed: every trial was a candidate
    try:
        return read(RerankConfig, raw, file=f"study attribute {CONFIG_ATTR!r}")
    except SchemaError as exc:
        raise NaspruneError(str(exc)) from None


def stored_plan(study, recs: Sequence[TrialRecord] | None = None) -> RerankPlan | None:
    """The plan of the study's last re-rank (``None`` when it was never re-ranked); ``recs``: its records."""
    from nasprune.search.record import records

    config = stored_config(study.user_attrs)
    if config is None or not config.enabled:
        return None
    return build_plan(records(study) if recs is None else recs, config)


def _percent(x: float) -> str:
    return f"{100 * x:.2f} %"


def evidence(plan: RerankPlan, number: int) -> tuple[str, ...]:
    """Why ``number`` was chosen, one line per fact: its proxy rank, then each rung it was in."""
    record = plan.record(number)
    c = plan.config
    how = "fine-tuned from its search weights" if c.source == "weights" else "trained from scratch"
    lines = [f"proxy rank {plan.proxy_rank[number]} of {len(plan.proxy)} trained trials (search validation "
             f"accuracy {_percent(record.val_acc)}); re-ranked by successive halving over the top "
             f"{plan.sizes[0].size}, {how}, {c.seeds} seed{'s' if c.seeds != 1 else ''} per rung"]
    for rung in plan.rungs:
        if number not in rung.results:
            continue
        ranking = rung.ranking(plan.proxy_rank)
        res = rung.results[number]
        place = f"{ranking.index(number) + 1} of {len(rung.members)}" if rung.complete else "unfinished rung"
        lines.append(f"rung {rung.index} ({rung.epochs} epochs): validation accuracy {_percent(res.val_acc)}, "
                     f"place {place}")
    return tuple(lines)


# -- training one (trial, rung) ------------------------------------------------------------------------------------
@dataclass
class RerankContext:
    """What a re-rank's trainings share: the recipe, the study, its artifact store and the data (lazy)."""

    recipe: Recipe
    study: Any
    artifacts: Path
    preloaded: Any = None  # a loaded nasprune.data.Data, else loaded at the first use of .data

    @property
    def data(self):
        if self.preloaded is None:
            from nasprune.data import load_data

            self.preloaded = load_data(self.recipe.data_config())
        return self.preloaded

    @property
    def train_resolution(self) -> int:
        return int(self.recipe.data["resolution"])

    @property
    def store(self):
        from optuna.artifacts import FileSystemArtifactStore

        self.artifacts.mkdir(parents=True, exist_ok=True)
        return FileSystemArtifactStore(str(self.artifacts))


def _spec(record: TrialRecord):
    """The trial's ``child_spec`` (at the deployment resolution, as the search builds it: the networks end in
    global pooling, so they train at the data's resolution)."""
    from nasprune.spec import ArchSpec

    if record.child_spec is None:
        raise NaspruneError(f"trial {record.number} has no 'child_spec' attribute: it cannot be re-ranked")
    return ArchSpec.from_dict(record.child_spec)


def _trial_weights(record: TrialRecord, ctx: RerankContext):
    """The trial's own trained child (its checkpoint artifact), spec checked against its ``child_spec``."""
    from optuna.artifacts import download_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound

    from nasprune.checkpoint import load

    if not record.artifact_id:
        raise NaspruneError(f"trial {record.number} has no checkpoint artifact to fine-tune: re-rank with "
                            "'from: scratch' instead")
    spec = _spec(record)
    with tempfile.TemporaryDirectory(dir=ctx.artifacts) as tmp:
        path = Path(tmp) / "trial.pt"
        try:
            download_artifact(artifact_store=ctx.store, artifact_id=record.artifact_id, file_path=str(path))
        except (ArtifactNotFound, ValueError):
            raise NaspruneError(f"trial {record.number}'s checkpoint artifact {record.artifact_id} is not in "
                                f"{str(ctx.artifacts)!r}") from None
        model = load(path, map_location="cpu")
    if model.spec.replace(resolution=spec.resolution).hash != spec.hash:
        raise NaspruneError(f"trial {record.number}'s checkpoint holds spec {model.spec.hash}, not its child_spec")
    return model


def _from_weights(record: TrialRecord, epochs: int, seed: int, ctx: RerankContext):
    from nasprune.train import fit

    model = _trial_weights(record, ctx)
    config = dataclasses.replace(ctx.recipe.train_config("finetune"), epochs=epochs, seed=seed)
    return model, fit(model, ctx.data, config).val_acc


def _from_scratch(record: TrialRecord, epochs: int, seed: int, ctx: RerankContext):
    import torch

    from nasprune.builder import build
    from nasprune.train import fit

    torch.manual_seed(seed)
    model = build(_spec(record))
    config = dataclasses.replace(ctx.recipe.train_config("parent"), epochs=epochs, seed=seed, sparsity_lambda=0.0)
    return model, fit(model, ctx.data, config).val_acc


# from -> train(record, epochs, seed, ctx) -> (trained model, its validation accuracy)
TRAINERS: dict[str, Callable[[TrialRecord, int, int, RerankContext], tuple[Any, float]]] = {
    "weights": _from_weights, "scratch": _from_scratch,
}
BASE_SEED = {"weights": "finetune", "scratch": "parent"}  # whose TrainConfig seed the first training takes


def train_rung(record: TrialRecord, rung: int, config: RerankConfig, ctx: RerankContext) -> RungResult:
    """Train ``record`` for rung ``rung`` (``config.seeds`` times), keep the first seed's weights as a study
    artifact and return the result (not yet recorded)."""
    start = time.perf_counter()
    epochs = config.rung_epochs(rung)
    seed = ctx.recipe.train_config(BASE_SEED[config.source]).seed
    kept, accs = None, []
    for i in range(config.seeds):
        model, acc = TRAINERS[config.source](record, epochs, seed + i, ctx)
        accs.append(float(acc))
        kept = model if kept is None else kept
    artifact = _upload(kept, record, rung, epochs, accs[0], config, ctx)
    return RungResult(rung=rung, epochs=epochs, seeds=config.seeds, source=config.source,
                      val_acc=sum(accs) / len(accs), val_accs=tuple(accs), seconds=time.perf_counter() - start,
                      artifact_id=artifact)


def _upload(model, record: TrialRecord, rung: int, epochs: int, val_acc: float, config: RerankConfig,
            ctx: RerankContext) -> str:
    from optuna.artifacts import upload_artifact

    from nasprune.checkpoint import save_checkpoint

    r = ctx.recipe
    metadata = {"role": "rerank", "study": r.study, "trial": record.number, "rung": rung, "epochs": epochs,
                "from": config.source, "val_acc": val_acc, "data": dict(r.data),
                "train_resolution": ctx.train_resolution, "deploy_resolution": r.deploy_resolution}
    tmp_dir = ctx.artifacts / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"rerank{record.number}-{rung}-", suffix=".pt", dir=tmp_dir)
    os.close(fd)
    try:
        save_checkpoint(name, model.cpu(), metadata)
        return upload_artifact(artifact_store=ctx.store, file_path=name, study_or_trial=ctx.study,
                               mimetype="application/octet-stream")
    finally:
        Path(name).unlink(missing_ok=True)


# -- claims: one worker per (trial, rung) --------------------------------------------------------------------------
def _claim_key(number: int, rung: int) -> str:
    return f"{CLAIM_PREFIX}{number}:{rung}"


def _timing() -> tuple[int, int]:
    """Heartbeat interval and grace period (seconds), as for trials (``NASPRUNE_HEARTBEAT_INTERVAL`` / ``..._GRACE_
    PERIOD``)."""
    from nasprune.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, _env_seconds

    interval = _env_seconds("NASPRUNE_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL)
    return interval, _env_seconds("NASPRUNE_GRACE_PERIOD", max(DEFAULT_GRACE_PERIOD, 2 * interval))


def _process_gone(claim: Mapping[str, Any]) -> bool:
    if claim.get("host") != socket.gethostname() or claim.get("pid") == os.getpid():
        return False  # another machine, or another thread of this process: the heartbeat tells
    try:
        os.kill(int(claim["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, TypeError, ValueError, KeyError):
        return False
    return False


def _live(claim: Any, grace: int) -> bool:
    """A claim whose worker is still at work (recent heartbeat, process alive)."""
    if not isinstance(claim, Mapping):
        return False
    beat = claim.get("beat")
    fresh = isinstance(beat, (int, float)) and time.time() - beat <= grace
    return fresh and not _process_gone(claim)


class _Worker:
    """This process's identity in claims, with a heartbeat thread for the claim it holds."""

    def __init__(self, study, url: str | None) -> None:
        self.study, self.url = study, url
        self.id = uuid.uuid4().hex
        self.interval, self.grace = _timing()

    def stamp(self) -> dict[str, Any]:
        return {"owner": self.id, "host": socket.gethostname(), "pid": os.getpid(), "beat": time.time()}

    def mutex(self):
        from nasprune.storage import study_mutex

        return study_mutex(self.study.study_name, self.url)

    def owns(self, key: str) -> bool:
        claim = self.study.user_attrs.get(key)
        return isinstance(claim, Mapping) and claim.get("owner") == self.id

    def release(self, key: str) -> None:
        with self.mutex():
            if self.owns(key):
                self.study.set_user_attr(key, None)

    @contextlib.contextmanager
    def heartbeat(self, key: str):
        """Refresh the claim ``key`` every interval while the block runs; release it if the block fails."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.interval):
                with self.mutex():
                    if self.owns(key):
                        self.study.set_user_attr(key, self.stamp())

        thread = threading.Thread(target=beat, name=f"rerank-heartbeat-{key}", daemon=True)
        thread.start()
        try:
            yield
        except BaseException:
            stop.set()
            thread.join()
            self.release(key)  # a rung in progress when it failed (or Ctrl-C) is redone by the next worker
            raise
        stop.set()
        thread.join()


def _claim_next(plan: RerankPlan, worker: _Worker) -> tuple[int, int] | None:
    """Claim a (trial, rung) of the first incomplete rung that nobody is training (call under the mutex)."""
    pending = plan.pending()
    if pending is None:
        return None
    rung, numbers = pending
    attrs = worker.study.user_attrs
    for number in numbers:
        key = _claim_key(number, rung.index)
        if not _live(attrs.get(key), worker.grace):
            worker.study.set_user_attr(key, worker.stamp())
            return number, rung.index
    return None


def _record(worker: _Worker, number: int, result: RungResult) -> bool:
    """Append ``result`` to ``rerank:<number>`` unless that rung was already recorded the same way (by a worker
    that took over a claim it thought stale); replace an entry of the same rung trained otherwise."""
    with worker.mutex():
        key = f"{RERANK_PREFIX}{number}"
        stored = list(worker.study.user_attrs.get(key) or [])
        same = {"rung": result.rung, "epochs": result.epochs, "seeds": result.seeds, "from": result.source}
        if any(all(entry.get(k) == v for k, v in same.items()) for entry in stored):
            written = False
        else:
            stored = [e for e in stored if e.get("rung") != result.rung] + [result.to_dict()]
            worker.study.set_user_attr(key, stored)
            written = True
        claim = _claim_key(number, result.rung)
        if worker.owns(claim):
            worker.study.set_user_attr(claim, None)
    return written


# -- the stage -------------------------------------------------------------------------------------------------------
def _plan_now(study, config: RerankConfig) -> RerankPlan:
    from nasprune.search.record import records

    return build_plan(records(study), config)


def _check_candidates(plan: RerankPlan, artifacts: Path) -> None:
    """Every trial of rung 0 (later rungs are among them) has what its trainer starts from, and every trial that
    may still train (the survivors so far) has its checkpoint in ``artifacts`` when trained from its weights:
    all before any training, so a missing checkpoint never stops a re-rank after a rung was trained."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.artifacts.exceptions import ArtifactNotFound

    need = "artifact_id" if plan.config.source == "weights" else "child_spec"
    lacking = [n for n in plan.rungs[0].members if getattr(plan.record(n), need) is None]
    if lacking:
        hint = "re-rank with 'from: scratch'" if need == "artifact_id" else "it was not written by 'nasprune search'"
        raise NaspruneError(f"trial {lacking[0]} of the top {len(plan.rungs[0].members)} has no {need!r} attribute to "
                            f"re-rank from ({hint})")
    if need != "artifact_id" or plan.complete:
        return
    store = FileSystemArtifactStore(str(artifacts))  # reads only: creates nothing
    for number in plan.rungs[-1].members:
        artifact = plan.record(number).artifact_id
        try:
            store.open_reader(artifact).close()
        except (ArtifactNotFound, ValueError, OSError):
            raise NaspruneError(f"trial {number}'s checkpoint artifact {artifact} is not in {str(artifacts)!r}, and "
                                f"trial {number} is among the top {len(plan.rungs[0].members)} to re-rank from their "
                                "weights: nothing was trained; restore the file, pass the study's --artifacts "
                                "directory, or re-rank with 'from: scratch'") from None


def run_rerank(study, recipe: Recipe, config: RerankConfig, *, url: str | None, artifacts: str | Path, data=None,
               log: Callable[[str], None] | None = None, poll: float = 2.0) -> RerankPlan:
    """Re-rank the study's top trials (module doc) until the plan is complete; returns the final plan.

    Any number of processes may call this on one study at once; each trains the (trial, rung) pairs nobody else
    is training and waits for the others at the end of a rung.

    Args:
        study: the study (its records are re-read before every claim).
        recipe: its recipe (data, training settings).
        config: the re-rank settings (recorded as study attr ``rerank_config``).
        url: the storage URL (keys the study-wide lock); ``None`` for an in-memory study.
        artifacts: the study's artifact store directory.
        data: preloaded :class:`~nasprune.data.Data` (else loaded at the first training).
        log: called with one line per finished (trial, rung).
        poll: seconds between looks while other workers finish a rung.

    Raises:
        NaspruneError: the re-rank is off (``top`` 0), or the study has no feasible trained trial.
    """
    from nasprune.schema import dump

    log = log or (lambda _line: None)
    if not config.enabled:
        raise NaspruneError("rerank top=0 is invalid here: expected a number of trials >= 1 to re-rank")
    plan = _plan_now(study, config)
    if not plan.proxy:
        done = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
        raise NaspruneError(f"study {study.study_name!r} has no feasible trained trial to re-rank ({done} complete): "
                            "run 'nasprune search' first")
    _check_candidates(plan, Path(artifacts))
    worker = _Worker(study, url)
    ctx = RerankContext(recipe=recipe, study=study, artifacts=Path(artifacts), preloaded=data)
    if study.user_attrs.get(CONFIG_ATTR) != dump(config):
        study.set_user_attr(CONFIG_ATTR, dump(config))
    while True:
        with worker.mutex():
            plan = _plan_now(study, config)
            job = None if plan.complete else _claim_next(plan, worker)
        if plan.complete:
            return plan
        if job is None:  # the rest of this rung is being trained elsewhere
            time.sleep(poll)
            continue
        number, rung = job
        with worker.heartbeat(_claim_key(number, rung)):
            result = train_rung(plan.record(number), rung, config, ctx)
        if _record(worker, number, result):
            log(f"re-rank rung {rung} ({result.epochs} epochs): trial {number} validation accuracy "
                f"{_percent(result.val_acc)} ({result.seconds:.0f} s)")
