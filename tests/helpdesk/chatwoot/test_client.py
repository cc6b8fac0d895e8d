"""The Chatwoot client against the fake Chatwoot over real HTTP (config/chatwoot.yml:
tests/helpdesk/config/test_chatwoot.py)."""
import time
from dataclasses import replace

import pytest

from helpdesk.chatwoot import (
    ChatwootAuthError,
    ChatwootClient,
    ChatwootNotFound,
    ChatwootRejected,
    ChatwootUnavailable,
    e164,
)
from helpdesk.config import load_chatwoot_config
from helpdesk.settings import ChatwootSettings
from tests.conftest import PROJECT, free_port
from tests.fakes.chatwoot import FakeChatwoot

OPTIONS = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")


@pytest.fixture
def fake():
    with FakeChatwoot() as server:
        yield server


def client_for(fake, **changes):
    settings = ChatwootSettings(url=fake.url, api_token=fake.token, account_id=str(fake.account_id),
                                inbox_id=str(fake.inbox_id), webhook_token=None, webhook_secret=None)
    return ChatwootClient(replace(settings, **changes), OPTIONS)


@pytest.fixture
def client(fake):
    chatwoot = client_for(fake)
    yield chatwoot
    chatwoot.close()


def conversation_in(fake, client):
    contact = client.find_or_create_contact(phone="+5491122334455", identifier="5491122334455", name="Ana")
    return client.create_conversation(contact_id=contact["id"], status="pending")["id"]


# contacts ---------------------------------------------------------------------------------
def test_contact_is_matched_exactly_not_by_chatwoot_substring_search(fake, client):
    near = fake.add_contact(name="Otro", phone="+54911223344551", identifier="otro")

    contact = client.find_or_create_contact(phone="+5491122334455", identifier="5491122334455", name="Ana")

    assert contact["id"] != near["id"]
    assert (contact["phone_number"], contact["identifier"], contact["name"]) == (
        "+5491122334455", "5491122334455", "Ana")
    assert [c.json for c in fake.calls_to("POST", "^/contacts$")] == [
        {"inbox_id": 5, "name": "Ana", "phone_number": "+5491122334455", "identifier": "5491122334455"}]
    assert contact["contact_inboxes"][0]["inbox"]["id"] == 5


def test_existing_contact_is_found_on_a_later_search_page(fake, client):
    for index in range(16):  # a full first page of longer numbers containing ours
        fake.add_contact(name=f"n{index}", phone=f"+5491122334455{index:02d}"[:16])
    existing = fake.add_contact(name="Ana", phone="+5491122334455")

    contact = client.find_or_create_contact(phone="+5491122334455", identifier="5491122334455", name="Ana")

    assert contact["id"] == existing["id"]
    assert [c.query["page"] for c in fake.calls_to("GET", "^/contacts/search$")] == ["1", "2"]
    assert fake.calls_to("POST", "^/contacts$") == []


def test_contact_without_a_number_is_found_by_identifier(fake, client):
    bsuid = "US.13491208655302741918"
    first = client.find_or_create_contact(phone=None, identifier=bsuid, name=None)
    again = client.find_or_create_contact(phone=None, identifier=bsuid, name=None)

    assert first["id"] == again["id"]
    assert first["phone_number"] is None and first["name"] == bsuid
    assert len(fake.calls_to("POST", "^/contacts$")) == 1


def test_create_refused_as_taken_searches_again(fake, client):
    """Another worker creates the same person's contact between our search and our create:
    Chatwoot answers 422 'already been taken', and the contact is found instead."""
    fake.before("POST", "^/contacts$", lambda: fake.add_contact(
        name="Ana (otro worker)", phone="+5491122334455", identifier="g1203-5491122334455"))

    contact = client.find_or_create_contact(phone="+5491122334455", identifier="5491122334455", name="Ana")

    assert [c.status for c in fake.calls_to("POST", "^/contacts$")] == [422]
    assert contact["name"] == "Ana (otro worker)"


def test_e164():
    assert e164("5491122334455") == "+5491122334455"
    assert e164("+54 9 11 2233-4455") == "+5491122334455"
    assert e164("US.1349") is None and e164(None) is None and e164("0123") is None


# labels and custom attributes --------------------------------------------------------------------
def test_labels_are_merged_never_clobbered(fake, client):
    conversation = conversation_in(fake, client)
    fake.conversations[conversation]["labels"] = ["cliente-vip", "ticket"]

    assert client.add_labels(conversation, ["ticket", "escalated"]) == ["cliente-vip", "ticket", "escalated"]
    assert fake.conversations[conversation]["labels"] == ["cliente-vip", "ticket", "escalated"]

    writes = len(fake.calls_to("POST", "/labels$"))
    assert client.add_labels(conversation, ["escalated"]) == ["cliente-vip", "ticket", "escalated"]
    assert len(fake.calls_to("POST", "/labels$")) == writes  # nothing new: no write


def test_custom_attributes_are_merged_never_clobbered(fake, client):
    conversation = conversation_in(fake, client)
    fake.conversations[conversation]["custom_attributes"] = {"zona": "norte", "store": "vieja"}

    merged = client.merge_custom_attributes(conversation, {"ticket_number": "1042", "store": "Tienda 42",
                                                           "system": None})

    assert merged == {"zona": "norte", "store": "Tienda 42", "ticket_number": "1042"}
    assert fake.conversations[conversation]["custom_attributes"] == merged
    writes = len(fake.calls_to("POST", "/custom_attributes$"))
    client.merge_custom_attributes(conversation, {"ticket_number": "1042"})
    assert len(fake.calls_to("POST", "/custom_attributes$")) == writes


def test_status_and_private_notes(fake, client):
    conversation = conversation_in(fake, client)

    assert client.toggle_status(conversation, "open")["current_status"] == "open"
    note = client.create_message(conversation, "nota", private=True, source_id="helpdesk:n1")

    assert (note["message_type"], note["private"], note["source_id"]) == (1, True, "helpdesk:n1")
    assert fake.calls_to("POST", "/messages$")[-1].json == {
        "content": "nota", "message_type": "outgoing", "private": True, "content_type": "text",
        "source_id": "helpdesk:n1"}
    assert [m["id"] for m in client.list_messages(conversation)] == [note["id"]]


# errors ----------------------------------------------------------------------------------------
def test_error_classes(fake, client):
    conversation = conversation_in(fake, client)

    with pytest.raises(ChatwootAuthError):
        client_for(fake, api_token="wrong").get_labels(conversation)
    with pytest.raises(ChatwootAuthError):
        client_for(fake, account_id="2").get_labels(conversation)
    with pytest.raises(ChatwootNotFound):
        client.get_labels(999)
    with pytest.raises(ChatwootRejected) as refused:
        client.toggle_status(conversation, "closed")
    assert refused.value.status == 422

    fake.fail(500, method="POST", path="/messages$")
    with pytest.raises(ChatwootUnavailable) as failed:
        client.create_message(conversation, "hola")
    assert failed.value.ambiguous and failed.value.status == 500

    fake.fail(500, method="GET")
    with pytest.raises(ChatwootUnavailable) as failed:
        client.get_labels(conversation)
    assert not failed.value.ambiguous

    fake.fail(429, method="POST", body="Retry later")
    with pytest.raises(ChatwootUnavailable) as throttled:
        client.create_message(conversation, "hola")
    assert throttled.value.status == 429 and not throttled.value.ambiguous


def test_every_call_gives_up_at_its_timeout(fake):
    slow = ChatwootClient(client_for(fake).settings, replace(OPTIONS, read_timeout=0.3))
    conversation = conversation_in(fake, slow)
    fake.hang(3, method="POST", path="/messages$")

    started = time.monotonic()
    with pytest.raises(ChatwootUnavailable) as late:
        slow.create_message(conversation, "hola")

    assert time.monotonic() - started < 2
    assert late.value.ambiguous  # it may have landed


def test_nothing_listening_is_unavailable_and_not_ambiguous(fake):
    down = client_for(fake, url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ChatwootUnavailable) as refused:
        down.create_message(1, "hola")
    assert not refused.value.ambiguous


# config/chatwoot.yml ---------------------------------------------------------------------------
