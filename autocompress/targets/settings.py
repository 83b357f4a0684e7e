"""What every target's settings share: how a latency is measured. Light (pydantic
only): each runtime's settings (`onnxruntime_config.py`, `torch_cuda_config.py`) extend
it, and `autocompress.config` reads them with every study file."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from autocompress.config_base import Strict


class MeasurementConfig(Strict):
    """The measurement settings of the study file's `target:` section, on every runtime."""

    # Which target: each runtime's settings narrow it to `Literal[<its name>]` (declared
    # here so that it comes first in messages and in an export's config.yaml).
    runtime: str
    batch_size: Annotated[int, Field(ge=1)] = 256
    warmup: Annotated[int, Field(ge=0)] = 10
    repeats: Annotated[int, Field(ge=3)] = 50
    # A latency whose timings spread wider than `max_cv` (standard deviation over the
    # mean) is timed again, up to `remeasure_attempts` more times, sleeping
    # `remeasure_backoff_s`, then twice and four times that, before it is stored
    # marked noisy. On a shared 2-core machine, a ~0.05 ms MLP (50 runs) measured
    # with the machine nearly idle showed CVs of 0.18-0.38; with a busy thread
    # competing, or the machine loaded by others (load 5), 1 to 6: one preempted run
    # among 50 is enough. 0.5 sits between the two with room on both sides.
    max_cv: Annotated[float, Field(gt=0.0)] = 0.5
    remeasure_attempts: Annotated[int, Field(ge=0)] = 3
    remeasure_backoff_s: Annotated[float, Field(ge=0.0)] = 0.25
