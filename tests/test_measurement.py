"""The onnxruntime target on a real exported model: sessions, timings, refusals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import autocompress.targets.onnxruntime as ort_target
from autocompress.errors import Unsupported, UserError
from autocompress.recipe import Recipe
from autocompress.targets import OnnxRuntimeTarget, fingerprint_id
from autocompress.targets.measurement import (
    Measurement,
    SteadyTimings,
    p50_ms,
    steady_timings,
)
from autocompress.targets.onnxruntime_config import OnnxRuntimeTargetConfig
from tests.conftest import feed


def test_measurement_follows_the_config(model_path: Path) -> None:
    config = OnnxRuntimeTargetConfig(batch_size=16, warmup=2, repeats=7, intra_op_threads=1)
    target = OnnxRuntimeTarget(config)
    measurement = target.measure(target.load(model_path), feed(16))
    assert isinstance(measurement, Measurement)
    assert measurement.repeats == 7
    assert measurement.warmup == 2
    assert measurement.batch_size == 16
    assert measurement.threads == 1
    assert measurement.provider == "CPUExecutionProvider"
    assert 0 < measurement.latency_p50_ms <= measurement.latency_p90_ms
    assert measurement.latency_mean_ms > 0
    assert measurement.latency_cv >= 0
    assert measurement.size_bytes == model_path.stat().st_size
    assert measurement.to_dict()["repeats"] == 7


def test_machine_id_is_stable_and_tracks_the_runtime_settings(model_path: Path) -> None:
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig(batch_size=8, warmup=0, repeats=3))
    runnable = target.load(model_path)
    first = target.measure(runnable, feed(8))
    second = target.measure(runnable, feed(8))
    assert first.machine_id == second.machine_id == fingerprint_id(target.fingerprint())
    assert len(first.machine_id) == 12
    # a different thread count or batch size is a different measuring setup
    other = OnnxRuntimeTarget(OnnxRuntimeTargetConfig(batch_size=8, intra_op_threads=2))
    assert fingerprint_id(other.fingerprint()) != first.machine_id


def test_statistics_from_known_timings() -> None:
    timings = [0.001, 0.002, 0.003, 0.004, 0.010]
    m = Measurement.from_timings(
        timings,
        size_bytes=1,
        warmup=0,
        batch_size=1,
        threads=1,
        provider="CPUExecutionProvider",
        machine_id="x",
    )
    ms = np.array(timings) * 1e3
    assert m.repeats == 5
    assert m.latency_p50_ms == pytest.approx(3.0)
    assert m.latency_p90_ms == pytest.approx(np.percentile(ms, 90))
    assert m.latency_mean_ms == pytest.approx(4.0)
    assert m.latency_cv == pytest.approx(ms.std(ddof=1) / ms.mean())


def test_steady_timings_keeps_the_least_spread_with_the_latest_refusal() -> None:
    """Known timings: what is kept when the attempts run out, and with which reason."""
    steady_far = [0.010, 0.010, 0.010, 0.011]  # CV 0.05, p50 10 ms
    spread_near = [0.030, 0.001, 0.060, 0.030]  # CV 0.8, p50 30 ms

    def p50_near_30_ms(attempts: Sequence[list[float]]) -> str | None:
        p50s = [p50_ms(timings) for timings in attempts]
        shown = ", ".join(f"{p50:.1f}" for p50 in p50s)
        return None if 20 <= p50s[-1] <= 40 else f"p50s {shown} (refused)"

    def timed(*attempts: list[float]) -> SteadyTimings:
        queue = iter(attempts)
        return steady_timings(
            lambda: next(queue), 0.5, len(attempts) - 1, 0.0, accept=p50_near_30_ms
        )

    # The steady attempts are refused, the spread one agrees: the least spread is kept,
    # marked with the latest reason (it speaks of all three).
    refused = timed(spread_near, steady_far, steady_far)
    assert refused.noisy and refused.timings_s == steady_far
    assert refused.noise_reason == "p50s 30.0, 10.0, 10.0 (refused)"
    # Refused first, then spread: the refused one is kept, with the latest refusal.
    spread = timed(steady_far, spread_near, spread_near)
    assert spread.noisy and spread.timings_s == steady_far
    assert spread.noise_reason == "p50s 10.0 (refused)"
    # Every attempt agrees but spreads over max_cv: noisy by its spread alone.
    wide = [0.030, 0.001, 0.060, 0.029]
    only_spread = timed(spread_near, wide)
    assert only_spread.noisy and only_spread.noise_reason is None
    # Steady and agreeing after a refusal: kept, quiet, though an earlier one spread less.
    quiet = timed(steady_far, [0.030, 0.029, 0.031, 0.030])
    assert not quiet.noisy and quiet.noise_reason is None
    assert quiet.timings_s == [0.030, 0.029, 0.031, 0.030]


def test_session_pins_threads_and_does_not_spin(model_path: Path) -> None:
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig(intra_op_threads=2))
    session = target.session(model_path)
    assert session.get_providers() == ["CPUExecutionProvider"]
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    logits = session.run(None, feed(5))[0]
    assert logits.shape == (5, 2)


def test_unavailable_provider_is_a_user_error() -> None:
    missing = "CUDAExecutionProvider"
    if missing in ort.get_available_providers():
        pytest.skip("this machine has CUDA; the refusal cannot be shown here")
    with pytest.raises(UserError, match="target.execution_provider") as error:
        OnnxRuntimeTarget(OnnxRuntimeTargetConfig(execution_provider=missing))
    assert missing in str(error.value)
    assert "CPUExecutionProvider" in str(error.value)  # and it lists what is available


def test_check_accepts_what_the_provider_runs() -> None:
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig())
    for recipe in (
        Recipe(),
        Recipe(bits=16),
        Recipe(bits=8),
        Recipe(bits=8, int8_mode="static", per_channel=True),
        Recipe(bits=4, int4_block_size=16),
    ):
        target.check(recipe)  # no exception


def test_check_refuses_a_precision_the_provider_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    without_int4 = {"fp32", "fp16", "int8-dynamic", "int8-static"}
    monkeypatch.setitem(ort_target.PRECISIONS, "CPUExecutionProvider", without_int4)
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig())
    with pytest.raises(Unsupported) as error:
        target.check(Recipe(bits=4, int4_block_size=32))
    message = str(error.value)
    assert "CPUExecutionProvider" in message and "int4" in message
    assert "fp32" in message  # the reason says what it does run
    target.check(Recipe(bits=8, int8_mode="static"))  # the rest is still accepted


def test_corrupt_model_is_unsupported_with_the_runtime_reason(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"this is not a protobuf \x00\x01\x02" * 10)
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig())
    with pytest.raises(Unsupported, match="CPUExecutionProvider cannot load this model: ") as error:
        target.session(corrupt)
    reason = str(error.value).split("cannot load this model: ", 1)[1]
    assert reason.strip(), "the onnxruntime reason is missing"
    assert "\n" not in str(error.value)
    assert isinstance(error.value.__cause__, Exception)


def test_truncated_model_is_unsupported(model_path: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    with pytest.raises(Unsupported, match="cannot load this model"):
        OnnxRuntimeTarget(OnnxRuntimeTargetConfig()).session(truncated)


def test_non_cpu_provider_does_not_fall_back_to_the_cpu(model_path: Path) -> None:
    """A provider that cannot run the graph's nodes fails the session instead of using the CPU."""
    provider = "AzureExecutionProvider"  # shipped in CPU wheels; it runs no standard ops
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} is not in this onnxruntime build")
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig(execution_provider=provider))
    target.check(Recipe())  # not in the precision table: nothing is refused up front
    with pytest.raises(Unsupported, match=f"{provider} cannot load this model"):
        target.session(model_path)
