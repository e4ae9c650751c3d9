"""What a job does when a call for one of its lines fails, by the error's type: one table for the
line and for the job, read first match first (subclasses before the classes they refine)."""

from __future__ import annotations

from enum import Enum

from ..cancellation import GenerationStopped
from ..engine_client import EngineTimeout, EngineUnavailable, ReplicaLost
from ..engine_types import EngineError, UnknownModel, UnknownVoice, UnsupportedLanguage
from ..rvc_requests import VoiceConversionError


class Outcome(Enum):
    FAIL = "fail"
    """The job fails now: trying again cannot help (a voice or language the engine lacks)."""
    RETRY = "retry"
    """Tried again after a pause, `line_retries` times at most; then the job fails."""
    WAIT = "wait"
    """Not the line's fault (the engine has no replica to answer: starting, rolling out): the job
    waits for it, as long as it takes, and nothing counts against the line."""


RULES: tuple[tuple[tuple[type[BaseException], ...], Outcome], ...] = (
    ((UnknownVoice, UnsupportedLanguage, UnknownModel), Outcome.FAIL),
    # A line whose call killed its replica or hung it may do so again: counted, not waited for
    # (both are EngineUnavailable, so they come before it).
    ((ReplicaLost, EngineTimeout), Outcome.RETRY),
    ((EngineUnavailable,), Outcome.WAIT),
    ((GenerationStopped, EngineError, VoiceConversionError), Outcome.RETRY),
)


def outcome_of(error: BaseException) -> Outcome:
    """What the first rule that matches says; anything unlisted fails the job."""
    return next((outcome for kinds, outcome in RULES if isinstance(error, kinds)), Outcome.FAIL)


def pause_s(failures: int) -> float:
    """How long to wait before the next try after `failures` failed tries of a line."""
    return min(2.0 ** failures, 10.0)
