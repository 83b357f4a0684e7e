"""`trial:N`: that trial, whatever the front says (any complete trial)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from autocompress.errors import UserError
from autocompress.policies.base import Candidates, Policy

if TYPE_CHECKING:
    from autocompress.front import FrontMember


@dataclass(frozen=True)
class ExplicitTrial(Policy):
    """Names one trial: nothing to rank, so it cannot run nightly."""

    usage: ClassVar[str] = "trial:N"
    ranks: ClassVar[bool] = False
    number: int = 0

    @classmethod
    def parse(cls, text: str) -> ExplicitTrial | None:
        kind, _, number = text.partition(":")
        return cls(text, int(number)) if kind == "trial" and number.isdigit() else None

    def ranked(self, candidates: Candidates) -> list[FrontMember]:
        from optuna.trial import TrialState

        from autocompress.front import FrontMember
        from autocompress.store.trials import trial_by_number

        study = candidates.study
        if study is None:
            raise UserError(f"--policy: {self.name!r} needs the study to find the trial in")
        trial = trial_by_number(study, self.number)  # that trial alone
        if trial is None:
            raise UserError(f"--policy: study {study.study_name!r} has no trial {self.number}")
        if trial.state != TrialState.COMPLETE:
            raise UserError(
                f"--policy: trial {self.number} is {trial.state.name}, not COMPLETE; "
                "pick a completed trial (see `autocompress front`)"
            )
        return [FrontMember.from_trial(trial)]
