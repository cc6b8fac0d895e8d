"""Screenshots read into the ticket (actions/vision.py through validate_ticket_form), against
a fake OpenAI-compatible server used by the real client, and without an LLM."""
import asyncio
import threading
import time

import pytest

from actions import vision
from actions.ticket_extras import current_error_messages
from actions.ticket_submit import ActionSubmitTicket
from helpdesk.whatsapp import media
from tests.actions.helpers import Conversation, slot_events
from tests.actions.llm_env import VISION_MODEL, configure, form_turn, run
from tests.fakes.openai_server import FakeOpenAI, Reply

PNG = b"\x89PNG\r\n\x1a\n fake screenshot of an E-210 error"
READING = {
    "error_messages": ["Error E-210: impresora fiscal bloqueada", "Llame a soporte"],
    "system": "impresora fiscal",
    "store": "Tienda 42",
    "description": "La impresora fiscal muestra el error E-210 y no imprime.",
}


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(redis_client):
    vision._recent.clear()
    yield
    vision._recent.clear()


@pytest.fixture
def screenshot(tmp_path):
    """A PNG the channel stored (var/ is the test's temporary directory)."""
    return media.store(PNG, "image/png", "image").to_dict()


def with_llm(monkeypatch, tmp_path, redis_url, fake=None, **config):
    configure(monkeypatch, tmp_path, redis_url, fake, known_fixes={"enabled": False}, **config)


def image_only(conversation: Conversation, stored: dict) -> Conversation:
    """A photo without text: /share_file, the file kept, then the form starts."""
    conversation.user("/share_file", "share_file", metadata={"media": [stored]})
    conversation.action("action_receive_file")
    conversation.slot("attachments", [stored["path"]])
    return conversation


def test_an_image_fills_every_empty_slot(monkeypatch, tmp_path, redis_url, fake, screenshot,
                                         conversation, catalog):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json(READING))

    events, dispatcher = form_turn(image_only(conversation, screenshot))

    filled = slot_events(events)
    assert filled["store"] == catalog.find_store("tienda 42").display == "Tienda 42 (Avenida)"
    assert filled["system"] == "impresora fiscal"
    assert filled["description"] == READING["description"]
    assert filled["error_messages"] == READING["error_messages"]
    assert dispatcher.messages == []
    # the image itself went to the vision model, as a data URL of its bytes
    [request] = fake.chat_requests
    assert request.model == VISION_MODEL
    assert request.images == [("image/png", PNG)]
    assert "impresora fiscal" in request.text() and "otro" not in request.text().split(", ")
    # and stays attached
    assert conversation.tracker().get_slot("attachments") == [screenshot["path"]]


def test_what_the_user_said_is_never_replaced(monkeypatch, tmp_path, redis_url, fake, screenshot,
                                              conversation):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json({**READING, "store": "sucursal 7", "system": "balanza",
                               "description": "Otra cosa que el modelo cree ver."}))
    text = "no imprime la fiscal de la tienda 42, sale este error y se traba"
    conversation.user(text, "report_incident",
                      [("store", "tienda 42"), ("system", "impresora fiscal", "fiscal")],
                      metadata={"media": [screenshot]}, store="tienda 42",
                      system="impresora fiscal")

    events, _ = form_turn(conversation)

    slots = conversation.tracker().slots
    assert slots["store"] == "Tienda 42 (Avenida)"
    assert slots["system"] == "impresora fiscal"
    assert slots["description"] == text
    assert slots["error_messages"] == READING["error_messages"]
    assert slots["attachments"] == [screenshot["path"]]
    # the model's other store, system and description were not even proposed
    assert [e["value"] for e in events if e.get("name") == "store"] == ["Tienda 42 (Avenida)"]


def test_a_value_the_user_gave_earlier_stays(monkeypatch, tmp_path, redis_url, fake, screenshot,
                                             conversation):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json(READING))
    conversation.user("la balanza de la tienda 12", "report_incident",
                      [("system", "balanza"), ("store", "tienda 12")],
                      store="tienda 12", system="balanza")
    form_turn(conversation)
    conversation.form_asks("description")
    image_only(conversation, screenshot)

    form_turn(conversation)

    slots = conversation.tracker().slots
    assert slots["store"] == "Tienda 12 (Mitre)" and slots["system"] == "balanza"
    assert slots["description"] == READING["description"]  # it was empty
    assert slots["error_messages"] == READING["error_messages"]


def test_unknown_store_and_system_and_a_thin_description_are_not_used(
        monkeypatch, tmp_path, redis_url, fake, screenshot, conversation):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json({"error_messages": [], "system": "heladera industrial",
                               "store": "Sucursal Marte", "description": "Error"}))

    events, _ = form_turn(image_only(conversation, screenshot))

    assert not {"store", "system", "description", "error_messages"} & set(slot_events(events))


def test_without_an_llm_the_image_is_only_attached(monkeypatch, tmp_path, redis_url, screenshot,
                                                   conversation):
    with_llm(monkeypatch, tmp_path, redis_url)  # LLM_* unset

    events, dispatcher = form_turn(image_only(conversation, screenshot))

    assert not {"store", "system", "description", "error_messages"} & set(slot_events(events))
    assert conversation.tracker().get_slot("attachments") == [screenshot["path"]]


@pytest.mark.parametrize("failure", [
    Reply.slow(1.3, Reply.json(READING)),  # beyond the 1 s timeout of the test config
    Reply.refused("No puedo ayudar con esa imagen."),
    Reply.invalid_json(),
    Reply.json({"error_messages": "E-210", "system": None}),  # wrong shape
    Reply.server_error(500),
], ids=["timeout", "refusal", "invalid-json", "wrong-shape", "server-error"])
def test_a_failed_reading_leaves_the_description_to_ask(monkeypatch, tmp_path, redis_url, fake,
                                                         screenshot, conversation, failure):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(failure, Reply.server_error(500))  # a retry after the 5xx fails too
    conversation.user("la fiscal de la tienda 42", "report_incident",
                      [("store", "tienda 42"), ("system", "impresora fiscal", "fiscal")],
                      metadata={"media": [screenshot]}, store="tienda 42",
                      system="impresora fiscal")

    form_turn(conversation)

    slots = conversation.tracker().slots
    assert slots["description"] is None  # the form asks for it next, as without an LLM
    assert slots["error_messages"] == []
    assert slots["attachments"] == [screenshot["path"]]
    assert fake.chat_requests
    time.sleep(failure.delay and 0.4)  # the slow answer ends before the fake stops


def test_documents_and_missing_files_are_not_sent(monkeypatch, tmp_path, redis_url, fake,
                                                  conversation):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    pdf = media.store(b"%PDF-1.4 factura", "application/pdf", "document").to_dict()
    gone = {**media.store(b"\xff\xd8\xff jpeg", "image/jpeg", "image").to_dict(),
            "path": str(tmp_path / "deleted.jpg")}
    conversation.user("/share_file", "share_file", metadata={"media": [pdf, gone]})

    events, _ = form_turn(conversation)

    assert fake.chat_requests == []
    assert "description" not in slot_events(events)


def test_several_images_add_up_and_the_limit_holds(monkeypatch, tmp_path, redis_url, fake,
                                                   conversation):
    with_llm(monkeypatch, tmp_path, redis_url, fake,
             llm_changes={"screenshot": {"max_images_per_message": 2}})
    images = [media.store(PNG + bytes([n]), "image/png", "image").to_dict() for n in range(3)]
    fake.chat.push(Reply.json({**READING, "store": None, "description": None,
                               "error_messages": ["E-210"]}),
                   Reply.json({**READING, "system": None, "error_messages": ["E-210", "E-7"]}))
    conversation.user("/share_file", "share_file", metadata={"media": images})

    events, _ = form_turn(conversation)

    filled = slot_events(events)
    assert filled["error_messages"] == ["E-210", "E-7"]
    assert filled["system"] == "impresora fiscal" and filled["store"] == "Tienda 42 (Avenida)"
    assert len(fake.chat_requests) == 2  # the third image is only attached


def test_the_file_is_read_off_the_event_loop_thread(monkeypatch, tmp_path, redis_url, fake,
                                                    screenshot, conversation):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json(READING))
    threads = []
    original = vision.read_file

    def recording(path, max_bytes):
        threads.append(threading.current_thread())
        return original(path, max_bytes)

    monkeypatch.setattr(vision, "read_file", recording)
    form_turn(image_only(conversation, screenshot))
    assert threads and threads[0] is not threading.main_thread()


def test_error_messages_reach_the_ledger_and_do_not_leak_into_the_next_ticket(
        monkeypatch, tmp_path, redis_url, fake, screenshot, conversation, bot_ledger, domain):
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json(READING))
    image_only(conversation, screenshot)
    form_turn(conversation)
    conversation.form_asks("confirm_ticket")
    conversation.user("sí", "affirm")
    form_turn(conversation)
    conversation.deactivate_form()

    events, _ = run(ActionSubmitTicket(), conversation.tracker(), domain)

    [record] = bot_ledger.recent_for(conversation.sender_id, 5)
    assert record.error_messages == READING["error_messages"]
    assert record.attachments == [screenshot["path"]]
    assert record.store == "Tienda 42 (Avenida)" and record.system == "impresora fiscal"
    # a reset that misses the slot still leaves the next ticket without these messages
    conversation.apply([e for e in events if e.get("name") != "error_messages"])
    conversation.action("action_listen")
    conversation.user("la caja no enciende", "report_incident", [("system", "caja")],
                      system="caja")
    assert conversation.tracker().get_slot("error_messages") == READING["error_messages"]
    assert current_error_messages(conversation.tracker()) == []


def test_the_vision_call_does_not_block_the_loop(monkeypatch, tmp_path, redis_url, fake,
                                                  screenshot, conversation):
    """While the model takes its time, the action server's loop serves other work."""
    with_llm(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.slow(0.5, Reply.json(READING)))
    image_only(conversation, screenshot)
    tracker = conversation.form_validation_tracker()
    from actions.ticket_form import ValidateTicketForm
    from rasa_sdk.executor import CollectingDispatcher
    from tests.actions.helpers import domain_dict
    from tests.actions.llm_env import run_async

    async def both():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        events = await ValidateTicketForm().run(CollectingDispatcher(), tracker, domain_dict())
        task.cancel()
        return events, ticks

    events, ticks = run_async(both())
    assert slot_events(events)["system"] == "impresora fiscal"
    assert ticks >= 15  # about 25 in 0.5 s: the loop was free while waiting
