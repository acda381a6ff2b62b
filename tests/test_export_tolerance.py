"""nasprune.export's output comparison: ``|a - b| <= atol + rtol * max|b|`` per sample, at its boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nasprune.errors import NaspruneError
from nasprune.export import Closeness, Tolerance, compare_outputs
from nasprune.export._tolerance import require_close, worst

EPS = 2.0**-20  # far above float64 rounding of the small binary fractions below, far below the margins


def test_the_small_logit_gets_the_allowance_of_the_samples_largest():
    tol = Tolerance(rtol=0.25, atol=0.5)  # allowance 0.5 + 0.25 * 4 = 1.5 for every logit of the sample
    expected = np.array([[4.0, 0.0, -1.0]])
    at_boundary = compare_outputs(np.array([[4.0, 1.5, -1.0]]), expected, tol)
    assert at_boundary == Closeness(max_abs_diff=1.5, max_rel_diff=1.5 / 4, worst=1.0, tolerance=tol)
    assert at_boundary.ok
    over = compare_outputs(np.array([[4.0, 1.5 + EPS, -1.0]]), expected, tol)
    assert over.worst == pytest.approx(1.0 + EPS / 1.5) and not over.ok
    # the largest logit itself: same allowance, either sign
    assert compare_outputs(np.array([[4.0 - 1.5, 0.0, -1.0]]), expected, tol).ok
    assert not compare_outputs(np.array([[4.0 + 1.5 + EPS, 0.0, -1.0]]), expected, tol).ok


def test_each_sample_is_scaled_by_its_own_largest_logit():
    tol = Tolerance(rtol=0.25, atol=0.5)
    expected = np.array([[4.0, 0.0], [0.5, -0.5]])  # allowances 1.5 and 0.5 + 0.125 = 0.625
    assert compare_outputs(expected + [[1.5, 0.0], [0.0, 0.625]], expected, tol).worst == 1.0
    second_over = compare_outputs(expected + [[0.0, 0.0], [0.625 + EPS, 0.0]], expected, tol)
    assert not second_over.ok and second_over.max_abs_diff == 0.625 + EPS
    assert second_over.max_rel_diff == pytest.approx((0.625 + EPS) / 0.5)


def test_figures_are_the_max_abs_and_the_max_relative_to_the_scale():
    got = np.array([[8.5, -2.0], [1.0, 0.75]], dtype=np.float32)
    expected = np.array([[8.0, -2.0], [1.0, 1.0]], dtype=np.float32)
    tol = Tolerance(rtol=0.5, atol=0.0)
    # row 0: 0.5 / 8 = 0.0625, allowance 4; row 1: 0.25 / 1 = 0.25, allowance 0.5
    assert compare_outputs(got, expected, tol) == Closeness(max_abs_diff=0.5, max_rel_diff=0.25, worst=0.5,
                                                            tolerance=tol)


def test_the_issue_12_case_passes_the_default_and_failed_the_old_absolute_check():
    expected = np.array([[7.0, -3.0, 0.02, -1.5]])
    got = expected + [[3.05e-4, -2.0e-4, 2.5e-4, 1.0e-4]]  # 0.000305 at logits up to 7: relative 4.4e-5
    c = compare_outputs(got, expected, Tolerance())
    assert c.max_abs_diff == pytest.approx(3.05e-4) and c.max_rel_diff == pytest.approx(3.05e-4 / 7)
    assert c.ok and not c.max_abs_diff <= 1e-4
    # numpy.isclose's per-element scaling would refuse the 0.02 logit (2.5e-4 > 1e-5 + 1e-4 * 0.02)
    assert not np.isclose(got, expected, rtol=1e-4, atol=1e-5).all()


def test_zero_outputs_and_zero_tolerance():
    zeros = np.zeros((2, 3))
    exact = Tolerance(rtol=0, atol=0)
    assert compare_outputs(zeros, zeros, exact) == Closeness(0.0, 0.0, 0.0, exact)
    assert compare_outputs(np.ones((2, 3)), np.ones((2, 3)), exact).ok
    off = compare_outputs(zeros + 1e-6, zeros, exact)
    assert off == Closeness(1e-6, math.inf, math.inf, exact) and not off.ok
    assert compare_outputs(zeros + 1e-6, zeros, Tolerance(rtol=0, atol=1e-6)).ok  # atol alone covers zero logits


def test_nan_fails_and_no_tolerance_is_suggested():
    got = np.array([[1.0, math.nan]])
    c = compare_outputs(got, np.array([[1.0, 2.0]]), Tolerance(rtol=1.0, atol=1.0))
    assert math.isnan(c.worst) and not c.ok
    with pytest.raises(NaspruneError, match=r"^model.ts differs .* by nan .*: no tolerance accepts that"):
        require_close("model.ts", c)


def test_shapes_must_match():
    with pytest.raises(NaspruneError, match=r"^output shape \(1, 4\) differs from PyTorch's \(1, 3\)$"):
        compare_outputs(np.zeros((1, 4)), np.zeros((1, 3)), Tolerance())


def test_the_error_says_how_to_loosen_it_and_that_suggestion_passes():
    expected = np.array([[7.0, 1.0]])
    got = expected + [[0.0, 3e-3]]  # relative 3e-3 / 7 = 4.3e-4 > 1e-4
    with pytest.raises(NaspruneError) as exc:
        require_close("model.onnx (onnxruntime)", compare_outputs(got, expected, Tolerance()))
    assert str(exc.value) == ("model.onnx (onnxruntime) differs from the trained PyTorch model by 0.003 (max abs), "
                              "0.000429 relative to the output's scale, beyond the tolerance "
                              "|a - b| <= 1e-05 + 0.0001 x max|b| (rtol 0.0001, atol 1e-05): if that is acceptable, "
                              "loosen it with --tolerance 0.001,1e-05")
    require_close("model.onnx (onnxruntime)", compare_outputs(got, expected, Tolerance.parse("0.001,1e-05")))


@pytest.mark.parametrize("rel", [1e-3, 3.2e-5, 9.99e-4, 0.5])
def test_the_suggested_rtol_is_the_next_power_of_ten_above_the_measured(rel):
    expected = np.array([[1.0, -0.5]])
    c = compare_outputs(expected + [[rel, 0.0]], expected, Tolerance(rtol=0, atol=0))
    assert c.max_rel_diff == pytest.approx(rel)
    with pytest.raises(NaspruneError) as exc:
        require_close("model.ts", c)
    suggested = Tolerance.parse(str(exc.value).rsplit("--tolerance ", 1)[1])
    assert suggested.atol == 0 and c.max_rel_diff < suggested.rtol <= 10 * c.max_rel_diff
    assert math.log10(suggested.rtol) == pytest.approx(round(math.log10(suggested.rtol)))
    assert compare_outputs(expected + [[rel, 0.0]], expected, suggested).ok


def test_worst_takes_each_figure_over_the_cases():
    tol = Tolerance()
    assert worst([Closeness(1e-6, 2e-7, 0.1, tol), Closeness(5e-7, 4e-7, 0.3, tol)]) == Closeness(1e-6, 4e-7, 0.3, tol)
    with pytest.raises(ValueError, match="one tolerance"):
        worst([Closeness(0.0, 0.0, 0.0, tol), Closeness(0.0, 0.0, 0.0, Tolerance(rtol=0))])


@pytest.mark.parametrize(("text", "expected"), [
    ("1e-3", Tolerance(rtol=1e-3, atol=1e-5)), ("1e-3,1e-4", Tolerance(rtol=1e-3, atol=1e-4)),
    (" 0 , 0 ", Tolerance(rtol=0, atol=0)), ("0.01", Tolerance(rtol=0.01)),
])
def test_parse_accepts_rtol_and_optional_atol(text, expected):
    assert Tolerance.parse(text) == expected
    assert Tolerance.parse(expected.flag) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1e-4", "1e-4,-1", "1e-4,", "1,2,3", "nan", "inf", "1e-4;1e-5"])
def test_parse_refuses_bad_values_in_one_line(text):
    with pytest.raises(NaspruneError) as exc:
        Tolerance.parse(text)
    assert str(exc.value) == (f"--tolerance {text!r} is invalid: expected RTOL or RTOL,ATOL, numbers >= 0 "
                              "(e.g. 1e-4,1e-5)")


@pytest.mark.parametrize("kwargs", [{"rtol": -1e-4}, {"atol": math.nan}, {"rtol": math.inf}, {"atol": "1e-5"}])
def test_tolerance_refuses_bad_fields(kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(NaspruneError, match=rf"^tolerance {name}={value!r} is invalid: expected a finite number >= 0$"):
        Tolerance(**kwargs)


def test_default_is_rtol_1e_4_atol_1e_5():
    assert Tolerance() == Tolerance(rtol=1e-4, atol=1e-5) and Tolerance().flag == "0.0001,1e-05"


def test_export_refuses_a_bare_number_as_tolerance():
    from nasprune.export import ExportConfig, export

    with pytest.raises(NaspruneError, match=r"^tolerance=0.0001 is invalid: expected a Tolerance\(rtol=, atol=\)$"):
        export(ExportConfig(study="s", storage="sqlite:///nowhere.db", tolerance=1e-4))
