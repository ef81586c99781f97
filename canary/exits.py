"""Exit codes, for every command (docs/contract.md), and the one reading of a rollout's end.

Code 1 is a promise about where the traffic is: back on stable. So a crash, an internal
error or a rollout that could not finish safely is 4, never 1. The CLI, `canary status
--watch`, `canary deploy --server` and the runner all read a rollout's ending through
``ended`` and ``for_ending`` below, so they cannot disagree.
"""

from __future__ import annotations

import enum

from canary.model import Phase


class Exit(enum.IntEnum):
    OK = 0  # promoted, or the command succeeded
    ROLLED_BACK = 1  # rolled back or rejected, and traffic is back on stable
    INVALID = 2  # bad input, bad argument, a refused command: nothing was changed
    ABORTED = 3  # aborted by an operator (traffic is back on stable)
    NEEDS_HUMAN = 4  # could not finish safely, or an internal error: a human must look
    RUNNING = 5  # still running when --timeout expired; the state is kept, rerun resumes


def ended(phase: Phase, *, needs_human: bool) -> bool:
    """Nothing more happens without a human: the rollout ended, or it needs one while
    rolling back (router unreachable) or held (an internal error)."""
    return phase.terminal or (needs_human and phase in (Phase.ROLLING_BACK, Phase.PAUSED))


def for_ending(phase: Phase, *, needs_human: bool) -> Exit:
    """The exit code of a rollout in ``phase``: how it ended, or 5 while it still runs."""
    if needs_human:
        return Exit.NEEDS_HUMAN
    return {Phase.SUCCEEDED: Exit.OK, Phase.FAILED: Exit.ROLLED_BACK,
            Phase.ABORTED: Exit.ABORTED}.get(phase, Exit.RUNNING)
