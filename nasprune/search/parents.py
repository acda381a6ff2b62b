"""The parent cache: each trained parent is trained once per (spec, recipe) and shared by every worker.

A parent lives in ``<artifacts>/parents/<spec hash>-<recipe key>.pt`` (``save_checkpoint`` format). The
first worker that needs it takes the file's lock (:func:`nasprune.fsutil.file_lock`), trains and writes it
atomically; another worker needing the same parent blocks on the lock and then reads the finished file, so
no parent is trained twice and no half-written file is ever read. A crashed trainer releases the lock (the
kernel drops ``flock`` locks of dead processes) and leaves no file, so the next worker trains it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasprune.fsutil import file_lock
from nasprune.spec import ArchSpec

__all__ = ["ParentCache"]


@dataclass
class ParentCache:
    """Trained parents by spec, on disk under ``root`` and in this process's memory.

    Attributes:
        root: directory of the cache files.
        key: :meth:`Recipe.parent_key` (data and training recipe).
        seed: seeds the parent's initial weights, so a parent does not depend on what ran before it.
        enabled: ``False`` trains every parent afresh (for benchmarks).
        trained: how many parents this process trained (the rest came from the cache).
    """

    root: Path
    key: str
    seed: int = 0
    enabled: bool = True
    trained: int = 0
    _memory: dict[str, Any] = field(default_factory=dict)

    def path(self, spec: ArchSpec) -> Path:
        return Path(self.root) / f"{spec.hash}-{self.key}.pt"

    def get(self, spec: ArchSpec, train, build=None) -> tuple[Any, bool]:
        """The trained parent of ``spec`` and whether it was trained now.

        ``train(model) -> dict`` trains a freshly built model in place and returns checkpoint metadata;
        ``build() -> model`` makes the model it starts from (default: ``spec`` built with the cache's seed).
        The returned model must not be modified by the caller (it is shared between trials).
        """
        build = build or (lambda: self._build(spec))
        from nasprune.checkpoint import load, save_checkpoint

        if not self.enabled:
            model = build()
            train(model)
            self.trained += 1
            return model, True
        path = self.path(spec)
        if path.name in self._memory:
            return self._memory[path.name], False
        with file_lock(path):
            fresh = not path.is_file()
            if fresh:
                model = build()
                metadata = train(model)
                save_checkpoint(path, model, {"role": "parent", "recipe_key": self.key, **metadata})
                self.trained += 1
            model = load(path)
        self._memory[path.name] = model.eval()
        return model, fresh

    def _build(self, spec: ArchSpec):
        import torch

        from nasprune import build

        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return build(spec)
