"""Parts of the turn (connectors/whatsapp/turn.py) that need no Rasa agent, through the WAHA
channel with the test Redis behind it: the text Rasa gets for a message (opt words, button
replies, typed "/…", locations, media fetched from the fake WAHA or refused), the metadata,
and the group gate before a model is loaded. The whole turn, with Rasa, runs in
tests/integration/test_whatsapp.py."""
import asyncio
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest
import redis
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from connectors.meta import MetaInput
from connectors.waha import WahaInput
from connectors.whatsapp.turn import OPT_INTENTS, SHARE_FILE
from helpdesk import redis_keys
from helpdesk.logs import METADATA_KEY
from helpdesk.config import load_channel_config
from helpdesk.whatsapp import InboundMessage, Media
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    CHANNELS_YML,
    GROUP,
    OTHER,
    USER,
    WAHA_CHAT,
    channel_env,
    close_channel,
    fake_meta,
    fake_waha,
    fresh,
    inbound_entries,
    meta_delivery,
    meta_message,
    meta_settings,
    meta_text,
    meta_value,
    run,
    tiny_config,
    waha_settings,
    webhook_request,
)
from tests.fakes.gateways import FakeObjectStore

GROUP_CONVERSATION = f"g{GROUP.split('@')[0]}-{USER}"


def message(text: str = "hola", **fields: Any) -> InboundMessage:
    values: Dict[str, Any] = dict(channel="waha", message_id="m1", conversation_id=USER,
                                  chat_id=f"{USER}@c.us", kind="text", text=text)
    values.update(fields)
    return InboundMessage(**values)


def with_channel(work, waha_url: Optional[str] = None):
    """Run `work(channel)` (plain or async) on a fresh WAHA channel, in one loop, and close it."""
    async def scenario():
        channel = fresh(WahaInput, waha_settings(waha_url) if waha_url else waha_settings())
        try:
            result = work(channel)
            return await result if asyncio.iscoroutine(result) else result
        finally:
            await channel.client.close()
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


def test_unanswered_group_messages_go_with_the_next_answered_one_not_to_rasa(channel_env,
                                                                           redis_client):
    """Read, not answered: kept (groups.context_*) and handed to Rasa only in the metadata of
    the participant's next message the bot answers, once; another participant's are theirs."""
    handed = []

    def group_message(text: str, number: int, conversation: str = GROUP_CONVERSATION,
                      **fields: Any) -> InboundMessage:
        return message(text, message_id=f"m{number}", conversation_id=conversation,
                       chat_id=GROUP, is_group=True, participant=f"{USER}@c.us", **fields)

    async def scenario(channel):
        async def on_new_message(user_message):
            handed.append((user_message.text, user_message.metadata.get("group_context")))

        channel.on_new_message = on_new_message
        channel.config = tiny_config()
        await channel.run_turn([group_message("buen día a todos", 1)], recovered=False)
        await channel.run_turn([group_message("desde las 8 la caja dos se reinicia sola", 2)],
                               recovered=False)
        await channel.run_turn([group_message("buen día", 3, f"g{GROUP.split('@')[0]}-{OTHER}")],
                               recovered=False)
        await channel.run_turn([group_message("se cayó el sistema", 4, mentions_bot=True)],
                               recovered=False)
        await channel.run_turn([group_message("¿alguna novedad?", 5, mentions_bot=True)],
                               recovered=False)
        await channel.shared.delivery.stop()

    with_channel(scenario)
    assert handed == [
        ("se cayó el sistema", ["buen día a todos", "desde las 8 la caja dos se reinicia sola"]),
        ("¿alguna novedad?", None),
    ]
    other = redis_keys.group_context(f"g{GROUP.split('@')[0]}-{OTHER}")
    assert [json.loads(raw)["text"] for raw in redis_client.lrange(other, 0, -1)] == ["buen día"]
    assert 0 < redis_client.ttl(other) <= 10 * 60


# --- media ---------------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32
HTML = b"<!DOCTYPE html><html><script>fetch('/steal')</script></html>"
UNAVAILABLE = load_channel_config(CHANNELS_YML).text("media_unavailable")


@pytest.fixture
def media_env(channel_env, monkeypatch, tmp_path) -> Iterator[Path]:
    """Media stored under a fresh var/ for the test."""
    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path))
    yield tmp_path / "media"


@pytest.fixture
def other_host() -> Iterator[FakeObjectStore]:
    """Another loopback address than the fake WAHA's: what a forged media.url points at."""
    with FakeObjectStore(host="127.0.0.2") as server:
        yield server


def media_message(url: str, mime: Optional[str], text: str = "",
                  filename: Optional[str] = None, kind: str = "image") -> InboundMessage:
    return message(text, kind="media",
                   media=Media(kind=kind, mime_type=mime, url=url, filename=filename))


def text_of_media(fake_waha, inbound: InboundMessage, metadata: Dict[str, Any]) -> str:
    return with_channel(lambda channel: channel._text_of(inbound, metadata),
                        waha_url=fake_waha.url)


def test_media_on_another_host_is_not_fetched_the_user_is_told_and_the_caption_counts(
        media_env, fake_waha, other_host, caplog):
    other_host.files["/bucket/foto.jpg"] = (JPEG, "image/jpeg")
    url = f"{other_host.url}/bucket/foto.jpg?X-Amz-Signature=s3cr3t"
    metadata: Dict[str, Any] = {}
    with caplog.at_level(logging.INFO):
        text = text_of_media(fake_waha, media_message(url, "image/jpeg", "no imprime"),
                             metadata)
    assert text == "no imprime" and "media" not in metadata
    assert other_host.requests == []  # nothing at all reached it, so never the key
    assert fake_waha.texts(WAHA_CHAT) == [UNAVAILABLE]
    skipped = [r for r in caplog.records if r.getMessage() == "media not fetched"]
    assert len(skipped) == 1 and "127.0.0.2" in skipped[0].error
    assert "s3cr3t" not in caplog.text and "/bucket/foto.jpg" not in caplog.text
    assert not media_env.exists()


def test_a_redirect_to_another_host_is_not_followed_in_the_turn(media_env, fake_waha,
                                                                 other_host):
    other_host.files["/foto.jpg"] = (JPEG, "image/jpeg")
    fake_waha.redirects["/api/files/default/x.jpg"] = (302, f"{other_host.url}/foto.jpg")
    text = text_of_media(fake_waha, media_message(f"{fake_waha.url}/api/files/default/x.jpg",
                                                  "image/jpeg", "mire"), {})
    assert text == "mire"
    assert other_host.requests == []
    assert fake_waha.texts(WAHA_CHAT) == [UNAVAILABLE]


def test_a_mislabelled_file_is_refused_and_the_caption_still_counts(media_env, fake_waha,
                                                                    caplog):
    fake_waha.files["/api/files/default/x.jpg"] = (HTML, "image/jpeg")
    metadata: Dict[str, Any] = {}
    with caplog.at_level(logging.INFO):
        text = text_of_media(fake_waha, media_message(
            f"{fake_waha.url}/api/files/default/x.jpg", "image/jpeg", "la foto"), metadata)
    assert text == "la foto" and "media" not in metadata
    assert fake_waha.texts(WAHA_CHAT) == [UNAVAILABLE]
    skipped = [r for r in caplog.records if r.getMessage() == "media not fetched"]
    assert "text/html" in skipped[0].error and skipped[0].refused
    assert not media_env.exists()


def test_a_real_jpeg_with_a_wrong_claimed_type_is_stored_as_a_jpeg(media_env, fake_waha):
    fake_waha.files["/api/files/default/doc.pdf"] = (JPEG, "application/pdf")
    metadata: Dict[str, Any] = {}
    inbound = media_message(f"{fake_waha.url}/api/files/default/doc.pdf", "application/pdf",
                            filename="../../.env", kind="document")
    assert text_of_media(fake_waha, inbound, metadata) == SHARE_FILE
    [stored] = metadata["media"]
    assert stored["mime_type"] == "image/jpeg" and stored["kind"] == "image"
    assert Path(stored["path"]).parent.parent == media_env
    assert Path(stored["path"]).name == f"{stored['sha256']}.jpg"
    assert stored["filename"] == "env.jpg"  # the sender's name, cleaned, display only
    assert Path(stored["path"]).read_bytes() == JPEG
    assert fake_waha.texts(WAHA_CHAT) == []


def test_a_recovered_batch_runs_only_what_no_turn_on_the_tracker_handled(channel_env):
    """The first run merged m1 and m2 into one turn (Rasa records m1's id and both in the
    metadata); after a restart the batch is m1, m2, m3: only m3 is new."""
    done = DialogueStateTracker.from_events(USER, [
        UserUttered("hola\nla caja 3", message_id="m1", metadata={"message_ids": ["m1", "m2"]}),
    ])

    async def work(channel):
        async def tracker_of(conversation):
            return done if conversation == USER else None

        channel._tracker = tracker_of  # what the store holds, without a Rasa agent
        batch = [message(text, message_id=mid)
                 for text, mid in (("hola", "m1"), ("la caja 3", "m2"), ("no enciende", "m3"))]
        return [m.message_id for m in await channel._not_processed(USER, batch)]

    assert with_channel(work) == ["m3"]


# --- Meta edits and deletions (issue 12) ---------------------------------------------------

META_SECRET = "meta-app-secret"


def meta_edit(original: str, text: str, sender: str = USER) -> Dict[str, Any]:
    return meta_message("edit", {"original_message_id": original,
                                 "message": {"type": "text", "text": {"body": text}}},
                        sender=sender)


def meta_turns(fake_meta, deliveries, turns_of, monkeypatch):
    """Each delivery through the signed Meta webhook (parse, acceptance), then the turn of
    the stream entries `turns_of` picks (by position), in order, with Chatwoot configured (its
    copy of the conversation is the Redis outbox a worker would write from). What Rasa was
    handed, as texts."""
    for name, value in (("CHATWOOT_URL", "http://127.0.0.1:9"), ("CHATWOOT_API_TOKEN", "t"),
                        ("CHATWOOT_ACCOUNT_ID", "1"), ("CHATWOOT_INBOX_ID", "1")):
        monkeypatch.setenv(name, value)
    handed = []

    async def on_new_message(user_message):
        handed.append(user_message.text)

    async def scenario():
        channel = fresh(MetaInput, meta_settings(fake_meta.url, app_secret=META_SECRET))
        channel.config = tiny_config()
        channel.on_new_message = on_new_message
        try:
            for delivery in deliveries:
                body = json.dumps(delivery).encode()
                signature = "sha256=" + hmac.new(META_SECRET.encode(), body,
                                                        hashlib.sha256).hexdigest()
                answer = await channel.receive(
                    webhook_request({"X-Hub-Signature-256": signature}, body))
                assert answer.status == 200 and json.loads(answer.body)["accepted"] == 1
            client = redis.Redis.from_url(channel.shared.settings.redis_url)
            entries = [InboundMessage.from_json(e[1][b"m"]) for e in inbound_entries(client)]
            client.close()
            for position in turns_of:
                await channel.run_turn([entries[position]], recovered=False)
        finally:
            await channel.shared.delivery.stop()
            await close_channel(channel)

    run(scenario())
    return handed


def agents_saw(redis_client, conversation=USER):
    return [json.loads(raw)["text"] for raw in
            redis_client.lrange(redis_keys.chatwoot_outbox(conversation), 0, -1)]


def test_an_edit_before_the_turn_replaces_the_text_rasa_gets(channel_env, redis_client,
                                                            fake_meta, monkeypatch):
    """The original still waits in the inbound log when its edit arrives: its turn reads the
    edited text; the edit's own turn answers nothing (no notice, no second Rasa turn) and
    shows agents the edit."""
    original = meta_text("la caja 2 no enciende", message_id="wamid.ORIGINAL")
    edit = meta_edit("wamid.ORIGINAL", "la caja 3 no enciende")
    handed = meta_turns(fake_meta, [meta_delivery(meta_value([original])),
                                    meta_delivery(meta_value([edit]))], [0, 1], monkeypatch)
    assert handed == ["la caja 3 no enciende"]
    assert fake_meta.messages() == []  # nothing said to the user by the channel itself
    assert agents_saw(redis_client) == ["la caja 3 no enciende",
                                        "(mensaje editado): la caja 3 no enciende"]


def test_an_edit_or_revoke_after_the_turn_is_recorded_not_answered(channel_env, redis_client,
                                                                  fake_meta, monkeypatch,
                                                                  caplog):
    original = meta_text("la caja 2 no enciende", message_id="wamid.FIRST")
    edit = meta_edit("wamid.FIRST", "la caja 3 no enciende")
    revoke = meta_message("revoke", {"original_message_id": "wamid.FIRST"})
    with caplog.at_level(logging.INFO, logger="connectors.whatsapp.turn"):
        # the original's turn runs before the edit arrives, then the edit's, then the revoke's
        handed = meta_turns(fake_meta, [meta_delivery(meta_value([original]))], [0],
                            monkeypatch)
        handed += meta_turns(fake_meta, [meta_delivery(meta_value([edit])),
                                         meta_delivery(meta_value([revoke]))], [1, 2],
                             monkeypatch)
    assert handed == ["la caja 2 no enciende"]  # one Rasa turn, the original's
    assert fake_meta.messages() == []  # never the "unsupported" notice
    assert agents_saw(redis_client) == ["la caja 2 no enciende",
                                        "(mensaje editado): la caja 3 no enciende",
                                        "(mensaje eliminado por el usuario)"]
    recorded = [r for r in caplog.records if "recorded, not answered" in r.getMessage()]
    assert [(r.original_id, r.conversation_id) for r in recorded] == [
        ("wamid.FIRST", USER), ("wamid.FIRST", USER)]
