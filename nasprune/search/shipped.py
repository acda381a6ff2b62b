"""Where a search space or a study recipe given by name is found: the working directory, then nasprune's own files.

The YAML files live once, at the top of the source tree (``search_spaces/``, ``studies/``), where users read and
edit them. ``pyproject.toml`` maps those folders to the sub-packages ``nasprune.search_spaces`` and
``nasprune.studies`` (package data ``*.yaml`` only, so the studies' databases beside them are never shipped): a
wheel carries the files, and an editable install reads the very same ones. Both are found with
:mod:`importlib.resources`; nasprune reads them from disk, so it must be installed unzipped (pip always does).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nasprune.errors import NaspruneError

__all__ = ["RECIPES", "SPACES", "Shelf"]


@dataclass(frozen=True, kw_only=True)
class Shelf:
    """One kind of YAML file that can be named instead of given by path.

    Attributes:
        what: the word for it in messages (``"space"``).
        folder: the folder looked in under the working directory (``"search_spaces"``).
        package: the sub-package holding the shipped files (``"nasprune.search_spaces"``).
    """

    what: str
    folder: str
    package: str

    def shipped(self) -> Path | None:
        """The folder of the shipped files; ``None`` if the package is missing (an install older than this file)."""
        try:
            root = importlib.resources.files(self.package)
        except ModuleNotFoundError:
            return None
        return root if isinstance(root, Path) and root.is_dir() else None

    def folders(self) -> list[Path]:
        """Where a bare name is looked for, in order: ``./<folder>``, then the shipped files."""
        return [Path.cwd() / self.folder, *filter(None, [self.shipped()])]

    def names(self) -> list[str]:
        """Every bare name that would be found (the stems of ``*.yaml`` in :meth:`folders`)."""
        return sorted({f.stem for d in self.folders() if d.is_dir() for f in d.glob("*.yaml")})

    def find(self, given: str | Path, paths: Sequence[Path]) -> Path:
        """The first existing file among ``paths``, then (``given`` a bare name) ``NAME.yaml`` in :meth:`folders`.

        Args:
            given: the name or path as the user wrote it (quoted in the message).
            paths: what ``given`` means as a path, in the order to try.

        Raises:
            NaspruneError: none exists; the message lists the files tried and the names that would be found.
        """
        p = Path(given)
        candidates = list(paths)
        if p.suffix == "" and len(p.parts) == 1:
            candidates += [d / f"{p}.yaml" for d in self.folders()]
        for c in candidates:
            if c.is_file():
                return c
        known = ", ".join(self.names()) or f"the files in {self.folder}/ (none found; nasprune's own are missing)"
        raise NaspruneError(f"{self.what} {str(given)!r} not found (tried {', '.join(map(str, candidates))}): "
                            f"expected a YAML file or one of {known}")


SPACES = Shelf(what="space", folder="search_spaces", package="nasprune.search_spaces")
RECIPES = Shelf(what="recipe", folder="studies", package="nasprune.studies")
