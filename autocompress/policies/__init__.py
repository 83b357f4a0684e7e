"""Selection policies: which trial an export takes and whether a nightly challenger
replaces the champion. One module per kind; a new policy is a new module here plus one
line in `POLICIES`. Study files, `--policy`, the CLI's help and the nightly all ask
`parse_policy` and `policy_choices`: no other module spells a policy's name.
"""

from __future__ import annotations

from autocompress.errors import UserError
from autocompress.policies.base import LATENCY, Candidates, Contender, Decision, Duel, Policy
from autocompress.policies.best import BEST_METRICS, Best
from autocompress.policies.fastest import Fastest
from autocompress.policies.trial import ExplicitTrial

POLICIES: list[type[Policy]] = [Fastest, Best, ExplicitTrial]
"""The registered kinds, in the order their usage is listed; the first is the default."""

__all__ = [
    "BEST_METRICS",
    "LATENCY",
    "POLICIES",
    "Best",
    "Candidates",
    "Contender",
    "Decision",
    "Duel",
    "ExplicitTrial",
    "Fastest",
    "Policy",
    "parse_policy",
    "policy_choices",
]


def policy_choices(ranking_only: bool = False, sep: str = ", ") -> str:
    """The allowed policies, as messages and help list them."""
    usages = [kind.usage for kind in POLICIES if kind.ranks or not ranking_only]
    return sep.join(part for usage in usages for part in usage.split(" | "))


def parse_policy(text: str, where: str = "--policy", *, ranking: bool = False) -> Policy:
    """The policy `text` names; anything else is a `UserError` naming `where`. With
    `ranking`, a policy that names one trial is refused too (a nightly run ranks)."""
    for kind in POLICIES:
        policy = kind.parse(text)
        if policy is None:
            continue
        if ranking and not policy.ranks:
            raise UserError(
                f"{where}: nightly runs need a ranking policy "
                f"({policy_choices(ranking_only=True)}), not {text!r}"
            )
        return policy
    hint = "".join(kind.hint(text) for kind in POLICIES)
    raise UserError(f"{where}: {text!r} is not allowed; allowed values: {policy_choices()}{hint}")
