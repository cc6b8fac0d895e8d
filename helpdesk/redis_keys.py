"""Every Redis key the project writes, in one place, under one prefix."""

PREFIX = "helpdesk"


def opted_out_set() -> str:
    """Set of conversation ids (senders) that asked not to receive messages."""
    return f"{PREFIX}:opted_out"


def handoff_requested(conversation_id: str) -> str:
    return f"{PREFIX}:handoff:{conversation_id}"


def route(conversation_id: str) -> str:
    """Hash: where a conversation's replies go (helpdesk.conversations.Route)."""
    return f"{PREFIX}:route:{conversation_id}"
