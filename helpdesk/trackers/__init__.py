"""Rasa's conversation history: the tracker store Rasa is given in endpoints.yml (store.py) and
what retention does to it (retention.py). Other code imports from this package only.

The store, and Rasa with it, is imported on first use of one of its names (`__getattr__`): the
workers only trim histories and do not load Rasa."""
from typing import Any, Optional

from helpdesk.trackers.retention import conversations, trim_before  # noqa: F401

_STORE_NAMES = ("EventLogTrackerStore", "WINDOW_MARK", "is_window_event", "legacy_key")


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        # imported here so importing this package does not load Rasa (see above)
        from helpdesk.trackers import store

        return getattr(store, name)
    raise AttributeError(f"module 'helpdesk.trackers' has no attribute {name!r}")


async def latest_tracker(agent: Any, conversation_id: str) -> Optional[Any]:
    """The conversation's tracker for reading, from the agent's store: what its last save left
    when nothing changed since (no load), else read; None before the model loads or for a
    conversation never seen."""
    store = getattr(agent, "tracker_store", None)
    if store is None:
        return None
    # only called where Rasa runs (see above)
    from helpdesk.trackers.store import EventLogTrackerStore

    # Rasa wraps the configured store (FailSafeTrackerStore, AwaitableTrackerStore)
    for candidate in (store, getattr(store, "_tracker_store", None)):
        if isinstance(candidate, EventLogTrackerStore):
            return await candidate.latest(conversation_id)
    return await store.retrieve(conversation_id)
