"""Delivery that recovers by itself from what agents and Zoho do to it (issue 13): a
remembered contact an agent deleted or merged, and a create answered 2xx without the ticket."""
from helpdesk import redis_keys
from helpdesk.tickets import DELIVERED
from tests.fakes.zoho import REF_FIELD
from tests.workers.zoho_support import run_burst, world  # noqa: F401 - fixtures

PHONE = "5491122334455"


def deliver(world, started: float):
    record = world.submit(started=started)
    world.enqueue(record)
    run_burst(world.env)
    delivered = world.ledger.get(record.id)
    assert delivered.state == DELIVERED, delivered.last_error
    return delivered


def contact_of(world, record) -> str:
    [ticket] = world.zoho.tickets_with_ref(record.id)
    return ticket["contactId"]


def test_a_contact_an_agent_deleted_is_created_again_and_the_ticket_delivered(world):
    first = deliver(world, started=1.0)
    old_contact = contact_of(world, first)
    assert world.redis.get(redis_keys.zoho_contact(PHONE)) == old_contact.encode()  # remembered 30 days
    world.zoho.delete_contact(old_contact)

    second = deliver(world, started=2.0)

    assert second.failure_kind is None and world.ledger.human_notices() == []
    [ticket] = world.zoho.tickets_with_ref(second.id)
    new_contact = ticket["contactId"]
    assert new_contact != old_contact and new_contact in world.zoho.contacts
    assert world.zoho.contacts[new_contact]["mobile"] == "+" + PHONE
    # Zoho refused the old id once (its 422 shape), the create went out again once
    creates = [c for c in world.zoho.calls("POST", "/tickets") if (c.json or {}).get("cf", {}).get(REF_FIELD) == second.id]
    assert [(c.status, c.json["contactId"]) for c in creates] == [(422, old_contact), (200, new_contact)]
    assert world.redis.get(redis_keys.zoho_contact(PHONE)) == new_contact.encode()
    assert world.ledger.get(second.id).zoho_contact_id == new_contact
    assert second.zoho_ticket_number == ticket["ticketNumber"]
    # the user is told the number of the ticket that exists
    told = [t.entities["ticket_number"] for t in world.rasa.triggered("EXTERNAL_ticket_delivered")]
    assert ticket["ticketNumber"] in told

    # the next ticket of that reporter uses the new contact straight away
    third = deliver(world, started=3.0)
    assert contact_of(world, third) == new_contact
    assert len(world.zoho.contacts) == 1


def test_a_contact_an_agent_merged_into_another_is_found_again_by_phone(world):
    first = deliver(world, started=1.0)
    old_contact = contact_of(world, first)
    _, _, kept = world.zoho._create_contact({"lastName": "Pérez", "firstName": "Ana María"})  # the agent's
    world.zoho.merge_contacts(kept["id"], old_contact)

    second = deliver(world, started=2.0)

    assert contact_of(world, second) == kept["id"]
    assert list(world.zoho.contacts) == [kept["id"]]  # found by its phone, none created
    assert len(world.zoho.calls("POST", "/contacts")) == 1  # the first ticket's only
    assert world.ledger.human_notices() == []


def test_a_contact_refused_again_after_resolving_it_is_a_dead_letter_after_one_retry(world):
    # Zoho keeps refusing the contact: one new resolution and one more create, then a dead letter
    deliver(world, started=1.0)
    world.zoho.reject(None, [{"fieldName": "/contactId", "errorType": "invalid"}])
    record = world.submit(started=2.0)
    world.enqueue(record)

    run_burst(world.env)

    failed = world.ledger.get(record.id)
    assert failed.failure_kind == "rejected" and "/contactId: invalid" in failed.last_error
    posts = [c for c in world.zoho.calls("POST", "/tickets") if c.status == 422]
    assert len(posts) == 2
    assert world.zoho.tickets_with_ref(record.id) == []
    [notice] = world.ledger.human_notices()
    assert notice["kind"] == "ticket_rejected"


def test_a_2xx_without_the_ticket_is_searched_for_before_any_new_create(world):
    world.zoho.answer_empty(1, method="POST", path="/tickets")  # created, answered 200 with no body
    record = world.submit()
    world.enqueue(record)

    run_burst(world.env)

    [ticket] = world.zoho.tickets_with_ref(record.id)
    assert len(world.zoho.calls("POST", "/tickets")) == 1  # never created again
    [search] = world.zoho.calls("GET", "/tickets/search")
    assert search.query["customField1"] == [f"{REF_FIELD}:{record.id}"]
    delivered = world.ledger.get(record.id)
    assert delivered.state == DELIVERED
    assert (delivered.zoho_ticket_id, delivered.zoho_ticket_number) == (ticket["id"], ticket["ticketNumber"])
    assert delivered.attempts == 1  # the lost answer counted as one transient attempt
