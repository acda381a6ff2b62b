"""Resuming a study: the stored recipe is the study's identity, and a resume may not change what a trial means.

A study keeps the recipe it was created with (user attr ``recipe`` = :meth:`Recipe.to_dict`). Resuming compares
that stored recipe with the given one **key by key** (:func:`recipe_differences`) and refuses every difference
except those in :data:`RESUME_FREE`: the few keys that say where or how far a study runs, never what a trial
trains or how it is measured. Everything else is refused, so a key added to :class:`Recipe` later is covered
without touching this module. Options that are not recipe keys (``--workers``, ``--threads``, ``--machine``,
``--timeout``, ``--no-progress``) never change a trial and are not compared.

A recipe stored by an older nasprune lacks the keys added since; :meth:`Recipe.from_dict` fills in their defaults,
which is what that study ran with. Partial mappings of another dataclass's fields (``parent``, ``finetune``) are
compared with that dataclass's defaults filled in, so ``lr: 0.1`` given and ``lr`` left at its default 0.1 are the
same recipe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from nasprune.errors import NaspruneError
from nasprune.schema import Lazy, dump, field_keys, rule_of, shown

__all__ = ["RESUME_FREE", "check_resume", "recipe_differences", "stored_recipe"]

# Dotted keys of Recipe.to_dict() that a resume may change (a key covers the keys under it), and why each leaves
# every trial's meaning alone. docs/search.md ("Resume") shows this table; tests/test_resume.py ties the two.
RESUME_FREE: dict[str, str] = {
    "trials": "the number of finished trials to reach: raising it is what a resume is for",
    "path": "the recipe file a run was started from: a copy elsewhere is the same recipe",
    "study": "the study's name: equal by construction (it is how the study was found)",
    "storage": "how the storage is reached: another spelling of the same database (a password is stored as ***)",
    "artifacts": "checked on its own: it must be the directory the study recorded, by any path to it",
    "space_path": "the file the space was read from: the space itself is compared by content (key space)",
    "data.data_dir": "where this machine keeps the dataset's files: the dataset is data.name",
    "parent.device": "where parents train (auto, cpu, cuda), like --threads: not what they learn",
    "finetune.device": "where children fine-tune, like --threads: not what they learn",
    "parent.cache": "whether a trained parent is reused: a cached parent is the one these settings train",
    "rerank": "the re-rank after the search: each rung result is stored with its own epochs, seeds and from, "
              "and the settings of the last re-rank with the study (rerank_config)",
}


def _free(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESUME_FREE)


def _diff(old: Any, new: Any, key: str, out: list[tuple[str, Any, Any]]) -> None:
    if _free(key):
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in dict.fromkeys([*old, *new]):
            _diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{key}.{k}" if key else str(k), out)
    elif old != new:
        out.append((key, old, new))


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _meaning(recipe) -> dict[str, Any]:
    """``recipe.to_dict()`` with every partial mapping of another dataclass's fields (``parent``, ``finetune``)
    completed with that dataclass's defaults (a TrainConfig's ``seed`` defaults to the recipe's, as in
    :meth:`Recipe.train_config`)."""
    from nasprune.search.recipe import TRAIN_CONFIG

    out = recipe.to_dict()
    keys = field_keys(type(recipe))
    for f in dataclasses.fields(recipe):
        r = rule_of(f)
        if r.fields is None or not r.partial:
            continue
        cls = r.fields.value if isinstance(r.fields, Lazy) else r.fields
        defaults = dump(cls())
        if r.fields is TRAIN_CONFIG:  # Recipe.train_config: an unset seed is the recipe's
            defaults["seed"] = recipe.seed
        top = keys[f.name]
        out[top] = {**defaults, **out.get(top, {})}
    return out


def recipe_differences(stored, given) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, given value)`` for every key outside :data:`RESUME_FREE` where the two
    :class:`~nasprune.search.recipe.Recipe` differ, in the order of the stored form."""
    out: list[tuple[str, Any, Any]] = []
    _diff(_meaning(stored), _meaning(given), "", out)
    return out


def stored_recipe(study):
    """The study's recipe (user attr ``recipe``) rebuilt, ``None`` for a study stored before recipes were."""
    from nasprune.schema import SchemaError
    from nasprune.search.recipe import Recipe

    raw = study.user_attrs.get("recipe")
    if raw is None:
        return None
    try:
        return Recipe.from_dict(raw, source=f"study {study.study_name!r} stored recipe")
    except SchemaError as exc:
        raise NaspruneError(f"{exc}: this nasprune cannot read the recipe the study was created with, so it cannot "
                            "tell whether resuming would change it; start a new study with --study NAME") from None


def check_resume(study, recipe, where: str) -> None:
    """Refuse to resume ``study`` with ``recipe`` when a key outside :data:`RESUME_FREE` differs from the stored
    recipe; the message names the first such key with both values, and how many others differ.

    Raises:
        NaspruneError: one line, naming the study, ``where`` (its storage, password hidden) and the key.
    """
    stored = stored_recipe(study)
    if stored is None:
        return
    differences = recipe_differences(stored, recipe)
    if not differences:
        return
    key, old, new = differences[0]
    more = ""
    if len(differences) > 1:
        rest = ", ".join(k for k, _, _ in differences[1:6]) + (", ..." if len(differences) > 6 else "")
        more = f" (and {len(differences) - 1} more: {rest})"
    raise NaspruneError(
        f"study {recipe.study!r} in {where} was created with {key}={shown(old)}, not {shown(new)}{more}: resuming "
        "must not change what its trials mean: resume it with the recipe it was created with, or start a new study "
        "with --study NAME")
