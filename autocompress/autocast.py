"""Whether students train under bf16 autocast: forced, off, or decided by a timed probe.

bf16 pays only where the CPU computes it natively (AVX-512 BF16, AMX: a MiniLM
student's step was about 1.5x faster on such Xeons); elsewhere it is emulated and
slower. No rule about machines is written down: `auto` times the student's own
training step both ways and keeps the answer per machine and student shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from autocompress.atomic import write_atomically

MIN_AUTOCAST_SPEEDUP = 1.15
"""bf16 is used only when its step is at least this much faster than fp32's. Below it,
the timing noise of a short probe on a shared 2-core machine is of the same order, and
bf16 rounds activations: it must pay clearly to be worth that."""

CLEARLY_SLOWER = 0.5
"""A probe stops after its first timed round when bf16 ran at under half fp32's speed:
no noise bridges that gap to `MIN_AUTOCAST_SPEEDUP`, and emulated bf16 can be slow
indeed (a MiniLM-shaped student's step took 30 s against 2.1 s on an AVX2-only EPYC)."""

Step = Callable[[bool], None]
"""One training step (forward, loss, backward) of the student; True: under autocast."""


@dataclass(frozen=True)
class AutocastChoice:
    """How the student trains (`fp32` or `bf16`), why, and what the probe measured."""

    mode: str
    reason: str  # "off" (the setting), "forced" (workers.autocast: bf16), "probe"
    fp32_step_s: float | None = None
    bf16_step_s: float | None = None
    speedup: float | None = None  # fp32 step time / bf16 step time
    cached: bool = False  # the probe's result came from an earlier run on this machine

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.mode == "bf16" else None

    @property
    def describe(self) -> str:
        """One line for a trial's note, e.g. `bf16 autocast (probe: 1.42x faster than fp32)`."""
        if self.reason == "forced":
            return "bf16 autocast (forced by workers.autocast)"
        if self.reason != "probe" or self.speedup is None:
            return self.mode
        probed = "cached probe" if self.cached else "probe"
        if self.mode == "bf16":
            return f"bf16 autocast ({probed}: {self.speedup:.2f}x faster than fp32)"
        below = f", below {MIN_AUTOCAST_SPEEDUP:.2f}x" if self.speedup > 1 else ""
        return f"fp32 ({probed}: bf16 {self.speedup:.2f}x{below}, not used)"

    def context(self) -> AbstractContextManager[object]:
        """Where a training step's forward and loss run (backward and scoring stay out)."""
        if self.mode == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


FP32 = AutocastChoice(mode="fp32", reason="off")


def decide(speedup: float) -> str:
    """The rule: bf16 when it is at least `MIN_AUTOCAST_SPEEDUP` times faster."""
    return "bf16" if speedup >= MIN_AUTOCAST_SPEEDUP else "fp32"


def probe(
    step: Step, repeats: int = 5, warmup: int = 1, give_up_below: float = CLEARLY_SLOWER
) -> tuple[float, float]:
    """Median seconds per step in fp32 and under bf16 autocast.

    The two are interleaved (which goes first alternates), so a neighbour's load hits
    both alike; after the first timed round a bf16 side slower than `give_up_below`
    (speedup) ends the probe. torch's global RNG is put back afterwards: dropout in the
    probe must not change the draws training makes next.
    """
    rng_state = torch.random.get_rng_state()
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(warmup):
            step(False)
            step(True)
        for round_ in range(repeats):
            for enabled in (False, True) if round_ % 2 == 0 else (True, False):
                started = time.perf_counter()
                step(enabled)
                times[enabled].append(time.perf_counter() - started)
            if round_ == 0 and times[False][0] / times[True][0] < give_up_below:
                break
    finally:
        torch.random.set_rng_state(rng_state)
    return statistics.median(times[False]), statistics.median(times[True])


def choose_autocast(
    setting: str, step: Step, cache_dir: Path | None, key_parts: dict
) -> AutocastChoice:
    """The choice for `workers.autocast` = `setting` ("off", "bf16" or "auto").

    `auto` probes `step` once per machine, torch thread count and `key_parts` (the
    student's shape and what its step computes); the result is kept as JSON in
    `cache_dir` (None: not kept) and the rule is applied to the stored speedup.
    """
    if setting == "off":
        return FP32
    if setting == "bf16":
        return AutocastChoice(mode="bf16", reason="forced")
    if setting != "auto":
        raise ValueError(f"unknown autocast setting {setting!r}")
    path = None if cache_dir is None else Path(cache_dir) / f"{probe_key(key_parts)}.json"
    stored = _read(path)
    if stored is not None:
        return stored
    fp32_s, bf16_s = probe(step)
    speedup = fp32_s / bf16_s
    choice = AutocastChoice(decide(speedup), "probe", fp32_s, bf16_s, speedup)
    if path is not None:
        # Whole or not at all: concurrent workers may probe the same student at once.
        record = {**choice.to_dict(), "key_parts": key_parts}
        write_atomically(path, json.dumps(record, indent=2, sort_keys=True))
    return choice


def probe_key(key_parts: dict) -> str:
    """Names a probe's cache file: the student, this machine, torch's thread count."""
    # Imported here: autocompress.targets imports the passes, which import this module.
    from autocompress.targets.measurement import fingerprint_id, machine_fingerprint

    payload = {
        "key": key_parts,
        "machine": fingerprint_id(machine_fingerprint()),
        "threads": torch.get_num_threads(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read(path: Path | None) -> AutocastChoice | None:
    """A cached probe, or None (absent or unreadable: probe again and replace it)."""
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fp32_s, bf16_s = float(data["fp32_step_s"]), float(data["bf16_step_s"])
        speedup = fp32_s / bf16_s
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return AutocastChoice(decide(speedup), "probe", fp32_s, bf16_s, speedup, cached=True)
