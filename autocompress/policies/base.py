"""What a selection policy is: it ranks a study's front for an export, and it says
whether tomorrow's challenger beats today's champion for the nightly run.

A policy is parsed from text (`fastest`, `best:f1`, `trial:3`, or a new one) by the
registry in `autocompress.policies`; each kind is one module with one class.
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from autocompress.errors import UserError

if TYPE_CHECKING:  # optuna and the front are imported when a policy is applied, not parsed
    import optuna

    from autocompress.front import FrontMember

LATENCY = "latency_p50_ms"


@dataclass(frozen=True)
class Contender:
    """The champion or the challenger, as measured today on this machine."""

    name: str
    metrics: dict[str, float]
    feasible: bool
    p50_rounds: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.p50_rounds)


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaces the champion, and why, in a sentence."""

    replace: bool
    reason: str


@dataclass(frozen=True)
class Candidates:
    """What an export policy picks from: the study's feasible front, the study itself
    (a policy may name any complete trial) and the export's latency budget, if set."""

    front: list[FrontMember]
    study: optuna.Study | None = None
    latency_budget_ms: float | None = None


@dataclass(frozen=True)
class Duel:
    """The nightly's question: both contenders measured today (both feasible), the
    number of validation rows their scores rest on, and the latency budget, if set."""

    challenger: Contender
    champion: Contender
    n_rows: int
    latency_budget_ms: float | None = None


@dataclass(frozen=True)
class Policy(ABC):
    """A parsed policy; `name` is the text it was parsed from.

    Subclasses declare `usage` (how the allowed values are listed in messages and help),
    `parse` (their own syntax) and `ranked`; ranking policies also `beats`.
    """

    name: str
    usage: ClassVar[str]
    ranks: ClassVar[bool] = True
    """Whether it ranks trials (and so can run nightly) rather than naming one."""
    selects_fastest: ClassVar[bool] = False
    """Whether it picks the fastest feasible trial (what latency-skipping rules rely on)."""

    @classmethod
    @abstractmethod
    def parse(cls, text: str) -> Policy | None:
        """This kind of policy read from `text`, or None when `text` is not of this kind."""

    @classmethod
    def hint(cls, text: str) -> str:
        """Why `text`, not of this kind, came close to it ("" when it did not)."""
        return ""

    @property
    def metric(self) -> str | None:
        """The score it selects by, if one (a study must be able to compute it)."""
        return None

    @abstractmethod
    def ranked(self, candidates: Candidates) -> list[FrontMember]:
        """The members it accepts, best first; never empty (raises `UserError`). The next
        member is the fallback when the first does not hold its limits across seeds."""

    def warning(self, order: list[FrontMember], candidates: Candidates) -> str | None:
        """Why the first of `order` may have been chosen by noisy numbers, or None."""
        return None

    def beats(self, duel: Duel) -> Decision:
        """Whether the challenger beats the champion beyond noise."""
        raise UserError(f"export.policy: {self.name!r} does not rank trials; it cannot judge")


def require_front(candidates: Candidates) -> list[FrontMember]:
    """The front, which a ranking policy needs at least one member of."""
    if candidates.front:
        return candidates.front
    from autocompress.config import CONSTRAINT_LIMITS

    raise UserError(
        "the study has no feasible complete trial to export yet; run more trials or "
        f"relax its constraints ({', '.join(f'constraints.{k}' for k in CONSTRAINT_LIMITS)})"
    )
