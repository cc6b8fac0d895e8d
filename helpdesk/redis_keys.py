"""Every Redis key the project writes, in one place, under one prefix."""

PREFIX = "helpdesk"


def opted_out_set() -> str:
    """Set of conversation ids (senders) that asked not to receive messages."""
    return f"{PREFIX}:opted_out"


def handoff_requested(conversation_id: str) -> str:
    return f"{PREFIX}:handoff:{conversation_id}"
