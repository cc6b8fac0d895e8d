"""The Zoho Desk client (helpdesk/zoho/client.py) against the fake Zoho over real HTTP, with the
token shared through the session's real Redis (token tests: test_tokens.py)."""
import time
from pathlib import Path

import pytest

from helpdesk.metrics import ZOHO_API_LATENCY
from helpdesk.zoho import (
    ZohoNotFound,
    ZohoPermanent,
    ZohoQuotaExceeded,
    ZohoRateLimited,
    ZohoTransient,
)
from tests.fakes.zoho import REF_FIELD
from tests.helpdesk.zoho.support import TICKET, client_for
from tests.workers.zoho_support import world  # noqa: F401 - fixture


def test_contact_search_then_create_then_remembered(world):
    client = client_for(world)
    first = client.ensure_contact("5491122334455", "Ana María Pérez", "WhatsApp {phone}")
    contact = world.zoho.contacts[first]
    assert contact["mobile"] == "+5491122334455"
    assert (contact["firstName"], contact["lastName"]) == ("Ana María", "Pérez")
    searches = world.zoho.calls("GET", "/contacts/search")
    assert [c.query for c in searches] == [{"mobile": ["+5491122334455"], "limit": ["1"]},
                                          {"phone": ["+5491122334455"], "limit": ["1"]}]
    assert client.ensure_contact("5491122334455", "Ana", "WhatsApp {phone}") == first
    assert len(world.zoho.calls("GET", "/contacts/search")) == 2  # remembered in Redis
    world.redis.flushdb()
    assert client.ensure_contact("5491122334455", None, "WhatsApp {phone}") == first  # found by search
    nameless = client.ensure_contact("5491199998888", None, "WhatsApp {phone}")
    assert world.zoho.contacts[nameless]["lastName"] == "WhatsApp +5491199998888"


def test_ticket_search_by_the_ledger_id(world):
    client = client_for(world)
    assert client.find_ticket_by_ref(REF_FIELD, "ledger-7") is None
    created = client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}, "cf": {REF_FIELD: "ledger-7"}})
    found = client.find_ticket_by_ref(REF_FIELD, "ledger-7")
    assert (found.id, found.number) == (created.id, created.number)
    [search] = world.zoho.calls("GET", "/tickets/search")[-1:]
    assert search.query["customField1"] == [f"{REF_FIELD}:ledger-7"]


def test_get_ticket_status_and_not_found(world):
    client = client_for(world)
    created = client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}})
    world.zoho.set_status(created.id, "On Hold", "On Hold")
    got = client.get_ticket(created.id)
    assert (got.status, got.status_type) == ("On Hold", "On Hold")
    with pytest.raises(ZohoNotFound):
        client.get_ticket("1892000000000000")


def test_422_carries_zohos_field_errors(world):
    client = client_for(world)
    with pytest.raises(ZohoPermanent) as raised:
        client.create_ticket({**TICKET, "departmentId": "999", "contactId": "123"})
    assert raised.value.status == 422 and raised.value.code == "INVALID_DATA"
    assert {e["fieldName"] for e in raised.value.field_errors} == {"/departmentId", "/contactId"}
    assert "/departmentId: invalid" in raised.value.describe()


def test_rate_limits_and_quota_are_told_apart(world):
    client = client_for(world)
    world.zoho.rate_limit(1, "TOO_MANY_REQUESTS")
    with pytest.raises(ZohoRateLimited) as busy:
        client.find_contact_by_phone("5491122334455")
    assert busy.value.code == "TOO_MANY_REQUESTS" and busy.value.retry_after is None
    world.zoho.rate_limit(1, "THRESHOLD_EXCEEDED", retry_after=7200)
    with pytest.raises(ZohoQuotaExceeded) as quota:
        client.find_contact_by_phone("5491122334455")
    assert quota.value.retry_after == 7200


def test_5xx_on_a_write_is_ambiguous_on_a_read_it_is_not(world):
    client = client_for(world)
    world.zoho.fail(1, status=503)
    with pytest.raises(ZohoTransient) as read:
        client.find_contact_by_phone("5491122334455")
    assert read.value.ambiguous is False
    world.zoho.fail(1, status=500, method="POST", path="/tickets", after=True)
    with pytest.raises(ZohoTransient) as write:
        client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}, "cf": {REF_FIELD: "ledger-9"}})
    assert write.value.ambiguous is True
    assert len(world.zoho.tickets_with_ref("ledger-9")) == 1  # it was created after all


def test_a_slow_answer_times_out(world):
    client = client_for(world, read_timeout=0.5)
    client.find_contact_by_phone("5491122334455")
    world.zoho.delay(1.5, method="POST", path="/tickets", after=True)
    started = time.monotonic()
    with pytest.raises(ZohoTransient) as raised:
        client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}})
    assert time.monotonic() - started < 1.4
    assert raised.value.ambiguous is True


def test_connection_refused_is_not_ambiguous(world):
    client = client_for(world)
    client.find_contact_by_phone("5491122334455")
    world.zoho.go_down()
    with pytest.raises(ZohoTransient) as raised:
        client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}})
    assert raised.value.ambiguous is False
    world.zoho.come_up()


def test_comments_and_multipart_attachments(world, tmp_path: Path):
    client = client_for(world)
    created = client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}})
    comment_id = client.add_comment(created.id, "también falla la caja 3")
    [comment] = world.zoho.comments[created.id]
    assert comment["id"] == comment_id and comment["isPublic"] is False
    assert comment["contentType"] == "plainText"
    assert client.list_comments(created.id)[0]["content"] == "también falla la caja 3"
    photo = tmp_path / "pantalla error.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    stored = client.upload_attachment(created.id, str(photo))
    [attachment] = world.zoho.attachments[created.id]
    assert stored["id"] == attachment["id"]
    assert attachment["name"] == "pantalla error.png" and attachment["_content_type"] == "image/png"
    assert world.zoho.attachment_bytes[attachment["id"]] == photo.read_bytes()
    assert attachment["isPublic"] is False
    assert [a["name"] for a in client.list_attachments(created.id)] == ["pantalla error.png"]


def test_a_create_answered_2xx_without_the_ticket_is_ambiguous(world):
    client = client_for(world)
    world.zoho.answer_empty(1, method="POST", path="/tickets")
    with pytest.raises(ZohoTransient) as raised:
        client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}, "cf": {REF_FIELD: "ledger-8"}})
    assert raised.value.ambiguous  # Zoho made it: search before creating again
    assert len(world.zoho.tickets_with_ref("ledger-8")) == 1


def test_a_forgotten_contact_is_searched_again_and_a_newer_one_is_kept(world):
    client = client_for(world)
    first = client.ensure_contact("5491122334455", "Ana Pérez", "WhatsApp {phone}")
    world.zoho.delete_contact(first)
    client.forget_contact("5491122334455", "some-other-id")  # not the remembered one: kept
    assert client.ensure_contact("5491122334455", None, "WhatsApp {phone}") == first
    client.forget_contact("5491122334455", first)
    second = client.ensure_contact("5491122334455", "Ana Pérez", "WhatsApp {phone}")
    assert second != first and world.zoho.contacts[second]["mobile"] == "+5491122334455"
    assert client.ensure_contact("5491122334455", None, "WhatsApp {phone}") == second  # remembered again


def test_every_call_is_timed_in_the_shared_latency_histogram(world):
    """zoho_api_latency_seconds{operation,status}: one observation per HTTP call, ids folded
    into `{id}`, the status class; read back as the scrape reads it (helpdesk.metrics)."""
    client = client_for(world)
    created = client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}})
    client.get_ticket(created.id)
    with pytest.raises(ZohoNotFound):
        client.get_ticket("1892000000000000")
    counts = {tuple(sorted(s.labels.items())): s.value
              for s in ZOHO_API_LATENCY.read(world.redis).samples
              if s.name == "zoho_api_latency_seconds_count"}
    assert counts[(("operation", "POST /tickets"), ("status", "2xx"))] == 1
    assert counts[(("operation", "GET /tickets/{id}"), ("status", "2xx"))] == 1
    assert counts[(("operation", "GET /tickets/{id}"), ("status", "4xx"))] == 1
