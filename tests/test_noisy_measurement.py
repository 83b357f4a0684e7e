"""Latencies measured under real load: re-measured with back-off, stored as noisy when
they stay noisy, and shown as noisy by the front, the report, the dashboard note and
the selection.

Nothing is mocked: the noise is real (runs that sleep widely varying times, or a busy
Python thread holding the interpreter while an onnxruntime session runs), and so is
the quiet (a fixed sleep). Thresholds keep wide margins: on the 2-core shared test
machine quiet runs showed CVs up to about 0.4, noisy ones from about 1.0 up.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState, create_trial
from rich.console import Console

import autocompress.cli.study as study_cli
from autocompress.api import StudyResult, run_study
from autocompress.dashboard import completed_trial_note, named_constraints
from autocompress.front import FrontMember, compute_front
from autocompress.pipeline import near_estimate
from autocompress.report import write_report
from autocompress.select import choose, logged, ranked, select
from autocompress.targets import OnnxRuntimeTarget, OnnxSession
from autocompress.targets.measurement import Measurement, steady_timings, time_runs
from autocompress.targets.onnxruntime_config import OnnxRuntimeTargetConfig
from tests.conftest import feed, tiny_study_dict, write_study

MAX_CV = 0.5


@contextmanager
def busy_threads(count: int = 2, switch_interval_s: float = 0.0002) -> Iterator[None]:
    """Python threads spinning on the interpreter lock until the block ends.

    The interpreter hands its lock over every `switch_interval_s` (0.005 s by default;
    restored afterwards); at 0.2 ms a spinning thread reliably grabs it while a session
    runs, so the measuring thread waits for it back, as under a busy web worker.
    """
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    previous = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval_s)
    threads = [threading.Thread(target=spin, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(previous)


# --- the re-measure rule --------------------------------------------------------------


def test_a_quiet_run_is_kept_and_not_flagged() -> None:
    """A fixed 3 ms sleep spreads little: it is not flagged."""
    steady = steady_timings(
        lambda: time_runs(lambda: time.sleep(0.003), warmup=1, repeats=30),
        max_cv=MAX_CV,
        remeasure_attempts=3,
        backoff_s=0.05,
    )
    assert not steady.noisy
    assert steady.attempt_cvs[-1] <= MAX_CV
    assert all(cv > MAX_CV for cv in steady.attempt_cvs[:-1]), "stops at the first quiet one"
    measurement = Measurement.from_steady(
        steady,
        size_bytes=1,
        warmup=1,
        batch_size=1,
        threads=1,
        provider="sleep",
        machine_id="x",
    )
    assert measurement.noisy is False and measurement.attempts == len(steady.attempt_cvs)
    assert 2.5 < measurement.latency_p50_ms < 50


def test_a_burst_of_load_that_passes_is_remeasured_and_not_flagged() -> None:
    """The first attempt runs during a burst (sleeps of 0.5 or 20 ms), the next after it
    passed (a fixed 3 ms): the second attempt is kept and the result is not noisy."""
    rng = random.Random(1)
    attempt = {"n": 0}

    def one_attempt() -> list[float]:
        attempt["n"] += 1
        if attempt["n"] == 1:
            return time_runs(lambda: time.sleep(rng.choice([0.0005] * 3 + [0.02])), 1, 40)
        return time_runs(lambda: time.sleep(0.003), 1, 30)

    steady = steady_timings(one_attempt, max_cv=MAX_CV, remeasure_attempts=3, backoff_s=0.05)
    assert not steady.noisy
    assert steady.attempt_cvs[0] > MAX_CV >= steady.attempt_cvs[-1]
    assert len(steady.attempt_cvs) >= 2
    assert 2.5 < 1e3 * float(np.median(steady.timings_s)) < 50, "the quiet attempt is kept"


def test_widely_varying_runs_are_remeasured_with_back_off_and_flagged(fault_table) -> None:
    """One run in four sleeps 40 times longer: every attempt is noisy, so all attempts
    are made, with growing sleeps in between, and the result says noisy."""
    rng = random.Random(0)

    def jittery() -> None:
        time.sleep(rng.choice([0.0005, 0.0005, 0.0005, 0.02]))

    started = time.perf_counter()
    steady = steady_timings(
        lambda: time_runs(jittery, warmup=1, repeats=40),
        max_cv=MAX_CV,
        remeasure_attempts=2,
        backoff_s=0.1,
    )
    elapsed = time.perf_counter() - started
    assert steady.noisy
    assert len(steady.attempt_cvs) == 3
    assert all(cv > MAX_CV for cv in steady.attempt_cvs)
    assert elapsed >= 0.1 + 0.2, "slept 0.1 s, then 0.2 s, between attempts"
    kept = Measurement.from_steady(
        steady, size_bytes=1, warmup=1, batch_size=1, threads=1, provider="sleep", machine_id="x"
    )
    assert kept.latency_cv == pytest.approx(min(steady.attempt_cvs))  # the least noisy kept
    stored = kept.to_dict()
    assert stored["noisy"] is True and stored["attempts"] == 3 and stored["max_cv"] == MAX_CV
    fault_table.record(
        area="busy machine",
        tried="latency of runs sleeping 0.5 ms or 20 ms at random (CVs "
        + ", ".join(f"{cv:.2f}" for cv in steady.attempt_cvs)
        + f" over 3 attempts, limit {MAX_CV})",
        result=f"re-measured after 0.1 s and 0.2 s back-off ({elapsed:.2f} s in all); "
        f"stored noisy=True, cv={kept.latency_cv:.2f} (least noisy attempt), attempts=3",
    )


# --- the check against the untrained shape's estimate -----------------------------------


def sleeps_of(*seconds: float) -> Callable[[], list[float]]:
    """Attempts timing fixed sleeps: the first `seconds[0]` each run, the next
    `seconds[1]`, ...; the last is repeated for any further attempt."""
    attempts = iter(seconds)
    last = {"s": seconds[0]}

    def one_attempt() -> list[float]:
        last["s"] = next(attempts, last["s"])
        return time_runs(lambda: time.sleep(last["s"]), warmup=1, repeats=8)

    return one_attempt


def recorded_sleep(slept: list[float]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    return sleep


def test_a_p50_far_from_its_estimate_is_retried_then_kept_noisy_with_the_reason() -> None:
    """Steady 40 ms sleeps where the shape measured 10 ms before training: 4x, over the
    1.5x tolerance, though their spread is small. Timed again with back-off, still far:
    the least spread attempt is kept, marked noisy with the ratios and the tolerance."""
    slept: list[float] = []
    steady = steady_timings(
        sleeps_of(0.04),
        max_cv=MAX_CV,
        remeasure_attempts=2,
        backoff_s=0.05,
        sleep=recorded_sleep(slept),
        accept=near_estimate(10.0),
    )
    assert slept == [0.05, 0.1], "re-timed twice, with the back-off"
    assert all(cv <= MAX_CV for cv in steady.attempt_cvs), "steady: the estimate decided"
    assert steady.noisy and len(steady.attempt_cvs) == 3
    kept = Measurement.from_steady(
        steady, size_bytes=1, warmup=1, batch_size=1, threads=1, provider="sleep", machine_id="x"
    )
    assert kept.latency_cv == pytest.approx(min(steady.attempt_cvs)), "the least spread kept"
    assert kept.noisy and kept.attempts == 3 and 35 < kept.latency_p50_ms < 80
    reason = kept.to_dict()["noise_reason"]
    assert reason.startswith("p50 stayed far from the 10.000 ms its untrained shape measured")
    assert "over 3 measurements; tolerance 1.5x" in reason
    ratios = re.findall(r"(\d+\.\d\d)x", reason)
    assert len(ratios) == 3 and all(3.5 < float(r) < 8 for r in ratios), reason


def test_a_p50_that_agrees_on_the_second_try_is_kept_unmarked() -> None:
    """The first attempt (40 ms sleeps) is 4x the 10 ms estimate; the second (10 ms
    sleeps) agrees: it is kept, not noisy, and no further attempt is made."""
    slept: list[float] = []
    steady = steady_timings(
        sleeps_of(0.04, 0.01),
        max_cv=MAX_CV,
        remeasure_attempts=3,
        backoff_s=0.05,
        sleep=recorded_sleep(slept),
        accept=near_estimate(10.0),
    )
    assert slept == [0.05] and len(steady.attempt_cvs) == 2
    kept = Measurement.from_steady(
        steady, size_bytes=1, warmup=1, batch_size=1, threads=1, provider="sleep", machine_id="x"
    )
    assert not kept.noisy and kept.noise_reason is None and kept.attempts == 2
    assert 9.5 < kept.latency_p50_ms < 15, "the attempt that agrees is kept"


@dataclass(frozen=True)
class StallingSession:
    """A real onnxruntime session on a machine where one run in four stalls 20 ms
    (a preempted core, a page fault storm): the session runs, then the stall is slept."""

    session: OnnxSession
    rng: random.Random

    @property
    def size_bytes(self) -> int:
        return self.session.size_bytes

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        logits = self.session.run(feeds)
        time.sleep(self.rng.choice([0.0005, 0.0005, 0.0005, 0.02]))
        return logits


def onnx_target(**settings: object) -> OnnxRuntimeTarget:
    return OnnxRuntimeTarget(
        OnnxRuntimeTargetConfig(batch_size=256, warmup=2, repeats=50, max_cv=MAX_CV, **settings)
    )


def test_the_onnx_target_remeasures_a_stalling_session_and_stores_it_noisy(
    model_path: Path, fault_table
) -> None:
    target = onnx_target(remeasure_attempts=2, remeasure_backoff_s=0.05)
    real = target.load(model_path)
    quiet = onnx_target(remeasure_attempts=3, remeasure_backoff_s=0.1).measure(real, feed(256))
    noisy = target.measure(StallingSession(real, random.Random(0)), feed(256))
    assert noisy.noisy and noisy.attempts == 3 and noisy.max_cv == MAX_CV
    assert noisy.latency_cv > MAX_CV and all(cv > MAX_CV for cv in noisy.attempt_cvs)
    assert noisy.latency_cv == pytest.approx(min(noisy.attempt_cvs)), "the least noisy is kept"
    assert noisy.to_dict()["noisy"] is True and noisy.to_dict()["attempts"] == 3
    # The same session without the stalls is measured for comparison only: on a shared
    # 2-core machine one preemption among 50 runs of 0.05 ms gives it a CV of 4 or more.
    fault_table.record(
        area="busy machine",
        tried="onnxruntime latency (MLP, batch 256) where one run in four stalls 20 ms: CVs "
        + ", ".join(f"{cv:.2f}" for cv in noisy.attempt_cvs)
        + f" (limit {MAX_CV}); the same session without stalls: CV {quiet.latency_cv:.2f} "
        f"after {quiet.attempts} attempt(s), noisy={quiet.noisy}",
        result=f"re-measured 2 more times with back-off; stored noisy=True, "
        f"cv={noisy.latency_cv:.2f}, p50 {noisy.latency_p50_ms:.3f} ms, attempts=3",
    )


def test_the_onnx_target_holds_its_timings_to_the_check(model_path: Path) -> None:
    """`measure(..., accept)`: a real session far under a 1000 ms estimate is timed
    again by the target's own back-off loop and stored noisy with the check's reason."""
    target = onnx_target(remeasure_attempts=2, remeasure_backoff_s=0.01)
    far = target.measure(target.load(model_path), feed(256), near_estimate(1000.0))
    assert far.noisy and far.attempts == 3 and len(far.attempt_cvs) == 3
    assert far.noise_reason and "far from the 1000.000 ms" in far.noise_reason
    assert "over 3 measurements" in far.noise_reason


def test_busy_threads_competing_for_the_interpreter(model_path: Path, fault_table) -> None:
    """Real contention is not reproducible run to run: on this machine busy threads
    made most attempts noisy (CV 4 to 6, one run in 50 waiting for the interpreter)
    but a re-measure after the back-off sometimes found a quiet window. Either way
    the stored measurement tells the truth about the timings it kept."""
    target = onnx_target(remeasure_attempts=2, remeasure_backoff_s=0.05)
    session = target.load(model_path)
    with busy_threads():
        busy = target.measure(session, feed(256))
    assert 1 <= busy.attempts == len(busy.attempt_cvs) <= 3
    assert busy.latency_cv == pytest.approx(min(busy.attempt_cvs))
    if busy.noisy:
        assert busy.attempts == 3 and busy.latency_cv > MAX_CV
    else:
        assert busy.latency_cv <= MAX_CV
        assert all(cv > MAX_CV for cv in busy.attempt_cvs[:-1]), "stops at the first quiet one"
    outcome = (
        f"stored noisy=True, cv={busy.latency_cv:.2f}"
        if busy.noisy
        else f"a re-measure found a quiet window: stored noisy=False, cv={busy.latency_cv:.2f}"
    )
    fault_table.record(
        area="busy machine",
        tried="onnxruntime latency (MLP, batch 256) with 2 busy Python threads competing "
        f"for the interpreter: CVs {', '.join(f'{cv:.2f}' for cv in busy.attempt_cvs)}",
        result=f"{busy.attempts} attempt(s); {outcome}, p50 {busy.latency_p50_ms:.3f} ms",
    )


# --- what a noisy study shows ---------------------------------------------------------


STRICT_CV = 0.01


@pytest.fixture(scope="module")
def noisy_study(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    """A real tiny study held to a strict `target.max_cv` of 1%: its real latencies
    (CVs of 0.2 to 0.3 on the test machine) stay over it, so they are stored noisy.
    (Busy threads during a whole study made no latency noisy reliably: the re-measure
    after the back-off often found a quiet window, as it should.)"""
    folder = tmp_path_factory.mktemp("noisy-study")
    definition = tiny_study_dict(
        folder,
        study_name="noisy",
        n_trials=3,
        target={
            "batch_size": 32,
            "warmup": 2,
            "repeats": 20,
            "max_cv": STRICT_CV,
            "remeasure_attempts": 1,
            "remeasure_backoff_s": 0.01,
        },
    )
    return run_study(write_study(folder, definition))


def noisy_members(result: StudyResult) -> list[FrontMember]:
    complete = result.study.get_trials(states=(TrialState.COMPLETE,))
    members = [FrontMember.from_trial(t) for t in complete]
    noisy = [m for m in members if m.noisy]
    assert noisy, "no stored latency over 1%: " + ", ".join(
        f"trial {m.trial_number} CV {m.metrics['latency_cv']:.3f}" for m in members
    )
    return noisy


def test_a_noisy_study_stores_noise_and_the_front_marks_it(
    noisy_study: StudyResult, fault_table
) -> None:
    noisy = noisy_members(noisy_study)
    for member in noisy:
        stored = noisy_study.study.trials[member.trial_number].user_attrs["measurement"]
        assert stored["noisy"] is True and stored["attempts"] == 2
        assert stored["latency_cv"] > STRICT_CV and len(stored["attempt_cvs"]) == 2
        assert stored["max_cv"] == STRICT_CV
    console = Console(record=True, width=200)
    original = study_cli.console
    study_cli.console = console
    try:
        study_cli.print_front(
            noisy + [m for m in noisy_study.front if not m.noisy], None, "noisy front"
        )
    finally:
        study_cli.console = original
    printed = console.export_text()
    member = noisy[0]
    row = next(
        line
        for line in printed.splitlines()
        if line.strip().startswith(f"│ {member.trial_number} ")
    )
    assert f"{member.metrics['latency_p50_ms']:.3f} *" in row
    assert "* noisy latency" in printed
    words = " ".join(printed.replace("│", " ").split())  # the caption wraps with the table
    assert f"trial {member.trial_number}: CV {member.metrics['latency_cv']:.0%}" in words
    fault_table.record(
        area="busy machine",
        tried=f"a real study held to target.max_cv {STRICT_CV} ({len(noisy)} of "
        f"{len(noisy_study.study.trials)} trials stayed over it, e.g. trial "
        f"{member.trial_number} CV {member.metrics['latency_cv']:.2f})",
        result="stored noisy=True with attempts=2 in the trial's measurement; "
        "`autocompress front` marks its p50/p90 with * and names it in a footnote",
    )


def test_the_report_and_the_dashboard_note_show_the_noise(
    noisy_study: StudyResult, tmp_path: Path
) -> None:
    noisy = noisy_members(noisy_study)
    page = write_report(noisy_study.study, tmp_path / "r", title="noisy").html.read_text()
    on_front = {m.trial_number for m in compute_front(noisy_study.study)}
    shown = [m for m in noisy if m.trial_number in on_front or m.is_teacher]
    for member in shown:
        assert f"{member.metrics['latency_p50_ms']:.3f} *" in page
    if shown:
        assert "noisy latency" in page
    trial = noisy_study.study.trials[noisy[0].trial_number]
    attrs = trial.user_attrs
    note = completed_trial_note(
        trial.number,
        attrs["recipe_summary"],
        [],
        attrs["metrics"],
        {},
        attrs["measurement"],
        named_constraints(trial),
    )
    assert "**noisy latency**" in note
    assert f"CV {attrs['measurement']['latency_cv']:.1%}" in note
    assert "least noisy of 2 attempts" in note


def test_a_noisy_fastest_pick_carries_a_warning(noisy_study: StudyResult, fault_table) -> None:
    front = noisy_study.front
    noisy = [m for m in front if m.noisy]
    if not noisy:
        pytest.skip("no noisy member made it to the front in this run")
    chosen = noisy[0]
    # The fastest of a front made of the noisy member and a quiet copy of another.
    selection = choose([chosen], "fastest")
    assert selection.member == chosen
    assert selection.warning and f"trial {chosen.trial_number}" in selection.warning
    assert "noisy" in selection.warning
    assert select([chosen], "fastest") == chosen  # the old entry point still answers
    fault_table.record(
        area="busy machine",
        tried=f"select fastest when the pick (trial {chosen.trial_number}) has CV "
        f"{chosen.metrics['latency_cv']:.2f}",
        result=f"selected, with the warning: {selection.warning}",
    )


# --- selection within noise, and measurements stored before noise was recorded --------


def sleep_measurement(seconds: float) -> Measurement:
    """A real measurement of a fixed sleep (quiet: CV well under the limit)."""
    steady = steady_timings(
        lambda: time_runs(lambda: time.sleep(seconds), warmup=1, repeats=30),
        max_cv=MAX_CV,
        remeasure_attempts=3,
        backoff_s=0.05,
    )
    return Measurement.from_steady(
        steady, size_bytes=1000, warmup=1, batch_size=1, threads=1, provider="sleep", machine_id="x"
    )


def member_from(number: int, measurement: dict, accuracy: float = 0.75) -> FrontMember:
    trial = create_trial(
        values=[accuracy, measurement["latency_p50_ms"]],
        user_attrs={
            "metrics": {"accuracy": accuracy, "f1": 0.7, "roc_auc": 0.8},
            "measurement": measurement,
            "recipe_summary": f"recipe {number}",
        },
    )
    trial.number = number
    return FrontMember.from_trial(trial)


def test_fastest_warns_when_the_runner_up_is_within_noise(
    fault_table, caplog: pytest.LogCaptureFixture
) -> None:
    """Two quiet 3 ms sleeps are the same speed within their spread; a 30 ms sleep is
    clearly slower than a 3 ms one."""
    a, b, slow = (sleep_measurement(s) for s in (0.003, 0.003, 0.03))
    assert not (a.noisy or b.noisy or slow.noisy)
    close = choose([member_from(1, a.to_dict()), member_from(2, b.to_dict())], "fastest")
    assert close.runner_up is not None
    assert close.warning and "within their spread" in close.warning
    # Logged once, as `select` logs it, with the whole order for the fallbacks.
    caplog.set_level(logging.WARNING, logger="autocompress")
    caplog.clear()
    front = [member_from(1, a.to_dict()), member_from(2, b.to_dict())]
    assert logged(choose(front, "fastest")).order == tuple(ranked(front, "fastest"))
    assert caplog.messages == [f"selection by fastest: {close.warning}"]
    caplog.clear()
    assert select(front, "fastest") == close.member
    assert caplog.messages == [f"selection by fastest: {close.warning}"]
    apart = choose([member_from(1, a.to_dict()), member_from(3, slow.to_dict())], "fastest")
    assert apart.member.trial_number == 1 and apart.warning is None
    fault_table.record(
        area="busy machine",
        tried=f"select fastest between two quiet 3 ms sleeps (p50 {a.latency_p50_ms:.3f} ms "
        f"CV {a.latency_cv:.2f} vs {b.latency_p50_ms:.3f} ms CV {b.latency_cv:.2f})",
        result=f"trial {close.member.trial_number} selected, with the warning: {close.warning}; "
        f"against a 30 ms sleep (p50 {slow.latency_p50_ms:.3f} ms) no warning",
    )


def test_measurements_stored_before_noise_was_recorded_still_load(tmp_path: Path) -> None:
    old = {
        k: v
        for k, v in sleep_measurement(0.002).to_dict().items()
        if k not in ("noisy", "attempts", "attempt_cvs", "max_cv")
    }
    member = member_from(4, old)
    assert member.noisy is False and member.noise_note() == ""
    assert choose([member], "fastest").warning is None
    note = completed_trial_note(4, "recipe 4", [], {"f1": 0.7}, {}, old, {})
    assert "noisy" not in note and "least noisy" not in note
    console = Console(record=True, width=200)
    original, study_cli.console = study_cli.console, console
    try:
        study_cli.print_front([member], None, "old front")
    finally:
        study_cli.console = original
    assert "noisy latency" not in console.export_text()
