"""One trial: sample, count before training, and only then train, prune, fine-tune and measure.

Order of work in :meth:`Objective.__call__`:

1. sample every dimension of the space and resolve the parent and the pruned child specs;
2. count the child's MACs with fvcore at the deployment resolution, record the design on the trial and set the
   constraint ``budget = mflops - budget_mflops`` (feasible when <= 0);
3. over budget: return at once, nothing trained (values ``(0.0, mflops[, inf or params])``);
4. the same network evaluated before in the study (:func:`network_key`: same child spec, parent mode and
   criterion): its result is returned and recorded as ``duplicate_of``, nothing is trained;
5. within budget: get the trained parent (a shared or per-trial one from
   :class:`~nasprune.search.parents.ParentCache`, or a one-shot one from
   :class:`~nasprune.search.oneshot.OneShotParents`), drop the SE modules the trial did not choose, cut it per
   layer (by the trial's criterion, or a one-shot parent's channel order), score it with the recipe's proxy (BN
   recalibration for a one-shot child or without fine-tuning, then ``finetune.epochs`` epochs with per-epoch
   accuracy recorded and early stop by :mod:`nasprune.search.early_stop`), measure params and CPU latency
   (PyTorch and onnxruntime), and upload the child's checkpoint to the study's artifact store.

Every user attribute goes through :func:`nasprune.search.record.write_attrs`, the writer of what
:class:`~nasprune.search.record.TrialRecord` reads (the ``docs/design.md`` table plus ``docs/search.md``'s).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasprune.search.band import band_design
from nasprune.search.constraints import record_constraints
from nasprune.search.oneshot import OneShotParents
from nasprune.search.parents import ParentCache
from nasprune.search.recipe import Recipe
from nasprune.search.record import TrialRecord, write_attrs
from nasprune.search.seeds import PRUNED_SEED_SUFFIX
from nasprune.search.space import Candidate, Design, drop_se, resolve

__all__ = ["Objective", "band_floor", "cut_child", "data_shape", "network_key", "proxy_name", "strip_se"]


def data_shape(recipe: Recipe, data=None) -> tuple[int, int]:
    """``(in_channels, num_classes)`` of the recipe's dataset, from the registry when possible (no loading)."""
    from nasprune.data import DATASETS, load_data

    if data is not None:
        return data.in_channels, data.num_classes
    info = DATASETS.get(recipe.data["name"])
    if info is not None:
        return len(info.normalization.mean), info.num_classes
    data = load_data(recipe.data_config())
    return data.in_channels, data.num_classes


def strip_se(model, blocks):
    """A copy of ``model`` without the SE modules of ``blocks`` (other weights kept exactly)."""
    from nasprune import build

    if not blocks:
        return model
    prefixes = tuple(f"blocks.{i}.se." for i in blocks)
    new = build(drop_se(model.spec, blocks))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    new.load_state_dict(state, strict=True)
    return new


def cut_child(parent, design: Design, criterion: str | None, *, se_ratio: float | None, seed: int = 0):
    """Cut ``design``'s child out of a trained ``parent`` (a network of ``design.parent``'s spec) with
    ``criterion``: drop the SE the trial dropped, score, keep per layer by the design's ratios, slice.
    ``criterion=None`` keeps every group's leading channels (a one-shot parent's channels are in importance
    order, :mod:`nasprune.search.oneshot`).

    The child's spec depends on the ratios only, so every criterion gives the same architecture (other channels).

    Raises:
        ValueError: ``parent`` is not a network of ``design.parent``'s spec.
        RuntimeError: the cut network is not the counted child (the counted network must be the trained one).
    """
    from nasprune.prune import compute_scores, prune_model, select_per_layer

    if parent.spec.hash != design.parent.hash:
        raise ValueError(f"parent {parent.spec.hash} is not the design's parent {design.parent.hash}")
    model = strip_se(parent, design.drop_se)
    if criterion is None:
        from nasprune.search.oneshot import prefix_scores

        scores = prefix_scores(model.spec)
    else:
        scores = compute_scores(model, criterion, seed=seed)
    keep = select_per_layer(scores, design.ratios)
    child = prune_model(model, keep, se_ratio=se_ratio)
    if child.spec.hash != design.child.hash:
        raise RuntimeError(f"pruned network {child.spec.hash} differs from the counted child {design.child.hash}")
    return child


class Objective:
    """The callable given to ``study.optimize``; one instance per worker process.

    Args:
        recipe: the study recipe.
        artifacts_dir: root of the ``FileSystemArtifactStore``; trained parents go to ``<it>/parents``.
        cache: use the parent cache (``False`` retrains every parent; for benchmarks).
        data: preloaded :class:`~nasprune.data.Data` (else loaded on the first trial that trains).
    """

    def __init__(self, recipe: Recipe, artifacts_dir: str | Path, *, cache: bool = True, data=None) -> None:
        from optuna.artifacts import FileSystemArtifactStore

        self.recipe = recipe
        self.artifacts_dir = Path(artifacts_dir)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.store = FileSystemArtifactStore(str(self.artifacts_dir))
        self.parents = ParentCache(self.artifacts_dir / "parents", recipe.parent_key(),
                                   seed=recipe.train_config("parent").seed, enabled=cache and recipe.parent_cache)
        self._data = data
        self.shape = data_shape(recipe, data)
        self.oneshot = OneShotParents(recipe, self.parents, self._train_parent, lambda: self.data, self.shape,
                                      enabled=cache and recipe.parent_cache)

    @property
    def data(self):
        if self._data is None:
            from nasprune.data import load_data

            self._data = load_data(self.recipe.data_config())
        return self._data

    # -- the trial --------------------------------------------------------------------------------
    def __call__(self, trial) -> tuple[float, ...]:
        start = time.perf_counter()
        recipe = self.recipe
        cand = recipe.space.sample(trial)
        given = TrialRecord.from_trial(trial)
        mode = "per_trial" if given.baseline else recipe.parent_mode
        in_channels, num_classes = self.shape
        design = resolve(recipe.space, cand, mode=mode, resolution=recipe.deploy_resolution,
                         num_classes=num_classes, in_channels=in_channels)
        asked = design.ratios
        floor = band_floor(recipe, given)
        design, fit = band_design(design, recipe.budget_mflops, floor,
                                  se_ratio=recipe.space.member(cand.family).se_ratio)
        cost = _count(design.child)
        mflops = cost.macs / 1e6
        network = network_key(mode, None if mode == "oneshot" else cand.criterion, design.child)
        write_attrs(trial, **_design_attrs(cand, design, cost, mode), network=network, ratios_asked=asked,
                    ratios_got=design.ratios, keep_scale=fit.scale)
        constraints = {"budget": mflops - recipe.budget_mflops}
        if floor > 0:  # its own key: a structure that cannot reach the band is told apart from one over budget
            constraints["band"] = floor * recipe.budget_mflops - mflops
        record_constraints(trial, constraints)
        over = max(constraints.values())
        write_attrs(trial, feasible=over <= 0)
        if over > 0:
            write_attrs(trial, seconds=time.perf_counter() - start)
            return self._values(0.0, mflops, cost.params, math.inf, math.inf)
        first = _first_evaluation(trial, network)
        if first is not None:  # the same network, evaluated before in this study: its result, nothing trained
            write_attrs(trial, duplicate_of=first.number, seconds=time.perf_counter() - start,
                        **{k: first.user_attrs[k] for k in DUPLICATE_COPIES if k in first.user_attrs})
            return tuple(first.values)
        child, val_acc = self._train_child(trial, cand, design, mode)
        latency = self._latency(child)
        latency_ort = self._latency_ort(trial, child)
        write_attrs(trial, val_acc=val_acc, latency_ms=latency,
                    artifact_id=self._upload(trial, child, val_acc, mflops), seconds=time.perf_counter() - start)
        return self._values(val_acc, mflops, cost.params, latency, latency_ort)

    def _values(self, acc: float, mflops: float, params: int, latency: float,
                latency_ort: float) -> tuple[float, ...]:
        third = {"latency_ms": latency, "latency_ort_ms": latency_ort, "params": float(params)}
        return (acc, mflops, *(third[name] for name in self.recipe.objectives[2:]))

    # -- training ---------------------------------------------------------------------------------
    def _train_parent(self, model) -> dict[str, Any]:
        from nasprune.train import fit

        result = fit(model, self.data, self.recipe.train_config("parent"))
        return {"val_acc": result.val_acc, "train_seconds": result.train_seconds, "epochs": result.epochs}

    def _parent(self, design: Design, mode: str):
        """The trained parent a trial's child is cut from, and whether it came from the cache."""
        if mode == "oneshot":
            parent, fresh = self.oneshot.get(design.parent)
        else:
            parent, fresh = self.parents.get(design.parent, self._train_parent)
        return parent, not fresh

    def _train_child(self, trial, cand: Candidate, design: Design, mode: str):
        t0 = time.perf_counter()
        parent, cached = self._parent(design, mode)
        write_attrs(trial, parent_cached=cached, parent_seconds=time.perf_counter() - t0)
        child = cut_child(parent, design, None if mode == "oneshot" else cand.criterion,
                          se_ratio=self.recipe.space.member(cand.family).se_ratio, seed=self.recipe.seed)
        t1 = time.perf_counter()
        val_acc = self._proxy(trial, child, mode)
        write_attrs(trial, finetune_seconds=time.perf_counter() - t1)
        return child, val_acc

    def _proxy(self, trial, child, mode: str) -> float:
        """The child's validation accuracy after the recipe's proxy: BN recalibration (a one-shot child, or no
        fine-tuning), then ``finetune.epochs`` epochs of fine-tuning."""
        from nasprune.train import evaluate, fit, recalibrate_bn

        r = self.recipe
        epochs = r.finetune_epochs
        if mode == "oneshot" or epochs < 1:
            recalibrate_bn(child, self.data, batches=r.recalibrate_batches, batch_size=r.recalibrate_batch_size,
                           seed=r.seed)
            write_attrs(trial, recalibrate_batches=r.recalibrate_batches)
        write_attrs(trial, proxy=proxy_name(mode, epochs))
        if epochs < 1:
            return evaluate(child, self.data, "val")
        result = fit(child, self.data, r.train_config("finetune"), epoch_callback=self._epoch_callback(trial))
        return result.val_acc

    def _epoch_callback(self, trial) -> Callable[[int, float], None]:
        import optuna

        from nasprune.search.early_stop import should_stop

        history: list[float] = []
        cfg = self.recipe.pruner

        def callback(epoch: int, val_acc: float) -> None:
            history.append(val_acc)
            write_attrs(trial, val_acc_history=list(history))
            if cfg.name == "none":
                return
            finished = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                      optuna.trial.TrialState.PRUNED))
            peers = [r.val_acc_history for r in map(TrialRecord.from_trial, finished) if r.val_acc_history]
            if should_stop(cfg, epoch, val_acc, peers):
                write_attrs(trial, val_acc=val_acc)
                raise optuna.TrialPruned(f"val acc {val_acc:.4f} at fine-tune epoch {epoch} ({cfg.name})")

        return callback

    # -- measuring and keeping ----------------------------------------------------------------------
    def _latency(self, child) -> float:
        from nasprune.cost import measure_latency

        lat = measure_latency(child, spec=child.spec, runs=self.recipe.latency_runs,
                              threads=self.recipe.latency_threads)
        return float(lat.median_ms)

    def _latency_ort(self, trial, child) -> float:
        """onnxruntime latency (ms), recorded as ``latency_ort_ms`` with what measuring it took.

        A network the ONNX exporter refuses fails the trial only where ``latency_ort_ms`` is an objective;
        otherwise the error is recorded as ``latency_ort_error`` and the figure is NaN.
        """
        from nasprune.cost import measure_latency_ort
        from nasprune.errors import NaspruneError

        t0 = time.perf_counter()
        try:
            lat = measure_latency_ort(child, spec=child.spec, runs=self.recipe.latency_runs,
                                      threads=self.recipe.latency_threads)
        except NaspruneError as exc:
            if "latency_ort_ms" in self.recipe.objectives:
                raise
            write_attrs(trial, latency_ort_error=str(exc))
            return math.nan
        write_attrs(trial, latency_ort_ms=float(lat.median_ms), latency_ort_seconds=time.perf_counter() - t0)
        return float(lat.median_ms)

    def _upload(self, trial, child, val_acc: float, mflops: float) -> str:
        from optuna.artifacts import upload_artifact

        from nasprune.checkpoint import save_checkpoint

        r = self.recipe
        metadata = {"role": "search_child", "study": r.study, "trial": trial.number, "val_acc": val_acc,
                    "mflops": mflops, "budget_mflops": r.budget_mflops, "data": dict(r.data),
                    "train_resolution": r.data["resolution"], "deploy_resolution": r.deploy_resolution,
                    **self.data.checkpoint_metadata()}  # data_config (absolute folder), preprocess, classes
        tmp_dir = self.artifacts_dir / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"trial{trial.number}-", suffix=".pt", dir=tmp_dir)
        os.close(fd)
        try:
            save_checkpoint(name, child.cpu(), metadata)
            return upload_artifact(artifact_store=self.store, file_path=name, study_or_trial=trial,
                                   mimetype="application/octet-stream")
        finally:
            Path(name).unlink(missing_ok=True)


def band_floor(recipe: Recipe, given: TrialRecord) -> float:
    """The band's floor for a trial: the recipe's, except 0 for a baseline and an unpruned seed design (a hand
    design is trained as it is, not scaled)."""
    if given.baseline or (given.seed_design and not given.seed_design.endswith(PRUNED_SEED_SUFFIX)):
        return 0.0
    return recipe.budget_floor


def _count(spec):
    """fvcore MACs at the spec's resolution, traced on one thread (tiny work; several threads only contend)."""
    from nasprune.cost import count
    from nasprune.threads import torch_threads

    with torch_threads(1):
        return count(spec, layers=False)


def _design_attrs(cand: Candidate, design: Design, cost, mode: str) -> dict[str, Any]:
    from nasprune.prune import layer_report

    child = design.child
    return {
        "macs": int(cost.macs), "params": int(cost.params), "mflops": cost.macs / 1e6,
        "family": cand.family, "schedule": cand.schedule, "downsample_layers": child.downsample_layers(),
        "width": float(cand.width),
        "se_blocks": list(cand.se_blocks), "se_count": child.se_count, "criterion": cand.criterion,
        "layers": layer_report(design.parent, child), "feature_sizes": child.feature_sizes(),
        "child_spec": child.to_dict(), "parent_hash": design.parent.hash, "parent_mode": mode,
    }


# what a duplicate takes from the trial that evaluated its network first
DUPLICATE_COPIES = ("val_acc", "latency_ms", "latency_ort_ms", "latency_ort_error", "artifact_id", "proxy",
                    "recalibrate_batches", "val_acc_history")


def network_key(mode: str, criterion: str | None, child) -> str:
    """What makes two trials the same network: the child's spec, the parent it is cut from (``mode``) and the
    criterion that chose its channels (none for a one-shot child: a prefix)."""
    return f"{mode}:{criterion or 'prefix'}:{child.hash}"


def proxy_name(mode: str, epochs: int) -> str:
    """The proxy a trial was scored with: its parent mode and ``recal`` or ``ft<epochs>`` (``oneshot+recal``,
    ``oneshot+ft1``, ``shared+ft4``, ``shared+recal``, ``per_trial+ft2``, ...)."""
    return f"{mode}+{'recal' if epochs < 1 else f'ft{epochs}'}"


def _first_evaluation(trial, network: str):
    """The earliest COMPLETE trial of the study that evaluated ``network`` itself (not as a duplicate)."""
    import optuna

    done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    same = [t for t in done if t.user_attrs.get("network") == network and "duplicate_of" not in t.user_attrs
            and t.user_attrs.get("val_acc") is not None]
    return min(same, key=lambda t: t.number) if same else None
