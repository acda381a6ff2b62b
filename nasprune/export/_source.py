"""Read what an export needs from a study: the trial's spec, resolutions and trained checkpoint."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasprune.errors import NaspruneError
from nasprune.spec import ArchSpec, SpecError

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from nasprune.builder import NasNet
    from nasprune.search.recipe import Recipe
    from nasprune.search.record import TrialRecord

__all__ = ["TrialSource", "artifacts_dir", "load_trained_model", "trial_source"]


@dataclass(frozen=True)
class TrialSource:
    """One trial of one study, with the facts an export reads from the study's attributes.

    ``spec`` is the trial's ``child_spec`` (deployment resolution: its MACs and params are the trial's), named
    after the trial (``STUDY_trialN``: a child's stored spec carries its parent's name, which names another
    network);
    ``train_resolution`` is the resolution the child's weights were trained and validated at. ``weights_id`` is
    the artifact to export instead of the trial's own checkpoint (a re-rank's weights), ``None`` for its own.
    """

    study_name: str
    storage_url: str
    trial: FrozenTrial
    spec: ArchSpec
    deploy_resolution: int
    train_resolution: int
    study_attrs: dict[str, Any] = field(default_factory=dict)
    weights_id: str | None = None

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def attrs(self) -> dict[str, Any]:
        """The raw user attributes; read them through :attr:`record`."""
        return self.trial.user_attrs

    @cached_property
    def record(self) -> TrialRecord:
        """The trial as :class:`~nasprune.search.record.TrialRecord` reads it."""
        from nasprune.search.record import TrialRecord

        return TrialRecord.from_trial(self.trial)

    @property
    def train_spec(self) -> ArchSpec:
        """The same network at the training resolution (what ``model.pt`` and ``model.onnx`` carry)."""
        return self.spec.replace(resolution=self.train_resolution)

    @cached_property
    def recipe(self) -> Recipe | None:
        """The study's recipe, rebuilt from user attr ``recipe`` by ``Recipe.from_dict``; ``None`` without one.

        Raises:
            NaspruneError: the stored recipe does not rebuild (naming the study, the key and the value).
        """
        from nasprune.search.recipe import Recipe

        stored = self.study_attrs.get("recipe")
        return None if stored is None else Recipe.from_dict(stored, source=f"study {self.study_name!r} recipe")


def _child_spec(study_name: str, trial: FrozenTrial) -> ArchSpec:
    from nasprune.search.record import TrialRecord

    raw = TrialRecord.from_trial(trial).child_spec
    if raw is None:
        raise NaspruneError(f"trial {trial.number} of study {study_name!r} has no 'child_spec' attribute: "
                            "it was not written by 'nasprune search'")
    try:
        return ArchSpec.from_dict(raw)
    except (SpecError, TypeError) as exc:
        raise NaspruneError(f"trial {trial.number} of study {study_name!r} has a malformed child_spec: {exc}") from None


def trial_source(study: Study, trial: FrozenTrial, storage_url: str, weights_id: str | None = None) -> TrialSource:
    """Collect the trial's spec and the study's resolutions (``deploy_resolution`` defaults to the spec's);
    ``weights_id``: the artifact holding the weights to export (default: the trial's ``artifact_id``)."""
    attrs = dict(study.user_attrs)
    spec = _child_spec(study.study_name, trial)
    deploy = int(attrs.get("deploy_resolution") or spec.resolution)
    spec = spec.replace(resolution=deploy, name=export_name(study.study_name, trial.number))
    train = int(attrs.get("train_resolution") or deploy)
    return TrialSource(study_name=study.study_name, storage_url=storage_url, trial=trial, spec=spec,
                       deploy_resolution=deploy, train_resolution=train, study_attrs=attrs, weights_id=weights_id)


def export_name(study_name: str, number: int) -> str:
    """The exported network's own name (``ArchSpec.hash`` ignores names, so every check still holds)."""
    return f"{study_name}_trial{number}"


def _sqlite_dir(storage_url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(storage_url[len(prefix):]).parent if storage_url.startswith(prefix) else None


def artifacts_dir(source: TrialSource, override: str | Path | None = None) -> Path | None:
    """Where the study's checkpoints live: ``override``, else the study's ``artifacts_dir`` attribute.

    A relative ``artifacts_dir`` is tried against the working directory, then against the directory of a
    SQLite storage file (so a study directory can be moved as a whole).
    """
    if override is not None:
        return Path(override)
    raw = source.study_attrs.get("artifacts_dir")
    if not raw:
        return None
    path = Path(raw)
    if path.is_absolute() or path.is_dir():
        return path
    db_dir = _sqlite_dir(source.storage_url)
    if db_dir is not None and (db_dir / path).is_dir():
        return db_dir / path
    if db_dir is not None and (db_dir / path.name).is_dir():
        return db_dir / path.name
    return path


def missing_weights(source: TrialSource, why: str, retrain: str) -> NaspruneError:
    return NaspruneError(
        f"trial {source.number} of study {source.study_name!r} has no trained weights ({why}): export its spec "
        f"alone with '--format json' and retrain it with '{retrain}'"
    )


def _fetch(source: TrialSource, store_dir: Path | None, dest: Path, retrain: str) -> Path:
    """Copy the trial's checkpoint artifact to ``dest``."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.artifacts.exceptions import ArtifactNotFound

    artifact_id = source.weights_id or source.record.artifact_id
    if not artifact_id:
        raise missing_weights(source, "no 'artifact_id' attribute", retrain)
    if store_dir is None:
        raise missing_weights(source, f"study has no 'artifacts_dir' attribute for artifact {artifact_id}", retrain)
    if not store_dir.is_dir():
        raise missing_weights(source, f"artifact directory {str(store_dir)!r} does not exist", retrain)
    try:
        with FileSystemArtifactStore(store_dir).open_reader(artifact_id) as reader, open(dest, "wb") as writer:
            shutil.copyfileobj(reader, writer)
    except (ArtifactNotFound, ValueError):
        raise missing_weights(source, f"artifact {artifact_id} not found in {str(store_dir)!r}", retrain) from None
    return dest


def load_trained_model(source: TrialSource, store_dir: Path | None, scratch: Path, retrain: str) -> NasNet:
    """The trial's trained child on CPU in eval mode, its ``spec`` at the training resolution.

    The checkpoint is loaded strictly; its spec must be the trial's ``child_spec`` (any resolution).
    """
    from nasprune.checkpoint import load

    path = _fetch(source, store_dir, scratch / f".trial-{source.number}.ckpt", retrain)
    try:
        model = load(path, map_location="cpu")
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    found = model.spec.replace(resolution=source.deploy_resolution)
    if found.hash != source.spec.hash:
        raise NaspruneError(
            f"trial {source.number}'s checkpoint (artifact {source.weights_id or source.record.artifact_id}) holds "
            f"spec {found.hash}, not the trial's child_spec {source.spec.hash}: the study is inconsistent"
        )
    model.spec = source.train_spec
    return model.eval().cpu()
