"""Command-line choices read from nasprune's registries, imported only when argparse needs them.

Several registries live in modules that import torch (``nasprune.train``, ``nasprune.prune.importance``), and
building the parser must stay fast (``nasprune --help`` builds every command's parser). So an option names its
registry, ``choices=registry("nasprune.train:OPTIMIZERS")``, and gives a ``metavar`` (argparse would otherwise
list the choices while the parser is built); its help lists them with ``%(choices)s``, read when the help is
printed. ``tests/test_cli_choices.py`` ties every option to its registry.
"""

from __future__ import annotations

from collections.abc import Iterator

from nasprune.schema import Lazy

__all__ = ["RegistryChoices", "registry"]


class RegistryChoices:
    """The names a registry holds (a dict's keys, a tuple's items), as argparse ``choices`` or ``default``.

    ``str()`` joins them with ``sep`` (for a ``%(default)s`` that lists them, e.g. ``json,pt,torchscript,onnx``).
    """

    def __init__(self, ref: str, sep: str = ", ") -> None:
        self.lazy = Lazy(ref)
        self.sep = sep

    @property
    def ref(self) -> str:
        return self.lazy.ref

    def names(self) -> tuple[str, ...]:
        return tuple(self.lazy.value)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __str__(self) -> str:
        return self.sep.join(self.names())

    def __repr__(self) -> str:
        return f"registry({self.ref!r})"


def registry(ref: str, sep: str = ", ") -> RegistryChoices:
    """The names of the registry ``"module:ATTRIBUTE"`` (imported on first use)."""
    return RegistryChoices(ref, sep)
