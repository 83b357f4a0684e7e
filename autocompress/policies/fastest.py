"""`fastest`: the lowest p50 within the study's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from autocompress.policies.base import LATENCY, Candidates, Decision, Duel, Policy, require_front

if TYPE_CHECKING:
    from autocompress.front import FrontMember


@dataclass(frozen=True)
class Fastest(Policy):
    """Lowest p50 first (the front is already feasible; ties: higher accuracy). A
    challenger replaces the champion only when every round of it is faster than every
    round of the champion: their per-round p50s do not overlap."""

    usage: ClassVar[str] = "fastest"
    selects_fastest: ClassVar[bool] = True

    @classmethod
    def parse(cls, text: str) -> Fastest | None:
        return cls(text) if text == cls.usage else None

    @property
    def metric(self) -> str:
        return LATENCY

    def ranked(self, candidates: Candidates) -> list[FrontMember]:
        front = require_front(candidates)
        return sorted(front, key=lambda m: (m.metrics[LATENCY], -m.metrics["accuracy"]))

    def warning(self, order: list[FrontMember], candidates: Candidates) -> str | None:
        """Noisy when the chosen member or the runner-up it beat is noisy, or when their
        p50s are within each other's spread (gap ≤ the larger of p50 × CV of the two)."""
        chosen = order[0]
        runner_up = order[1] if len(order) > 1 else None
        if runner_up is None:
            return (
                f"trial {chosen.trial_number}'s latency is noisy ({chosen.noise_note()})"
                if chosen.noisy
                else None
            )
        reasons = [
            f"trial {m.trial_number} ({label}) is noisy: {m.noise_note()}"
            for m, label in ((chosen, "chosen"), (runner_up, "runner-up"))
            if m.noisy
        ]
        p50, other = chosen.metrics[LATENCY], runner_up.metrics[LATENCY]
        spread = max(chosen.latency_spread_ms, runner_up.latency_spread_ms)
        if other - p50 <= spread:
            reasons.append(
                f"p50 {p50:.3f} ms vs {other:.3f} ms (trial {runner_up.trial_number}) differ "
                f"by {other - p50:.3f} ms, within their spread of ±{spread:.3f} ms"
            )
        if not reasons:
            return None
        return (
            f"trial {chosen.trial_number} was chosen as fastest, but the latencies may not "
            "decide it: " + "; ".join(reasons)
        )

    def beats(self, duel: Duel) -> Decision:
        challenger, champion = duel.challenger, duel.champion
        slower, faster = max(challenger.p50_rounds), min(champion.p50_rounds)
        gain = 1 - challenger.p50 / champion.p50
        if slower < faster:
            return Decision(
                True,
                f"challenger p50 {challenger.p50:.4f} ms vs champion {champion.p50:.4f} ms "
                f"({gain:.1%} faster; slowest challenger round {slower:.4f} ms < fastest "
                f"champion round {faster:.4f} ms)",
            )
        return Decision(
            False,
            f"challenger p50 {challenger.p50:.4f} ms vs champion {champion.p50:.4f} ms "
            f"({gain:+.1%}): not faster beyond measurement noise (round p50s overlap: "
            f"{min(challenger.p50_rounds):.4f}–{slower:.4f} vs "
            f"{faster:.4f}–{max(champion.p50_rounds):.4f} ms)",
        )
