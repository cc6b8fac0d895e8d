"""Back from a person, end to end through the real stack (issue 15).

WAHA webhook in -> the Rasa server (the real model and rules) -> the action server's handoff
(the pause, the mark, the Chatwoot handoff queued) -> a real RQ worker (`workers.worker --burst`)
-> the session's fake Chatwoot; the user writes while paused (nothing, a thanks, a new
incident, a question, a second request for a person); the agent's
`conversation_status_changed` "resolved" webhook posted to the Rasa server's Chatwoot route ->
the resume job in a real RQ worker -> Rasa's HTTP API -> the WAHA channel's output -> the fake
WAHA. Each time the bot says it is back, is not paused, did not hand over again, and answers
the next message. (A paused conversation whose mark is gone: tests/faults/test_handoff_mark_lost.py.)
"""

import pytest

from tests.integration.handback_steps import (
    RESUMED,
    assert_back_with_the_bot,
    hand_over,
    resolve,
    run_worker,
    write_while_paused,
)
from tests.integration.whatsapp_fixtures import (  # noqa: F401 - fixtures
    _fresh_waha,
    client,
    number,
)

pytestmark = pytest.mark.usefixtures("stack")


# issue 15: whatever the user wrote meanwhile ---------------------------------------------------
MEANWHILE = {
    "nothing": [],
    "a thanks": ["gracias, espero"],
    "a new incident": ["la caja 2 no enciende en la tienda 9"],
    "a question": ["¿cómo reinicio la impresora fiscal?"],
    "a second request for a person": ["quiero hablar con una persona", "sigo esperando"],
}


@pytest.mark.parametrize("meanwhile", list(MEANWHILE.values()), ids=list(MEANWHILE))
def test_the_bot_comes_back_when_the_agent_resolves(stack, fake_waha, fake_chatwoot, client, bot_ledger,
                                                    number, meanwhile):
    conversation = hand_over(stack, fake_waha, fake_chatwoot, client, number)
    write_while_paused(stack, fake_waha, number, meanwhile)
    if meanwhile:
        run_worker(stack)
        incoming = [c for t, c in fake_chatwoot.contents(conversation["id"], private=False) if t == "incoming"]
        assert incoming[-len(meanwhile):] == meanwhile  # the agent read them

    resolve(stack, fake_chatwoot, conversation)
    run_worker(stack)

    assert_back_with_the_bot(stack, fake_waha, client, bot_ledger, number, RESUMED)
    assert conversation["status"] == "pending"  # back in the bot's queue
