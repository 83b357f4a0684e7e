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
from collections.abc import Callable
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

    @classmethod
    def from_timings(cls, timings_s: list[float], **context: object) -> Measurement:
        ms = np.asarray(timings_s) * 1e3
        mean = float(ms.mean())
        return cls(
            latency_p50_ms=float(np.percentile(ms, 50)),
            latency_p90_ms=float(np.percentile(ms, 90)),
            latency_mean_ms=mean,
            latency_cv=float(ms.std(ddof=1) / mean) if len(ms) > 1 and mean > 0 else 0.0,
            repeats=len(ms),
            **context,  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict:
        return asdict(self)


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
