"""Notices for the support team (helpdesk/tickets/notices.py): a durable row, an ERROR line,
then every registered sender; unsent notices are offered again."""
import logging

import pytest

from helpdesk.tickets import (
    notify_humans,
    register_human_sender,
    send_pending_notices,
    unregister_human_sender,
)


class Channel:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.got = []

    def __call__(self, notice):
        if self.fail:
            raise ConnectionError("support chat unreachable")
        self.got.append(notice)


@pytest.fixture
def channel():
    sender = Channel()
    register_human_sender(sender)
    yield sender
    unregister_human_sender(sender)


def test_recorded_logged_and_sent(ledger, channel, caplog):
    with caplog.at_level(logging.ERROR, logger="helpdesk.tickets.notices"):
        notice_id = notify_humans(ledger, "ticket_rejected", "El ticket HD-ABC123 no se pudo crear", ticket_id="t-1")
    [row] = ledger.human_notices()
    assert row["id"] == notice_id and row["sent_at"] is not None and row["ticket_id"] == "t-1"
    assert channel.got == [{"id": notice_id, "kind": "ticket_rejected", "ticket_id": "t-1",
                            "text": "El ticket HD-ABC123 no se pudo crear"}]
    assert any("HD-ABC123" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_without_a_sender_the_notice_waits_and_is_sent_later(ledger):
    notify_humans(ledger, "zoho_auth", "Zoho rechaza las credenciales")
    assert ledger.human_notices(unsent_only=True)
    late = Channel()
    register_human_sender(late)
    try:
        assert send_pending_notices(ledger) == 1
    finally:
        unregister_human_sender(late)
    assert [n["text"] for n in late.got] == ["Zoho rechaza las credenciales"]
    assert ledger.human_notices(unsent_only=True) == []


def test_a_failing_sender_leaves_it_unsent_with_the_error(ledger):
    broken = Channel(fail=True)
    register_human_sender(broken)
    try:
        notify_humans(ledger, "ticket_exhausted", "sin entregar")
    finally:
        unregister_human_sender(broken)
    [row] = ledger.human_notices(unsent_only=True)
    assert row["send_attempts"] == 1 and "unreachable" in row["last_error"]


def test_once_per_condition(ledger, redis_client, channel):
    assert notify_humans(ledger, "zoho_auth", "uno", once_per="zoho_auth", client=redis_client) is not None
    assert notify_humans(ledger, "zoho_auth", "dos", once_per="zoho_auth", client=redis_client) is None
    assert [n["text"] for n in ledger.human_notices()] == ["uno"]
