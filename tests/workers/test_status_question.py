"""The status question ("¿cómo va el ticket …?") answered from Zoho Desk, and from the ledger
when Zoho cannot answer, through the real action, a real delivery and the fake Zoho."""
import asyncio

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from tests.workers.zoho_support import run_burst, world  # noqa: F401 - fixture


def ask_status(number: str):
    from actions.common import get_ledger
    from actions.ticket_status import ActionTicketStatus

    get_ledger.cache_clear()
    tracker = Tracker("5491122334455", {"ticket_number": number}, {"intent": {"name": "ask_ticket_status"}},
                      [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionTicketStatus().run(dispatcher, tracker, {}))
    assert len(dispatcher.messages) == 1
    return dispatcher.messages[0]


def test_status_comes_from_zoho_and_from_the_ledger_when_zoho_is_down(world):  # noqa: F811
    record = world.submit()
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.state == "delivered" and record.zoho_ticket_id

    world.zoho.set_status(record.zoho_ticket_id, "On Hold", "On Hold")
    live = ask_status(record.reference)
    assert live["response"] == "utter_ticket_status"
    assert live["status"] == "en espera"  # Zoho's "On Hold" as config/zoho.yml labels it
    assert world.ledger.get(record.id).zoho_status == "On Hold"
    assert any(call.path.endswith(f"/tickets/{record.zoho_ticket_id}")
               for call in world.zoho.calls("GET"))

    world.zoho.go_down()
    offline = ask_status(record.zoho_ticket_number)
    assert offline["response"] == "utter_ticket_status_offline"
    assert offline["status"] == "en espera"  # the last status Zoho gave
