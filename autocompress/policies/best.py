"""`best:<metric>` (and `most_accurate` = `best:accuracy`): the best score under an
optional latency budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from autocompress.config import MAXIMIZED_METRICS, OBJECTIVE_METRICS
from autocompress.errors import UserError
from autocompress.policies.base import LATENCY, Candidates, Decision, Duel, Policy, require_front

if TYPE_CHECKING:
    from autocompress.front import FrontMember

# best:<metric> ranks by any score a study can optimise; latency and size have `fastest`.
BEST_METRICS = tuple(
    m for m in OBJECTIVE_METRICS if not m.startswith("latency") and m != "size_bytes"
)
ALIASES = {"most_accurate": "best:accuracy"}


@dataclass(frozen=True)
class Best(Policy):
    """Best `score` in `direction` under `latency_budget_ms`, if set (ties: lower p50).
    A challenger replaces the champion when better by at least 1/n_rows: for accuracy,
    one more correct validation example (the test split is held out: nightly decisions
    never read it)."""

    usage: ClassVar[str] = (
        f"most_accurate (= best:accuracy) | best:METRIC (METRIC: {', '.join(BEST_METRICS)})"
    )
    score: str = "accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"

    @classmethod
    def parse(cls, text: str) -> Best | None:
        kind, _, metric = ALIASES.get(text, text).partition(":")
        if kind != "best" or metric not in BEST_METRICS:
            return None
        return cls(text, metric, "maximize" if metric in MAXIMIZED_METRICS else "minimize")

    @classmethod
    def hint(cls, text: str) -> str:
        kind, _, metric = text.partition(":")
        if kind == "best" and metric in OBJECTIVE_METRICS:
            return f" ({metric} is not a score: for latency use fastest)"
        return ""

    @property
    def metric(self) -> str:
        return self.score

    def ranked(self, candidates: Candidates) -> list[FrontMember]:
        front, latency_budget_ms = require_front(candidates), candidates.latency_budget_ms
        within = [
            m for m in front if latency_budget_ms is None or m.metrics[LATENCY] <= latency_budget_ms
        ]
        if not within:
            fastest = min(m.metrics[LATENCY] for m in front)
            raise UserError(
                f"export.latency_budget_ms: no front trial runs within "
                f"{latency_budget_ms} ms; the fastest takes {fastest:.3f} ms"
            )
        sign = 1.0 if self.direction == "maximize" else -1.0
        scored = [m for m in within if _defined(m.metrics.get(self.score))]
        if not scored:
            among = "no front trial within the budget" if latency_budget_ms else "no front trial"
            raise UserError(
                f"--policy: {self.name!r}: {among} has a {self.score} score (the study's task "
                "does not report it, or it is undefined on the validation split); pick "
                "another policy"
            )
        return sorted(scored, key=lambda m: (-sign * m.metrics[self.score], m.metrics[LATENCY]))

    def warning(self, order: list[FrontMember], candidates: Candidates) -> str | None:
        chosen, latency_budget_ms = order[0], candidates.latency_budget_ms
        if latency_budget_ms is None or not chosen.noisy:
            return None
        return (
            f"trial {chosen.trial_number} is within the {latency_budget_ms} ms budget by a "
            f"noisy latency ({chosen.noise_note()}); re-measure before relying on it"
        )

    def beats(self, duel: Duel) -> Decision:
        challenger, champion, n_rows = duel.challenger, duel.champion, duel.n_rows
        if duel.latency_budget_ms is not None and challenger.p50 > duel.latency_budget_ms:
            return Decision(False, f"the challenger is over the {duel.latency_budget_ms} ms budget")
        metric = self.score
        new = challenger.metrics.get(metric, math.nan)
        old = champion.metrics.get(metric, math.nan)
        scores = f"challenger {metric} {new:.4f} vs champion {old:.4f}"
        margin = (new - old) if self.direction == "maximize" else (old - new)
        if math.isnan(margin):
            return Decision(False, f"{scores}: not comparable (a score is undefined)")
        if metric == "accuracy":  # in test examples, as people count them
            if margin * n_rows >= 1 - 1e-9:
                return Decision(
                    True, f"{scores} (+{margin * n_rows:.0f} of {n_rows} test examples)"
                )
            return Decision(False, f"{scores}: not better by a single test example")
        better = "higher" if self.direction == "maximize" else "lower"
        if margin * n_rows >= 1 - 1e-9:
            return Decision(True, f"{scores} ({better} by {margin:.4f} ≥ 1/{n_rows} test rows)")
        return Decision(
            False,
            f"{scores}: not {better} by at least 1/{n_rows} ({1 / n_rows:.4f}, one test row)",
        )


def _defined(value: object) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)
