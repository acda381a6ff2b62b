"""A trial's constraints, written so that both Optuna and optuna-dashboard read them.

Optuna 5's ``Trial.set_constraint(name, value)`` stores one trial system attribute per constraint,
``constraints:<name>``. optuna-dashboard (0.21) reads only the older list attribute ``constraints`` (the one
Optuna's ``constraints_func`` samplers write); without it every trial shows ``"constraints": []`` and an
over-budget trial looks like a feasible one at accuracy 0. :func:`record_constraints` writes both, and is the only
writer of a nasprune trial's constraints.

Optuna's ``trial.constraints`` then holds each value twice, under its name and under its list position
(``{"budget": v, "0": v}``); feasibility (every value ``<= 0``) and the ordering by total violation that Optuna's
samplers use are unchanged. :func:`named_constraints` gives the constraints by name only.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CONSTRAINTS_KEY", "named_constraints", "record_constraints"]

CONSTRAINTS_KEY = "constraints"  # optuna.study._constrained_optimization._CONSTRAINTS_KEY, optuna_dashboard's too
_PREFIX = f"{CONSTRAINTS_KEY}:"


def record_constraints(trial, constraints: Mapping[str, float]) -> None:
    """Record a running trial's constraints, once, in Optuna 5's named form and the dashboard's list form.

    Args:
        trial: a running :class:`optuna.trial.Trial`.
        constraints: name -> value; the trial is feasible when every value is ``<= 0``.
    """
    values = [float(v) for v in constraints.values()]
    for name, value in zip(constraints, values, strict=True):
        trial.set_constraint(name, value)
    trial.storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY, values)


def named_constraints(trial) -> dict[str, float]:
    """A trial's constraints by name (the dashboard's list copy left out).

    Args:
        trial: a :class:`optuna.trial.FrozenTrial`.

    Returns:
        The ``constraints:<name>`` values when the trial has any, else Optuna's ``trial.constraints`` (a trial
        with only the list form, e.g. written by a ``constraints_func`` sampler, names them ``"0"``, ``"1"``, ...).
    """
    named = {key[len(_PREFIX):]: value for key, value in trial.system_attrs.items() if key.startswith(_PREFIX)}
    return named or dict(trial.constraints)
