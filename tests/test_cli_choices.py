"""Every command-line choice list is its registry's names; building the parser imports none of them."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from nasprune.cli import build_parser, main
from nasprune.cli.choices import RegistryChoices


def _registries() -> dict[tuple[str, str], object]:
    from nasprune.export import FORMATS
    from nasprune.export._onnx import ONNX_EXPORTERS
    from nasprune.prune.importance import CRITERIA
    from nasprune.search.recipe import SAMPLERS
    from nasprune.train import DEVICES, OPTIMIZERS, SCHEDULES, SPLITS

    return {
        ("eval", "--split"): SPLITS, ("eval", "--device"): DEVICES,
        ("export", "--onnx-exporter"): ONNX_EXPORTERS, ("export", "--format"): FORMATS,
        ("prune", "--criterion"): CRITERIA, ("prune", "--optimizer"): OPTIMIZERS, ("prune", "--device"): DEVICES,
        ("search", "--sampler"): SAMPLERS,
        ("train", "--optimizer"): OPTIMIZERS, ("train", "--schedule"): SCHEDULES, ("train", "--device"): DEVICES,
    }


def _registry_options() -> dict[tuple[str, str], argparse.Action]:
    """(command, option) -> action, for every option whose choices or default come from a registry."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for command, parser in sub.choices.items():
        for action in parser._actions:
            assert not isinstance(action.choices, (tuple, list, set, dict)), \
                f"nasprune {command} {action.option_strings}: a literal choice list, not a registry"
            if isinstance(action.choices, RegistryChoices) or isinstance(action.default, RegistryChoices):
                found[(command, action.option_strings[-1])] = action
    return found


def test_every_choice_list_reads_its_registry():
    options, registries = _registry_options(), _registries()
    assert set(options) == set(registries)
    for key, action in options.items():
        names = action.choices if action.choices is not None else action.default
        assert tuple(names) == tuple(registries[key]), key
        if action.choices is not None:
            assert action.default is None or action.default in registries[key], key


def test_export_formats_default_is_every_registered_format():
    from nasprune.export import DEFAULT_FORMATS, parse_formats

    action = _registry_options()[("export", "--format")]
    assert parse_formats(str(action.default)) == DEFAULT_FORMATS


def test_searchs_samplers_and_pruners_are_the_runners():
    from nasprune.search.early_stop import STOP_RULES
    from nasprune.search.recipe import PRUNERS, SAMPLERS, load_recipe
    from nasprune.search.runner import make_sampler

    for name in SAMPLERS:  # every name the recipe and the CLI accept builds a sampler
        assert make_sampler(load_recipe(None, sampler=name)) is not None
    assert set(PRUNERS) == {"none", *STOP_RULES}


def test_help_lists_the_registry_and_a_bad_name_exits_2(capsys):
    from nasprune.prune.importance import CRITERIA

    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert ", ".join(CRITERIA) in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exc:
        main(["train", "fd_mobilenet", "--data", "synthetic", "--optimizer", "lamb"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'lamb' (choose from 'sgd', 'adam', 'adamw')" in err


def test_building_the_parser_imports_no_registry_behind_torch():
    code = ("import sys; from nasprune.cli import build_parser; build_parser().format_usage(); "
            "print(sorted(m for m in ('torch', 'nasprune.train', 'nasprune.prune.importance') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
