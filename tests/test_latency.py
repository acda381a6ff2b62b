"""Measured latency (nasprune.latency): the one timing loop, both runtimes, the cache, and the names kept where
they were (nasprune.cost, nasprune.export._onnx)."""

from __future__ import annotations

import pytest
import torch

from nasprune import build
from nasprune.latency import measure_latency, measure_latency_ort, time_calls

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# -- latency ---------------------------------------------------------------------------------------------------
def test_measure_latency_of_a_spec(tiny_spec):
    before = torch.get_num_threads()
    latency = measure_latency(tiny_spec, runs=5, warmup=1, threads=1)
    assert latency.median_ms > 0 and latency.p90_ms >= latency.median_ms
    assert (latency.threads, latency.runs, latency.device) == (1, 5, "cpu")
    assert torch.get_num_threads() == before
    assert measure_latency(tiny_spec, runs=5, warmup=1, threads=1) is latency  # cached by hash


def test_measure_latency_of_a_model_records_threads_and_keeps_mode(tiny_spec):
    model = build(tiny_spec).train()
    latency = measure_latency(model, runs=3, warmup=0)
    assert latency.median_ms > 0 and latency.threads == torch.get_num_threads() and latency.runs == 3
    assert model.training
    assert measure_latency(model, runs=3, warmup=0) is not latency  # a model is timed afresh


def test_measure_latency_rejects_zero_runs(tiny_spec):
    with pytest.raises(ValueError, match="runs=0"):
        measure_latency(tiny_spec, runs=0)
    with pytest.raises(ValueError, match="^runtime='tflite' is invalid: expected one of pytorch, onnxruntime$"):
        measure_latency(tiny_spec, runtime="tflite")


def test_time_calls_warms_up_then_times_each_run():
    calls = []
    times = time_calls(lambda: calls.append(len(calls)), runs=4, warmup=2)
    assert calls == [0, 1, 2, 3, 4, 5] and len(times) == 4 and times == sorted(times) and min(times) >= 0


def test_measure_latency_ort_of_a_model_keeps_mode_and_records_runtime(tiny_spec):
    model = build(tiny_spec).train()
    latency = measure_latency_ort(model, runs=3, warmup=1, threads=1)
    assert latency.median_ms > 0 and latency.p90_ms >= latency.median_ms
    assert (latency.threads, latency.runs, latency.runtime) == (1, 3, "onnxruntime") and model.training
    assert measure_latency(model, runs=3, warmup=0).runtime == "pytorch"


def test_measure_latency_ort_of_a_spec_is_cached_apart_from_pytorch(tiny_spec):
    spec = tiny_spec.replace(name="ort_cache")
    ort = measure_latency_ort(spec, runs=2, warmup=0, threads=1)
    assert measure_latency_ort(spec, runs=2, warmup=0, threads=1) is ort
    assert measure_latency(spec, runs=2, warmup=0, threads=1) is not ort


def test_both_runtimes_share_the_one_timing_loop(tiny_spec, monkeypatch):
    import nasprune.latency

    seen = []
    real = nasprune.latency.time_calls

    def recording(call, *, runs, warmup):
        seen.append((runs, warmup))
        return real(call, runs=runs, warmup=warmup)

    monkeypatch.setattr(nasprune.latency, "time_calls", recording)
    model = build(tiny_spec)
    measure_latency(model, runs=2, warmup=1, threads=1)
    measure_latency_ort(model, runs=3, warmup=0, threads=1)
    assert seen == [(2, 1), (3, 0)]


def test_onnxruntime_session_runs_the_models_function(tiny_spec):
    """The timed onnxruntime session computes the same logits as the PyTorch model (so it times the network)."""
    import numpy as np

    from nasprune.onnxrt import onnx_session

    model = build(tiny_spec).eval()
    x = torch.randn(1, 1, 32, 32)
    (got,) = onnx_session(model, tiny_spec, threads=1).run(None, {"input": x.numpy()})
    with torch.inference_mode():
        assert np.abs(got - model(x).numpy()).max() <= 1e-5


def test_the_moved_names_stay_importable_where_they_were():
    import nasprune
    import nasprune.cost
    import nasprune.export._onnx
    import nasprune.latency
    import nasprune.onnxrt

    for name in ("Latency", "LATENCY_RUNTIMES", "measure_latency", "measure_latency_ort", "time_calls"):
        assert getattr(nasprune.cost, name) is getattr(nasprune.latency, name), name
    assert nasprune.measure_latency is nasprune.latency.measure_latency
    for name in ("INPUT_NAME", "OUTPUT_NAME", "ONNX_EXPORTERS", "LEGACY_OPSET", "onnx_session", "ort_session"):
        assert getattr(nasprune.export._onnx, name) is getattr(nasprune.onnxrt, name), name
