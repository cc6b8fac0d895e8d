"""Files sent without text: attached to the ticket being collected, added to a ticket recorded
a moment ago, or the start of a new ticket."""
import time

from sqlalchemy import update

from actions.files import ActionReceiveFile
from helpdesk.tickets import tickets_table
from tests.actions.helpers import SENDER, Conversation, record_ticket, run, slot_events

PHOTO = {"path": "/var/media/ab/abcd.jpg", "sha256": "abcd", "size": 10,
         "mime_type": "image/jpeg", "kind": "image", "filename": None}


def sends_photo(conversation: Conversation) -> Conversation:
    return conversation.user("/share_file", "share_file", metadata={"media": [PHOTO]})


def test_a_photo_soon_after_a_ticket_goes_to_that_ticket(bot_ledger, catalog):
    record = record_ticket(bot_ledger, catalog, started=time.time())
    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation()).tracker())
    assert dispatcher.messages[0]["response"] == "utter_file_added_to_ticket"
    assert dispatcher.messages[0]["reference"] == record.reference
    assert slot_events(events) == {"file_added_to_ticket": True}
    assert bot_ledger.get(record.id).attachments == [PHOTO["path"]]

    # the same photo again is not attached twice
    run(ActionReceiveFile(), sends_photo(Conversation()).tracker())
    assert bot_ledger.get(record.id).attachments == [PHOTO["path"]]


def test_a_photo_long_after_the_last_ticket_starts_a_new_one(bot_ledger, catalog):
    record = record_ticket(bot_ledger, catalog, started=time.time() - 3600)
    with bot_ledger.engine.begin() as connection:  # recorded an hour ago
        connection.execute(update(tickets_table).where(tickets_table.c.id == record.id)
                           .values(created_at=time.time() - 3600))
    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation()).tracker())
    assert dispatcher.messages[0]["response"] == "utter_file_received"
    assert slot_events(events) == {"file_added_to_ticket": False, "attachments": [PHOTO["path"]]}
    assert bot_ledger.get(record.id).attachments == []


def test_a_photo_without_any_ticket_starts_one(bot_ledger):
    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation(sender_id=SENDER)).tracker())
    assert dispatcher.messages[0]["response"] == "utter_file_received"
    assert slot_events(events)["file_added_to_ticket"] is False
