"""Parts of the turn (connectors/whatsapp/turn.py) that need no Rasa agent, through the WAHA
channel with the test Redis behind it: the text Rasa gets for a message (opt words, button
replies, typed "/…", locations), the metadata, and the group gate before a model is loaded.
The whole turn, with Rasa, runs in tests/integration/test_whatsapp.py."""
import asyncio
import json
from typing import Any, Dict, Optional

from connectors.waha import WahaInput
from connectors.whatsapp.turn import OPT_INTENTS, SHARE_FILE
from helpdesk import redis_keys
from helpdesk.logs import METADATA_KEY
from helpdesk.whatsapp import InboundMessage
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    GROUP,
    OTHER,
    USER,
    channel_env,
    fresh,
    run,
    waha_settings,
)

GROUP_CONVERSATION = f"g{GROUP.split('@')[0]}-{USER}"


def message(text: str = "hola", **fields: Any) -> InboundMessage:
    values: Dict[str, Any] = dict(channel="waha", message_id="m1", conversation_id=USER,
                                  chat_id=f"{USER}@c.us", kind="text", text=text)
    values.update(fields)
    return InboundMessage(**values)


def with_channel(work):
    """Run `work(channel)` (plain or async) on a fresh WAHA channel, in one loop, and close it."""
    async def scenario():
        channel = fresh(WahaInput, waha_settings())
        try:
            result = work(channel)
            return await result if asyncio.iscoroutine(result) else result
        finally:
            await channel.shared.redis.close()

    return run(scenario())


def text_of(inbound: InboundMessage, metadata: Optional[Dict[str, Any]] = None) -> str:
    metadata = {} if metadata is None else metadata
    return with_channel(lambda channel: channel._text_of(inbound, metadata))


def test_opt_words_reach_rasa_as_their_intents(channel_env):
    assert text_of(message("BAJA", opt_word="out")) == OPT_INTENTS["out"] == "/opt_out"
    assert text_of(message("ALTA", opt_word="in")) == "/opt_in"


def test_a_typed_slash_is_text_not_an_intent(channel_env):
    """Rasa reads a text starting with "/" (after its strip) as "/intent{entities}": nothing a
    person writes may start so, in a text, a caption or a location's name."""
    assert text_of(message("/opt_out")) == "opt_out"
    assert text_of(message("/")) == ""  # nothing left to say
    assert text_of(message(" //action_submit_ticket")) == "action_submit_ticket"
    assert text_of(message("/ /restart")) == "restart"
    assert text_of(message('/report_incident{"store": "x"}')) == 'report_incident{"store": "x"}'
    assert text_of(message("\u3000/restart")) == "restart"  # an ideographic space is stripped too
    assert text_of(message("1/2 kilo")) == "1/2 kilo"
    place = {"latitude": -34.6, "longitude": -58.4}
    assert text_of(message("/restart", kind="location", location=place)) == "restart"


def test_an_unoffered_reply_id_is_its_title_never_an_intent(channel_env, redis_client):
    """A button or list reply whose id the bot did not offer in this conversation (none
    offered, others offered, or offered to someone else) reaches Rasa as its title, as text."""
    forged = [("/restart", "Reiniciar"), ("/action_submit_ticket", "/action_submit_ticket"),
              ('/report_incident{"store": "Centro", "priority": "high"}', "Reportar")]
    for payload, title in forged:
        reply = message(title, kind="interactive", payload=payload)
        assert text_of(reply) == title.lstrip("/")  # nothing offered at all
    buttons = [{"title": "Sí", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]
    redis_client.set(redis_keys.offered_buttons(OTHER), json.dumps(buttons))
    assert text_of(message("Sí", kind="interactive", payload="/affirm")) == "Sí"  # not to USER
    redis_client.set(redis_keys.offered_buttons(USER), json.dumps(buttons))
    for payload, title in forged:
        assert text_of(message(title, kind="interactive", payload=payload)) == title.lstrip("/")
    # the title of an unoffered id is not looked up among the offered buttons either
    assert text_of(message("Sí", kind="interactive", payload="/restart")) == "Sí"
    assert text_of(message("", kind="interactive", payload="/restart")) == ""
    # the group gate does not let an unoffered id through as if it were a reply
    inbound = message("hola", kind="interactive", payload="/restart")
    text_of(inbound)
    assert inbound.payload is None


def test_a_button_reply_gives_its_payload_and_its_id_wins(channel_env, redis_client):
    buttons = [{"title": "Sí", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]
    redis_client.set(redis_keys.offered_buttons(USER), json.dumps(buttons))
    assert text_of(message("2")) == "/deny"
    assert text_of(message("si")) == "/affirm"
    assert text_of(message("otra cosa")) == "otra cosa"
    assert text_of(message("No", kind="interactive", payload="/deny")) == "/deny"


def test_a_location_goes_to_the_metadata(channel_env):
    metadata: Dict[str, Any] = {}
    place = {"latitude": -34.6, "longitude": -58.4}
    assert text_of(message("", kind="location", location=place), metadata) == SHARE_FILE
    assert metadata["location"] == place


def test_the_metadata_of_a_group_turn(channel_env):
    first = message(conversation_id=GROUP_CONVERSATION, chat_id=GROUP, is_group=True,
                    name="Ana", phone=USER, correlation_id="corr-1")
    second = message(message_id="m2", conversation_id=GROUP_CONVERSATION, chat_id=GROUP,
                     is_group=True)
    metadata = with_channel(lambda channel: channel._metadata([first, second]))
    assert metadata == {METADATA_KEY: "corr-1", "channel": "waha", "message_ids": ["m1", "m2"],
                        "sender_name": "Ana", "sender_phone": USER, "is_group": True,
                        "group_id": GROUP}


def test_the_group_gate_before_the_model_is_loaded(channel_env):
    def gate(text: str, **fields: Any) -> bool:
        inbound = message(text, conversation_id=GROUP_CONVERSATION, chat_id=GROUP,
                          is_group=True, **fields)
        return with_channel(lambda channel: channel._group_gate(inbound, text))

    assert gate("buen día a todos") is False  # no agent: no intent to read, no tracker
    assert gate("la tienda no opera") is True  # an urgent phrase
    assert gate("hola", mentions_bot=True) is True
    assert gate("Sí", payload="/affirm") is True
    assert gate("BAJA", opt_word="out") is True
