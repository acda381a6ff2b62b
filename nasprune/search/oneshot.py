"""One-shot parents: one trained network per (family, schedule) whose children are good without fine-tuning.

A ``shared`` parent is trained only as the full network, so the narrow slices the search cuts from it were
never trained, and ranking them needs a fine-tune per trial. A ``oneshot`` parent (``parent.mode: oneshot``) is
trained so that every child the space can produce works as it is cut (slimmable networks: US-Nets, AutoSlim,
BigNAS; OFA orders the channels once):

1. **The shared parent first**: the largest network of the schedule, sparse-trained by the recipe's ``parent``
   settings (the same cached file a ``shared`` study uses).
2. **Channels ordered once** by the space's criterion (:func:`order_channels`): every channel group is permuted so
   that its most important channel comes first. The permuted network computes exactly what the original does.
   A child is then a *prefix* of every group (:func:`~nasprune.search.objective.cut_child` with
   ``criterion=None``).
3. **Sandwich training** (:func:`train_oneshot`, ``oneshot.epochs`` epochs): each step trains the widest network
   on the labels, then the narrowest child and ``oneshot.children`` random children, each on the widest's
   predictions (*in-place distillation*, ``oneshot.distill``) or on the labels, and takes one optimiser step on
   the summed gradients. The children come from a pool (``oneshot.pool``) drawn from the space itself with the
   recipe's band and budget (:func:`child_pool`), plus the space's unpruned hand designs within the budget; SE is
   switched on and off per block as each child has it. A child is trained by *masking* (:func:`masked`): the
   parent's channels past the child's prefix are zeroed after every conv-BN-activation, SE squeeze units are
   kept as the surgery keeps them, and the SE a child drops is skipped. The masked parent computes what the cut
   child computes (``tests/test_search_oneshot.py`` proves it, as the surgery tests do for pruning).
4. **Per trial**: the child is cut exactly like a shared parent's (same spec, count and export), its BN statistics
   are recalibrated from ``recalibrate.batches`` training batches (BN running statistics are the only thing that
   changes; each child's differ from the parent's mixture) and it is scored on validation; ``finetune.epochs``
   may add fine-tuning (0 allowed).

The one-shot parent is cached beside the shared ones (``<artifacts>/parents/<spec hash>-<oneshot key>.pt``, under
the same file lock, so workers share it), and its training writes a resumable state after every epoch
(``<file>.partial.pt``): a crashed run continues from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasprune.schema import rule

__all__ = ["ChildMasks", "OneShotConfig", "OneShotParents", "child_masks", "child_pool", "masked", "order_channels",
           "prefix_scores", "train_oneshot"]


@dataclass(frozen=True, kw_only=True)
class OneShotConfig:
    """How a one-shot parent is trained after its shared parent (recipe key ``oneshot``)."""

    epochs: int = field(default=6, metadata=rule(low=1))         # sandwich epochs
    children: int = field(default=2, metadata=rule(low=0))       # random children per step (plus the narrowest)
    distill: bool = True                                          # children learn the widest's predictions
    lr: float = field(default=0.02, metadata=rule(low=0, low_open=True))
    batch_size: int = field(default=64, metadata=rule(low=1))
    pool: int = field(default=64, metadata=rule(low=1))           # children drawn from the space to train on

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "children": self.children, "distill": self.distill, "lr": self.lr,
                "batch_size": self.batch_size, "pool": self.pool}


# -- channel order ---------------------------------------------------------------------------------------------
def prefix_scores(spec) -> dict[str, Any]:
    """Scores that rank every group's channels by index (the first channel best): a one-shot parent's order."""
    import torch

    from nasprune.prune import layer_channels

    return {layer: -torch.arange(c, dtype=torch.float64) for layer, c in layer_channels(spec).items()}


def order_channels(model, criterion: str, *, seed: int = 0):
    """A copy of ``model`` whose channel groups are permuted so that ``criterion``'s best channel comes first.

    The permuted network computes exactly what ``model`` computes (each group's channels move together with
    everything they index, :mod:`nasprune.prune.groups`), so its prefixes are the criterion's choice.
    """
    import torch

    from nasprune.prune import compute_scores
    from nasprune.prune.surgery import permute_channels

    scores = compute_scores(model, criterion, seed=seed)
    order = {layer: torch.sort(s.double(), descending=True, stable=True).indices for layer, s in scores.items()}
    return permute_channels(model, order)


# -- masking a parent into a child ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildMasks:
    """A child of a one-shot parent as masks: how many leading channels each conv-BN-activation module keeps,
    the SE squeeze width per block where it narrows, and the blocks whose SE is off."""

    outputs: Mapping[str, int]
    squeeze: Mapping[int, tuple[int, int]]  # block -> (kept SE input channels, kept squeeze units)
    se_off: tuple[int, ...]


def child_masks(parent_spec, drop: Sequence[int], child_spec) -> ChildMasks:
    """The masks that make ``parent_spec``'s network compute ``child_spec``'s (its SE ``drop`` dropped, every group
    cut to the child's channels by prefix)."""
    from nasprune.prune import channel_groups, layer_channels

    kept = layer_channels(child_spec)
    outputs: dict[str, int] = {}
    for layer, group in channel_groups(parent_spec).items():
        if kept[layer] == group.channels:
            continue
        for piece in group.slices:
            module, _, part = piece.module.rpartition(".")
            if piece.dim == 0 and part in ("conv", "bn"):
                outputs[module] = kept[layer]
    squeeze = {i: (new.dw_channels, new.se_channels)
               for i, (old, new) in enumerate(zip(parent_spec.blocks, child_spec.blocks, strict=True))
               if new.has_se and new.se_channels != old.se_channels}  # as the surgery: only where the squeeze narrows
    return ChildMasks(outputs=outputs, squeeze=squeeze, se_off=tuple(drop))


def _prefix_mask(channels: int, kept: int, like):
    import torch

    mask = torch.zeros(channels, dtype=like.dtype, device=like.device)
    mask[:kept] = 1
    return mask


def _mask_output(kept: int):
    def hook(_module, _inputs, out):
        return out * _prefix_mask(out.shape[1], kept, out).view(1, -1, 1, 1)

    return hook


def _mask_squeeze(se, inputs: int, units: int):
    """Keep the squeeze units the surgery keeps: the ``units`` largest L1 rows of ``fc1`` over the kept inputs."""
    import torch

    from nasprune.prune.selection import top_indices

    def hook(_module, _inputs, out):
        weight = se.fc1.weight.detach()[:, :inputs].abs().flatten(1).sum(1).double().cpu()
        mask = torch.zeros(out.shape[1], dtype=out.dtype, device=out.device)
        mask[top_indices(weight, units).to(out.device)] = 1
        return out * mask.view(1, -1, 1, 1)

    return hook


def _skip(_module, inputs, _out):
    return inputs[0]


@contextlib.contextmanager
def masked(model, masks: ChildMasks) -> Iterator[None]:
    """Within the block, ``model`` (a one-shot parent) computes the child ``masks`` describes."""
    handles = [model.get_submodule(name).register_forward_hook(_mask_output(n)) for name, n in masks.outputs.items()]
    for i, (inputs, units) in masks.squeeze.items():
        se = model.get_submodule(f"blocks.{i}.se")
        handles.append(se.act.register_forward_hook(_mask_squeeze(se, inputs, units)))
    handles += [model.get_submodule(f"blocks.{i}.se").register_forward_hook(_skip) for i in masks.se_off]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# -- the children a parent is trained for -----------------------------------------------------------------------
class _RandomParams:
    """A :class:`~nasprune.search.space.ParamSource` drawing uniformly (``fixed`` values kept)."""

    def __init__(self, rng: random.Random, fixed: Mapping[str, Any]) -> None:
        self.rng, self.fixed = rng, dict(fixed)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.fixed[name] if name in self.fixed else self.rng.choice(list(choices))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        if step:
            return low + step * self.rng.randint(0, round((high - low) / step))
        return self.rng.uniform(low, high)


def _schedule_params(recipe, parent_spec, shape) -> dict[str, Any] | None:
    """The fixed parameters (family, schedule, free positions) whose shared parent is ``parent_spec``."""
    from nasprune.search.space import FixedParams, resolve

    space = recipe.space
    for family, member in space.members.items():
        prefix = space.param_prefix(family)
        for schedule in member.schedule_choices:
            fixed = {"family": family, f"{prefix}schedule": schedule}
            if schedule == "custom":  # the positions this parent was built with
                fixed.update({f"{prefix}ds_{k}": i for k, i in enumerate(parent_spec.downsample_layers())})
            design = resolve(space, space.sample(FixedParams(fixed)), mode="shared",
                             resolution=recipe.deploy_resolution, in_channels=shape[0], num_classes=shape[1])
            if design.parent.hash == parent_spec.hash:
                return fixed
    return None


def child_pool(recipe, parent_spec, shape: tuple[int, int], size: int, seed: int = 0) -> list:
    """Up to ``size`` distinct designs of ``parent_spec``'s schedule drawn from the recipe's space as the search
    draws them (band filled, within the budget), then the space's unpruned hand designs within the budget.

    A parent of a ``custom`` (free placement) schedule draws its children with the positions it was built for.
    """
    from nasprune.search.band import band_design
    from nasprune.search.seeds import hand_designs
    from nasprune.search.space import FixedParams, resolve

    space, limit = recipe.space, recipe.budget_mflops * 1e6
    fixed = _schedule_params(recipe, parent_spec, shape)
    rng, pool, seen = random.Random(seed), [], set()

    def add(params, floor: float) -> None:
        cand = space.sample(params)
        design = resolve(space, cand, mode="shared", resolution=recipe.deploy_resolution, in_channels=shape[0],
                         num_classes=shape[1])
        if design.parent.hash != parent_spec.hash:
            return
        design, fit = band_design(design, recipe.budget_mflops, floor,
                                  se_ratio=space.member(cand.family).se_ratio)
        if fit.macs <= limit and (floor == 0 or fit.reachable) and design.child.hash not in seen:
            seen.add(design.child.hash)
            pool.append(design)

    tries = 0
    while fixed is not None and len(pool) < size and tries < 4 * size:
        tries += 1
        add(_RandomParams(rng, fixed), recipe.budget_floor)
    for hand in hand_designs(recipe, shape):
        if hand.mflops <= recipe.budget_mflops:
            add(FixedParams(hand.params), 0.0)
    return pool


def narrowest(pool: Sequence) -> Any:
    """The pool's cheapest child (the sandwich's lower slice)."""
    from nasprune.cost import closed_form_macs

    return min(pool, key=lambda d: closed_form_macs(d.child))


# -- training ----------------------------------------------------------------------------------------------------
def _soft_cross_entropy(logits, target_probs):
    return -(target_probs * logits.log_softmax(1)).sum(1).mean()


def _save_state(path: Path, model, optimizer, scheduler, epoch: int, history: list) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history}, tmp)
    tmp.replace(path)


def train_oneshot(model, data, config, oneshot: OneShotConfig, pool: Sequence, *, resume: Path | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Sandwich-train ``model`` (an ordered one-shot parent) in place for the children of ``pool``.

    Args:
        model: the parent, channels ordered (:func:`order_channels`).
        data: the training data (``data.train``).
        config: a :class:`~nasprune.train.TrainConfig` for the optimiser, augmentation and device
            (``oneshot``'s ``lr``, ``batch_size`` and ``epochs`` replace its own).
        oneshot: the one-shot settings.
        pool: designs of ``model``'s spec (:func:`child_pool`); every step trains the narrowest and
            ``oneshot.children`` drawn at random.
        resume: a state file: written after every epoch, read (and training continued) where it exists.
        seed: batch order, augmentation and the children drawn.

    Returns:
        What the checkpoint records: ``oneshot_seconds``, ``oneshot_epochs``, ``history`` (loss per epoch).
    """
    import dataclasses

    import torch
    from torch import nn

    from nasprune.train import lone_batch, optimizer_and_schedule, resolve_device

    device = resolve_device(config.device)
    model.to(device)
    masks = [child_masks(model.spec, d.drop_se, d.child) for d in pool]
    lowest = narrowest(pool)
    low = child_masks(model.spec, lowest.drop_se, lowest.child)
    cfg = dataclasses.replace(config, lr=oneshot.lr, batch_size=oneshot.batch_size, epochs=oneshot.epochs,
                              sparsity_lambda=0.0)
    optimizer, scheduler = optimizer_and_schedule(model, cfg, len(data.train))
    start_epoch, history = 0, []
    if resume is not None and resume.is_file():
        state = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], state["history"]
    ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    t0 = time.perf_counter()
    model.to(memory_format=torch.channels_last)
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        rng = random.Random(seed * 1_000_003 + epoch)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        loss_sum, steps = 0.0, 0
        for images, labels in data.train.batches(cfg.batch_size, shuffle=True, augment=cfg.augment,
                                                 generator=generator, device=device):
            if lone_batch(labels, steps):
                continue
            optimizer.zero_grad(set_to_none=True)
            logits = model(images)
            first = ce(logits, labels)
            first.backward()
            loss = first.detach()
            teacher = logits.detach().softmax(1)
            for child in [low, *(rng.choice(masks) for _ in range(oneshot.children))]:
                with masked(model, child):
                    out = model(images)
                    part = _soft_cross_entropy(out, teacher) if oneshot.distill else ce(out, labels)
                part.backward()
                loss = loss + part.detach()
            if not math.isfinite(float(loss)):
                from nasprune.train import TrainingDiverged

                raise TrainingDiverged(f"one-shot training diverged: loss {float(loss)} at epoch {epoch + 1}; "
                                       "lower oneshot.lr")
            optimizer.step()
            scheduler.step()
            loss_sum, steps = loss_sum + float(loss), steps + 1
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(1, steps)})
        if resume is not None:
            _save_state(resume, model, optimizer, scheduler, epoch + 1, history)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return {"oneshot_seconds": time.perf_counter() - t0, "oneshot_epochs": cfg.epochs, "history": history}


# -- the cache ---------------------------------------------------------------------------------------------------
def oneshot_key(recipe) -> str:
    """Hash (16 hex) of what decides a one-shot parent besides its spec: the shared parent's key (data, training,
    and the parent's seed, which also seeds the one-shot phase), the one-shot settings, the criterion that orders
    the channels, and what the children are drawn from (space, budget, band, deployment resolution). Studies
    that differ only in the sampler or its seed (``parent.seed`` fixed) share their one-shot parents."""
    content = {"parent": recipe.parent_key(), "oneshot": recipe.oneshot.to_dict(), "space": recipe.space.to_dict(),
               "budget": recipe.budget_mflops, "floor": recipe.budget_floor, "deploy": recipe.deploy_resolution,
               "seed": recipe.train_config("parent").seed}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def order_criterion(space) -> str:
    """The criterion a one-shot parent's channels are ordered by: the space's one criterion (one per family)."""
    return space.criteria[0]


@dataclass
class OneShotParents:
    """One-shot parents on disk and in memory, built on the shared parents (:class:`ParentCache`)."""

    recipe: Any
    shared: Any          # the ParentCache of the shared parents
    train_shared: Any    # trains a shared parent in place (the Objective's)
    data: Any            # a callable returning the data (loaded lazily)
    shape: tuple[int, int]
    enabled: bool = True
    trained: int = 0
    _cache: Any = None

    def __post_init__(self) -> None:
        from nasprune.search.parents import ParentCache

        self._cache = ParentCache(Path(self.shared.root), oneshot_key(self.recipe), seed=self.shared.seed,
                                  enabled=self.enabled)

    def path(self, spec) -> Path:
        return self._cache.path(spec)

    def get(self, spec) -> tuple[Any, bool]:
        """The trained one-shot parent of ``spec`` and whether it was trained now."""
        model, fresh = self._cache.get(spec, self._train, build=lambda: self._ordered(spec))
        self.trained = self._cache.trained
        return model, fresh

    def _ordered(self, spec):
        import copy

        shared, _ = self.shared.get(spec, self.train_shared)
        criterion = order_criterion(self.recipe.space.member(_family(spec, self.recipe)))
        return order_channels(copy.deepcopy(shared), criterion, seed=self.recipe.train_config("parent").seed)

    def _train(self, model) -> dict[str, Any]:
        recipe = self.recipe
        seed = recipe.train_config("parent").seed
        pool = child_pool(recipe, model.spec, self.shape, recipe.oneshot.pool, seed=seed)
        if not pool:
            from nasprune.errors import NaspruneError

            raise NaspruneError(f"no child of {model.spec.name} fits the band of {recipe.budget_mflops:g} MFLOPs: "
                                "nothing to train the one-shot parent for")
        resume = self.path(model.spec).with_suffix(".partial.pt")
        meta = train_oneshot(model, self.data(), recipe.train_config("parent"), recipe.oneshot, pool,
                             resume=resume, seed=seed)
        resume.unlink(missing_ok=True)
        return {**meta, "pool": len(pool), "order": order_criterion(recipe.space.member(_family(model.spec, recipe)))}


def _family(spec, recipe) -> str:
    """The family of the recipe's space a parent belongs to (a block's kind is its family's name)."""
    return next(f for f, member in recipe.space.members.items() if member.family == spec.blocks[0].kind)
