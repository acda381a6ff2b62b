"""benchmarks/latency_rank.py: Kendall's tau-b against hand-counted pairs, and its summary of trial records."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from latency_rank import kendall_tau_b, rank_summary  # noqa: E402

from nasprune.search.record import TrialRecord  # noqa: E402


@pytest.mark.parametrize(("x", "y", "tau"), [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
    ([1, 2, 3], [1, 3, 2], 1 / 3),  # pairs (0,1) (0,2) agree, (1,2) does not
    ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(2 * 3)),  # one tie in x: 2 concordant of 3 pairs, tau-b's denominator
])
def test_kendall_tau_b_closed_form(x, y, tau):
    assert kendall_tau_b(x, y) == pytest.approx(tau)


def test_kendall_tau_b_of_a_constant_or_mismatched_sequence():
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3])) and math.isnan(kendall_tau_b([5], [6]))
    with pytest.raises(ValueError, match="expected equal lengths"):
        kendall_tau_b([1, 2], [1])


def test_rank_summary_reads_the_records():
    def record(n, pytorch, ort, ort_s=0.5, seconds=5.0):
        return TrialRecord(number=n, state=TrialState.COMPLETE, val_acc=0.5, latency_ms=pytorch, latency_ort_ms=ort,
                           latency_ort_seconds=ort_s, seconds=seconds)

    trained = [record(0, 8.0, 1.0), record(1, 4.0, 2.0, ort_s=0.7, seconds=7.0), record(2, 12.0, 3.0),
               record(3, 2.0, None)]  # trial 3: measured before onnxruntime was
    summary = rank_summary(trained)
    assert summary["trained_trials"] == 4 and summary["measured_both"] == 3
    assert summary["kendall_tau_b"] == pytest.approx(1 / 3)  # (0,1) disagree, (0,2) (1,2) agree
    assert summary["median_pytorch_over_ort"] == 4.0  # 8, 2, 4
    assert summary["ort_measurement_ms_median"] == 500.0 and summary["ort_measurement_ms_max"] == 700.0
    assert summary["ort_share_of_trial_median"] == pytest.approx(0.1)
