"""The action server out of reach during a WhatsApp turn: the turn stops, nothing of it saved.

Rasa 3.6 catches every error of a custom action (`MessageProcessor._run_action`), logs it, and
goes on predicting with the action's events lost; then it saves the tracker. With the action
server stopped a turn therefore "succeeds": the user's message is on the tracker, no ticket, no
answer, and a re-run would see a turn already done. Here `RemoteAction.run` is wrapped so that,
inside a WhatsApp turn (`guarded`), a failure to reach the action server raises
`ActionServerDown`. It derives from BaseException, not Exception, so Rasa's `except Exception`
lets it through: the prediction loop ends before the tracker is saved, the conversation lock is
released by its context manager, and the turn (connectors/whatsapp/turn.py) tells the user and
hands the message back to the consumer to run again when the action server answers.

The tracker store is held to the same rule: inside a WhatsApp turn its errors (Redis down)
reach the turn, which fails and is run again by the consumer, instead of Rasa's fallback to a
blank tracker in memory, whose save would replace the conversation's stored history.

Out of reach means: no connection (refused, reset, closed mid-answer) or an answer of 502, 503
or 504 (a proxy in front of a stopped server). An action that raises (the SDK answers 500) or
answers 400 is the action's own failure and keeps Rasa's behaviour: it would fail the same way
on every run. Outside a WhatsApp turn (the REST channel of `rasa shell` and tests, the HTTP
API's trigger_intent) nothing changes.
"""
import contextvars
import logging
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import aiohttp

logger = logging.getLogger(__name__)

UNREACHABLE_STATUSES = (502, 503, 504)

_guarded: contextvars.ContextVar[bool] = contextvars.ContextVar("action_server_guarded",
                                                                default=False)
_installed = False


class ActionServerDown(BaseException):
    """The action server could not be reached from a guarded turn: the turn must not go on.

    A BaseException on purpose (see the module's docstring): catch it by name, where the turn
    is run, and nowhere else."""

    def __init__(self, action: str, cause: str) -> None:
        super().__init__(f"the action server did not answer {action}: {cause}")
        self.action = action
        self.cause = cause


@contextmanager
def guarded() -> Iterator[None]:
    """Inside: an unreachable action server raises ActionServerDown instead of being
    swallowed by Rasa."""
    token = _guarded.set(True)
    try:
        yield
    finally:
        _guarded.reset(token)


def unreachable(error: BaseException) -> Optional[str]:
    """Why `error` (Rasa's RasaException, or anything it was raised from) means the action
    server is out of reach, or None when it is some other failure."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(current, "status", None)
        if isinstance(current, aiohttp.ClientError) and isinstance(status, int):
            # an answer (Rasa's own ClientResponseError, or aiohttp's)
            return f"HTTP {status}" if status in UNREACHABLE_STATUSES else None
        if isinstance(current, aiohttp.ClientConnectionError):
            return type(current).__name__
        current = current.__cause__ or current.__context__
    return None


def install() -> None:
    """Wrap RemoteAction.run and FailSafeTrackerStore's reads and save once per process (the
    Rasa server's channels call it)."""
    global _installed
    if _installed:
        return
    from rasa.core.actions.action import RemoteAction  # Rasa's, patched only when a channel starts
    from rasa.shared.exceptions import RasaException

    original = RemoteAction.run

    async def run(self: RemoteAction, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except RasaException as error:
            cause = unreachable(error) if _guarded.get() else None
            if cause is None:
                raise
            logger.error("the action server is out of reach; the turn stops and waits",
                         extra={"action": self.name(), "cause": cause})
            raise ActionServerDown(self.name(), cause) from error

    RemoteAction.run = run  # type: ignore[assignment]

    # the tracker store's own fallback (Rasa's FailSafeTrackerStore): a read that fails gives
    # a blank tracker and a save that fails goes to memory, so a turn during a Redis outage
    # "succeeds" and its save replaces the stored history with the blank one. Inside a turn
    # the store's error reaches the turn instead: it fails, and the consumer runs it again.
    from rasa.core.tracker_store import FailSafeTrackerStore  # Rasa's, as RemoteAction above

    for name in ("retrieve", "retrieve_full_tracker", "save"):
        setattr(FailSafeTrackerStore, name, _unless_guarded(getattr(FailSafeTrackerStore, name),
                                                             name))
    _installed = True


def _unless_guarded(fail_safe: Any, name: str) -> Any:
    """FailSafeTrackerStore's `name`, or inside a guarded turn its primary store's, unguarded."""
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _guarded.get():
            return await getattr(self._tracker_store, name)(*args, **kwargs)
        return await fail_safe(self, *args, **kwargs)

    return call
