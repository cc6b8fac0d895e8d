"""Files sent without text: attached to the ticket being collected, added to a ticket recorded
a moment ago, or the start of a new ticket."""
import time

import pytest
from sqlalchemy import update

from actions.files import ActionReceiveFile
from helpdesk.settings import load_settings
from helpdesk.tickets import tickets_table
from tests.actions.helpers import (
    SENDER,
    Conversation,
    paths_outside_media,
    record_ticket,
    run,
    slot_events,
)


@pytest.fixture
def photo() -> dict:
    """A photo as the channel stored it (helpdesk/whatsapp/media.py, under var/media/)."""
    return {"path": str(load_settings().var_dir / "media" / "ab" / "abcd.jpg"), "sha256": "abcd",
            "size": 10, "mime_type": "image/jpeg", "kind": "image", "filename": None}


def sends_photo(conversation: Conversation, *media: dict) -> Conversation:
    return conversation.user("/share_file", "share_file", metadata={"media": list(media)})


def test_a_photo_soon_after_a_ticket_goes_to_that_ticket(bot_ledger, catalog, photo):
    record = record_ticket(bot_ledger, catalog, started=time.time())
    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation(), photo).tracker())
    assert dispatcher.messages[0]["response"] == "utter_file_added_to_ticket"
    assert dispatcher.messages[0]["reference"] == record.reference
    assert slot_events(events) == {"file_added_to_ticket": True}
    assert bot_ledger.get(record.id).attachments == [photo["path"]]

    # the same photo again is not attached twice
    run(ActionReceiveFile(), sends_photo(Conversation(), photo).tracker())
    assert bot_ledger.get(record.id).attachments == [photo["path"]]


def test_a_photo_long_after_the_last_ticket_starts_a_new_one(bot_ledger, catalog, photo):
    record = record_ticket(bot_ledger, catalog, started=time.time() - 3600)
    with bot_ledger.engine.begin() as connection:  # recorded an hour ago
        connection.execute(update(tickets_table).where(tickets_table.c.id == record.id)
                           .values(created_at=time.time() - 3600))
    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation(), photo).tracker())
    assert dispatcher.messages[0]["response"] == "utter_file_received"
    assert slot_events(events) == {"file_added_to_ticket": False, "attachments": [photo["path"]]}
    assert bot_ledger.get(record.id).attachments == []


def test_a_photo_without_any_ticket_starts_one(bot_ledger, photo):
    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation(sender_id=SENDER), photo).tracker())
    assert dispatcher.messages[0]["response"] == "utter_file_received"
    assert slot_events(events)["file_added_to_ticket"] is False


def test_a_path_outside_the_media_directory_is_never_attached(bot_ledger, catalog, photo, caplog):
    """A forged call's metadata naming `.env`, /proc/self/environ, `../` or a symlink out: only
    the channel's own file is attached, the rest is dropped with a logged skip."""
    record = record_ticket(bot_ledger, catalog, started=time.time())
    hostile = [{**photo, "path": path} for path in paths_outside_media(load_settings().var_dir)]

    events, dispatcher = run(ActionReceiveFile(), sends_photo(Conversation(), *hostile, photo).tracker())

    assert dispatcher.messages[0]["response"] == "utter_file_added_to_ticket"
    assert bot_ledger.get(record.id).attachments == [photo["path"]]
    refusals = [r for r in caplog.records if r.getMessage().startswith("attachment refused")]
    assert refusals and refusals[0].refused == len(hostile)
    assert not any("secret" in r.getMessage() or ".env" in r.getMessage() for r in caplog.records)


def test_only_hostile_paths_start_no_attachment(bot_ledger, photo):
    hostile = [{**photo, "path": path} for path in paths_outside_media(load_settings().var_dir)]
    conversation = Conversation(sender_id=SENDER).slot("attachments", [hostile[0]["path"]])
    events, _ = run(ActionReceiveFile(), sends_photo(conversation, *hostile).tracker())
    # the forged slot value is dropped too
    assert slot_events(events) == {"file_added_to_ticket": False, "attachments": []}
