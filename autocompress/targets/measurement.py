"""What one latency measurement says, and on what machine and runtime it was taken.

Latencies from different machines or runtimes are never comparable; the
fingerprint travels with every number so nothing mixes them silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

INTERESTING_CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
)


@dataclass(frozen=True)
class Measurement:
    """Latency statistics over `repeats` timed runs after `warmup` untimed ones.

    `peak_memory_bytes` is the device memory high-water mark while the model ran,
    where the target can see it (GPU targets); weight quantization often saves
    memory rather than time.

    Spread: `latency_cv` is the coefficient of variation of the kept attempt's
    timings. `attempts` is how many times the batch was timed (1 + re-measurements,
    see `steady_timings`), `attempt_cvs` the CV of each, `max_cv` the limit they were
    held to, and `noisy` is True when no attempt was both within it and accepted by
    the caller's check (see `Acceptance`): the numbers are kept, but they are not to be
    trusted to rank close models. Measurements stored before these fields existed read
    as one quiet attempt.
    """

    latency_p50_ms: float
    latency_p90_ms: float
    latency_mean_ms: float
    latency_cv: float
    size_bytes: int
    repeats: int
    warmup: int
    batch_size: int
    threads: int
    provider: str
    machine_id: str
    peak_memory_bytes: int | None = None
    noisy: bool = False
    attempts: int = 1
    attempt_cvs: tuple[float, ...] = ()
    max_cv: float | None = None
    noise_reason: str | None = None
    """Why it is `noisy` when not by its spread: the acceptance check's reason (see
    `steady_timings`; e.g. `pipeline.near_estimate`)."""

    @classmethod
    def from_timings(cls, timings_s: list[float], **context: object) -> Measurement:
        ms = np.asarray(timings_s) * 1e3
        return cls(
            latency_p50_ms=p50_ms(timings_s),
            latency_p90_ms=float(np.percentile(ms, 90)),
            latency_mean_ms=float(ms.mean()),
            latency_cv=coefficient_of_variation(timings_s),
            repeats=len(ms),
            **context,  # type: ignore[arg-type]
        )

    @classmethod
    def from_steady(cls, steady: SteadyTimings, **context: object) -> Measurement:
        """Statistics of the kept attempt, with how steady the measuring was."""
        return cls.from_timings(
            steady.timings_s,
            noisy=steady.noisy,
            attempts=len(steady.attempt_cvs),
            attempt_cvs=steady.attempt_cvs,
            max_cv=steady.max_cv,
            noise_reason=steady.noise_reason,
            **context,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def coefficient_of_variation(timings: list[float]) -> float:
    """Sample standard deviation over the mean (0 for fewer than two timings)."""
    values = np.asarray(timings, dtype=float)
    mean = float(values.mean()) if len(values) else 0.0
    return float(values.std(ddof=1) / mean) if len(values) > 1 and mean > 0 else 0.0


def p50_ms(timings_s: list[float]) -> float:
    """The median of timings in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(timings_s) * 1e3, 50))


Acceptance = Callable[[Sequence[list[float]]], str | None]
"""A check on a measurement beyond its spread, for `Target.measure` and `steady_timings`:
given the timings (seconds) of every attempt so far, newest last, None when the newest
is acceptable, else why not (it may speak of them all: the reason kept is the latest)."""


@dataclass(frozen=True)
class SteadyTimings:
    """The timings kept by `steady_timings`, and how steady each attempt was."""

    timings_s: list[float]
    attempt_cvs: tuple[float, ...]
    max_cv: float
    noisy: bool
    noise_reason: str | None = None


def steady_timings(
    time_once: Callable[[], list[float]],
    max_cv: float,
    remeasure_attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
    *,
    accept: Acceptance | None = None,
) -> SteadyTimings:
    """Time with `time_once` until the timings' CV is at most `max_cv` and `accept`
    (when given) takes them.

    A spread over `max_cv` means something else had the machine (another process,
    a busy thread holding the GIL, a frequency change): the batch is timed again, up
    to `remeasure_attempts` more times, after sleeping `backoff_s`, then twice, four
    times that long, so a passing burst of load can end. A refusal by `accept` (a
    p50 far from what it should be, though steady) is retried the same way. The first
    attempt within `max_cv` and accepted is kept; if none is, the least noisy attempt
    is kept and the result is `noisy`, with `accept`'s latest reason as `noise_reason`
    when it refused the kept attempt. Attempts are never pooled: a disturbed window
    would widen every percentile, and the kept timings always come from one contiguous
    window.
    """
    attempts: list[list[float]] = []
    cvs: list[float] = []
    reasons: list[str | None] = []
    for attempt in range(remeasure_attempts + 1):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        attempts.append(time_once())
        cvs.append(coefficient_of_variation(attempts[-1]))
        reasons.append(None if accept is None else accept(tuple(attempts)))
        if cvs[-1] <= max_cv and reasons[-1] is None:
            return SteadyTimings(attempts[-1], tuple(cvs), max_cv, noisy=False)
    kept = min(range(len(attempts)), key=cvs.__getitem__)
    refused = [reason for reason in reasons if reason is not None]
    return SteadyTimings(
        timings_s=attempts[kept],
        attempt_cvs=tuple(cvs),
        max_cv=max_cv,
        noisy=True,
        noise_reason=refused[-1] if reasons[kept] is not None else None,
    )


def time_runs(
    run: Callable[[], object],
    warmup: int,
    repeats: int,
    wait: Callable[[], None] = lambda: None,
) -> list[float]:
    """Seconds taken by each of `repeats` calls of `run`, after `warmup` untimed calls.

    `wait` blocks until the device has finished (GPUs run asynchronously); it is
    called inside the timed span, so a timing covers the work, not its launch.
    """
    for _ in range(warmup):
        run()
    wait()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        wait()
        timings.append(time.perf_counter() - start)
    return timings


@cache
def machine_fingerprint() -> dict[str, object]:
    """CPU model, the SIMD flags that change kernel choice, core count, OS and Python."""
    cpu_model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Hardware") and cpu_model in ("", platform.machine()):
                    cpu_model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cpu_flags": sorted(flags.intersection(INTERESTING_CPU_FLAGS)),
        "logical_cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
    }


def fingerprint_id(fingerprint: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]


def interleaved_rounds(
    measure: Callable[[str], Measurement], names: list[str], rounds: int, seed: int = 0
) -> dict[str, list[float]]:
    """Each candidate's p50 in each of `rounds` rounds; every round visits every
    candidate once in a shuffled order, so drift on a shared machine hits all alike."""
    order = list(names)
    rng = random.Random(seed)
    p50s: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            p50s[name].append(measure(name).latency_p50_ms)
    return p50s
