"""Fixtures the whole suite may use. Keep this file small: helpers of one area live beside its tests."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable

import pytest

from nasprune.spec import ACTIVATIONS, GATES, ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec


def _random_spec(seed: int) -> ArchSpec:
    """A small, valid, seeded spec mixing every feature: both block kinds, SE, k3/k5, all activations,
    expansion on and off, residuals, V1/V2/V3 heads, 1 or 3 input channels, odd resolutions."""
    rng = random.Random(seed)
    c = rng.choice([4, 8, 12])
    stem = StemSpec(out_channels=c, kernel_size=rng.choice([3, 5]), stride=rng.choice([1, 2]),
                    act=rng.choice(ACTIVATIONS))
    blocks, stride = [], stem.stride
    for _ in range(rng.randint(1, 5)):
        out = rng.choice([4, 8, 16, c, c])  # c again: more residual blocks
        common = dict(in_channels=c, out_channels=out, stride=rng.choice([1, 2]), kernel_size=rng.choice([3, 5]),
                      act=rng.choice(ACTIVATIONS), se_channels=rng.choice([0, 0, 4]), se_gate=rng.choice(GATES))
        if rng.random() < 0.4:
            blocks.append(DWSBlockSpec(**common))
        else:
            expand = rng.random() < 0.7
            blocks.append(IRBlockSpec(exp_channels=rng.choice([16, 24]) if expand else c, expand=expand, **common))
        stride *= common["stride"]
        c = out
    head = HeadSpec(conv_channels=rng.choice([0, 32]), conv_act=rng.choice(ACTIVATIONS),
                    hidden_features=rng.choice([0, 20]), hidden_act=rng.choice(ACTIVATIONS),
                    dropout=rng.choice([0.0, 0.2]))
    return ArchSpec(name=f"random_{seed}", in_channels=rng.choice([1, 3]),
                    resolution=max(stride, rng.choice([32, 33, 48])), num_classes=rng.choice([2, 10]),
                    stem=stem, blocks=tuple(blocks), head=head)


@pytest.fixture
def random_spec() -> Callable[[int], ArchSpec]:
    """``random_spec(seed)``: a small valid :class:`ArchSpec` (deterministic per seed)."""
    return _random_spec


@pytest.fixture
def tiny_spec() -> ArchSpec:
    """FD-MobileNet 0.25x for 32x32 grayscale input and 10 classes: the cheapest real network in the zoo."""
    from nasprune.zoo import fd_mobilenet

    return fd_mobilenet(width=0.25, resolution=32, num_classes=10, in_channels=1)


@pytest.fixture
def run_cli(tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(*args)`` runs ``python -m nasprune.cli ARGS`` in a fresh process (cwd: a temporary directory)."""

    def run(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        return subprocess.run([sys.executable, "-m", "nasprune.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=timeout)

    return run


@pytest.fixture
def torch_single_thread():
    """Run a test with one torch thread: counting and tiny forwards do not gain from more, and on a shared,
    loaded machine extra threads mostly spin (measured: 4x the CPU time for the spec tests)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
