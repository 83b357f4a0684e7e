"""The one error type for user mistakes.

Raised deep where the mistake is found, printed once at the CLI edge as a single
message with exit code 2 and no traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: bad study file, missing data, unreachable database."""

    exit_code = 2


class VerificationError(UserError):
    """An export folder whose files no longer match its manifest."""

    exit_code = 1


class Unsupported(Exception):
    """A recipe the target cannot run; the trial is pruned with this message as its reason."""


class LockHeld(UserError):
    """A database lock someone else holds (another nightly run of the same study, say).

    Exit code 75 (EX_TEMPFAIL): nothing is wrong, try again later; schedulers retry.
    """

    exit_code = 75


class StorageUnavailable(UserError):
    """The database stayed unreachable past the retries (a server down, a lost network).

    Exit code 75 (EX_TEMPFAIL), as for `LockHeld`: nothing the user wrote is wrong;
    run again when the database is back.
    """

    exit_code = 75


class TrialAborted(Exception):
    """A fault (a full disk, say) that failed the running trial and stops the run.

    The trial is recorded FAILED with this message as its `failed_reason`; the run then
    ends with the message once, not a traceback.
    """
