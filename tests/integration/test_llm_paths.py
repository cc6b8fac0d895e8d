"""The LLM uses through the whole bot: a second stack (Rasa server, action server) whose
LLM_* settings point at a fake OpenAI-compatible server on loopback, beside the session's
stack, which has no LLM. Each use is played with the LLM and without it:

- a how-to question: a grounded answer with its sources / the best passage quoted;
- an unsure message (NLU fallback): the LLM's intent handed back to Rasa / Rasa's fallback;
- a screenshot: what the vision model reads fills the ticket / the form asks;
- a voice note: transcribed, "Entendí: «…»", handled as text (without: the session stack's
  test_whatsapp asks the user to write);
- a known fix suggested before a ticket is opened (no LLM needed), solved or declined.

The second stack uses its own Redis database on the session's redis-server, so the two
stacks never read each other's inbound messages, trackers or caches.
"""
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import redis
import requests

from helpdesk.launch import stack_env
from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAI, Recorded, Reply
from tests import stack as session_stack
from tests.stack import (
    AUTH_TOKEN,
    META_SECRET,
    MODEL,
    REST_TOKEN,
    WAHA_HMAC,
    Stack,
    api_headers,
    gateway_env,
)
from tests.integration.whatsapp_payloads import meta_delivery, post_meta, post_waha, texts_to, waha_message

REFERENCE = re.compile(r"HD-[A-Z0-9]{6}")
HOWTO = "¿Cómo cambio el rollo de papel de la impresora fiscal?"
GROUNDED = "Abra la tapa, retire el rollo gastado y coloque el nuevo con el papel hacia afuera."
# messages the NLU may be unsure about; the test uses the first one the model is unsure of
UNSURE_CANDIDATES = [
    "y lo mío cómo va",
    "che y lo que les pasé ayer en qué quedó",
    "eso que mandé sigue igual",
    "qué onda con aquello",
    "mmm bueno no sé",
    "lo de siempre",
]
SCREENSHOT = {
    "error_messages": ["ERROR E-210: MEMORIA FISCAL LLENA"],
    "system": "impresora fiscal",
    "store": "Tienda 42",
    "description": "Aparece el error E-210 al emitir el comprobante.",
}
HEARD = "la caja 2 de la tienda 42 no enciende desde la mañana"


class FakeLlm:
    """The fake's answers, chosen from the request as a provider would."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.intents: Dict[str, Dict[str, Any]] = {}
        fake.chat.handler = self.chat
        fake.transcriptions.handler = lambda request: Reply.text(HEARD)

    def chat(self, request: Recorded) -> Reply:
        system = request.json["messages"][0]["content"]
        user = request.json["messages"][1]["content"]
        if request.images:
            return Reply.json(SCREENSHOT)
        if "clasificar un mensaje" in system:
            text = user.split("Mensaje:", 1)[-1].strip()
            return Reply.json(self.intents.get(text) or
                              {"intent": None, "confidence": 0.2, "entities": []})
        if "base de conocimiento" in system:
            return Reply.json({"covered": True, "answer": GROUNDED, "sources": [1]})
        return Reply.bad_request("fake: no answer for this prompt")

    def requests_with(self, marker: str) -> List[Recorded]:
        return [r for r in self.fake.chat_requests
                if marker in r.json["messages"][0]["content"]]


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLlm]:
    with FakeOpenAI() as server:
        yield FakeLlm(server)


@pytest.fixture(scope="module")
def llm_redis_url(redis_url: str) -> Iterator[str]:
    """Database 1 of the session's redis-server (the session stack uses 0)."""
    url = redis_url.rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def llm_stack(llm_redis_url, fake_llm, fake_waha, fake_meta) -> Iterator[Stack]:
    """The session stack's recipe (tests/stack.py `stack`), with LLM_* set."""
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: run `make train` (make test does it)")
    work = Path(tempfile.mkdtemp(prefix="helpdesk-it-llm-"))
    rasa_port, actions_port = free_port(), free_port()
    base_env = {**os.environ, **gateway_env(fake_waha, fake_meta),
                "HELPDESK_CONFIG_DIR": str(session_stack.test_config_dir(work)),
                "LLM_BASE_URL": fake_llm.fake.base_url, "LLM_API_KEY": "sk-test",
                "LLM_MODEL": "gpt-4o-mini", "LLM_VISION_MODEL": "gpt-4o",
                "LLM_TRANSCRIBE_MODEL": "whisper-1"}
    base_env.pop("LLM_EMBEDDING_MODEL", None)  # the index is built with the local embedder
    base_env.pop("LLM_FALLBACKS", None)
    env = stack_env(base_env, redis_url=llm_redis_url, rasa_port=rasa_port,
                    actions_port=actions_port, work_dir=work, model=MODEL, auth_token=AUTH_TOKEN,
                    rest_token=REST_TOKEN)
    logs = {"actions": work / "actions.log", "rasa": work / "rasa.log"}
    stack = Stack(rasa_url=f"http://127.0.0.1:{rasa_port}", actions_port=actions_port,
                  database_url=env["DATABASE_URL"], redis_url=llm_redis_url, logs=logs, env=env)
    try:
        stack.processes["actions"] = session_stack._start("actions", env, logs["actions"])
        stack.processes["rasa"] = session_stack._start("rasa", env, logs["rasa"])
        session_stack._wait_http(f"http://127.0.0.1:{actions_port}/health", 90, stack.processes["actions"],
                   logs["actions"])
        session_stack._wait_http(f"{stack.rasa_url}/webhooks/rest/", 240, stack.processes["rasa"], logs["rasa"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = requests.get(f"{stack.rasa_url}/status", headers=api_headers(), timeout=5)
            if status.ok and status.json().get("model_id"):
                break
            time.sleep(0.5)
        yield stack
    finally:
        for process in stack.processes.values():
            session_stack._stop(process)


@pytest.fixture
def sender() -> str:
    return f"it-llm-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def number() -> str:
    return "54911" + str(uuid.uuid4().int % 10**8).zfill(8)


def listed(value: Any) -> List[str]:
    return json.loads(value) if isinstance(value, str) else list(value)


def joined(texts: List[str]) -> str:
    return "\n".join(texts)


def parse(stack: Stack, text: str) -> Dict[str, Any]:
    answer = requests.post(f"{stack.rasa_url}/model/parse", headers=api_headers(),
                           json={"text": text}, timeout=30)
    answer.raise_for_status()
    return answer.json()


@pytest.fixture(scope="module")
def unsure_text(llm_stack) -> str:
    for text in UNSURE_CANDIDATES:
        if parse(llm_stack, text)["intent"]["name"] == "nlu_fallback":
            return text
    pytest.fail(f"the model is sure of every candidate; add one it is unsure of: {UNSURE_CANDIDATES}")


# --- startup ---------------------------------------------------------------------------------

def test_the_action_server_logs_the_llm_providers_at_start(llm_stack, fake_llm):
    port = fake_llm.fake.port
    assert f"LLM providers: 127.0.0.1:{port}#0" in llm_stack.log_text("actions")
    assert "sk-test" not in llm_stack.log_text("actions")


def test_without_an_llm_the_action_server_says_so_at_start(stack):
    assert "no LLM configured" in stack.log_text("actions")


# --- how-to questions ------------------------------------------------------------------------

def test_a_howto_question_gets_a_grounded_answer_with_its_sources(llm_stack, fake_llm, sender):
    texts = llm_stack.texts(sender, HOWTO)

    [request] = [r for r in fake_llm.requests_with("base de conocimiento")
                 if HOWTO in r.json["messages"][1]["content"]]
    passages = request.json["messages"][1]["content"]
    title = re.search(r"^\[1\] (.+?)(?: — .*)?$", passages, re.M).group(1)
    # the REST channel sends each paragraph as a message
    assert texts[:2] == [GROUNDED, f"Base de conocimiento: «{title}»"]
    assert "impresora fiscal" in title.lower()
    assert texts[2].startswith("Si esto no resuelve su consulta")


def test_a_howto_question_without_an_llm_quotes_the_best_passage(stack, sender):
    texts = stack.texts(sender, HOWTO)
    assert texts[0].startswith("Esto indica el artículo «")
    assert "impresora fiscal" in texts[0].split("»", 1)[0].lower()
    assert texts[-1].startswith("Si esto no resuelve su consulta")


# --- NLU fallback ----------------------------------------------------------------------------

def test_an_unsure_message_is_understood_by_the_llm(llm_stack, fake_llm, sender, unsure_text):
    fake_llm.intents[unsure_text] = {"intent": "ask_ticket_status", "confidence": 0.85,
                                     "entities": []}
    texts = llm_stack.texts(sender, unsure_text)

    assert texts == ["No encuentro tickets registrados desde este chat. Si tiene el número, "
                     "indíquelo (por ejemplo: HD-7K3M9Q)."]
    tracker = llm_stack.tracker(sender)
    users = [e for e in tracker["events"] if e["event"] == "user"]
    assert [u["parse_data"]["intent"]["name"] for u in users] == ["nlu_fallback",
                                                                   "ask_ticket_status"]
    assert users[1]["message_id"] == users[0]["message_id"]
    assert any(e["event"] == "rewind" for e in tracker["events"])
    assert tracker["latest_message"]["intent"]["name"] == "ask_ticket_status"
    assert tracker["latest_message"]["nlu_fallback"]["chosen_by"] == "llm"


def test_an_unsure_message_the_llm_cannot_place_gets_rasas_fallback(llm_stack, fake_llm, sender,
                                                                    unsure_text, llm_redis_url):
    fake_llm.intents.pop(unsure_text, None)
    cache = redis.Redis.from_url(llm_redis_url)
    for key in cache.scan_iter("helpdesk:llm:cache:intent:*"):  # an earlier test's answer
        cache.delete(key)
    texts = llm_stack.texts(sender, unsure_text)
    assert texts[0] == "Disculpe, no le he entendido."
    assert texts[1].startswith("Puedo ayudarle con")


def test_an_unsure_message_without_an_llm_gets_rasas_fallback(stack, sender, unsure_text):
    texts = stack.texts(sender, unsure_text)
    assert texts[0] == "Disculpe, no le he entendido."
    assert texts[1].startswith("Puedo ayudarle con")


# --- screenshots -----------------------------------------------------------------------------

def _send_screenshot(stack: Stack, fake_waha, number: str, caption: str) -> bytes:
    path = f"/api/files/default/{number}-llm.png"
    data = b"\x89PNG\r\n\x1a\n fake screenshot " + number.encode()
    fake_waha.files[path] = (data, "image/png")
    media = {"url": f"{fake_waha.url}{path}", "mimetype": "image/png", "filename": None,
             "error": None}
    answer = post_waha(stack.rasa_url, waha_message(number, caption, media=media), WAHA_HMAC)
    assert answer.status_code == 200, answer.text
    return data


def test_a_screenshot_fills_the_ticket_and_stays_attached(llm_stack, fake_llm, fake_waha, number):
    chat = f"{number}@c.us"
    data = _send_screenshot(llm_stack, fake_waha, number, "")  # a photo without text
    fake_waha.wait_for(lambda seen: "¿Los datos son correctos?" in joined(texts_to(seen, chat)),
                       30)
    said = texts_to(fake_waha.requests, chat)
    assert said[0] == "Recibí su archivo; lo adjuntaré al ticket."
    readback = joined(said)
    assert SCREENSHOT["description"] in readback  # nothing asked: read from the image
    assert "Tienda 42 (Avenida)" in readback and "impresora fiscal" in readback
    assert "¿En qué tienda" not in readback and "Describa brevemente" not in readback
    assert any(images == [("image/png", data)] for images in
               (r.images for r in fake_llm.fake.chat_requests))

    post_waha(llm_stack.rasa_url, waha_message(number, "sí"), WAHA_HMAC)
    fake_waha.wait_for(lambda seen: REFERENCE.search(joined(texts_to(seen, chat))), 30)
    reference = REFERENCE.search(joined(texts_to(fake_waha.requests, chat))).group(0)
    from helpdesk.tickets import Ledger

    record = Ledger(llm_stack.database_url).find(reference)
    assert listed(record.error_messages) == SCREENSHOT["error_messages"]
    assert record.store == "Tienda 42 (Avenida)" and record.system == "impresora fiscal"
    assert record.description == SCREENSHOT["description"]
    attachments = listed(record.attachments)
    assert len(attachments) == 1 and Path(attachments[0]).read_bytes() == data


def test_a_screenshot_without_an_llm_is_attached_and_the_form_asks(stack, fake_waha, number):
    chat = f"{number}@c.us"
    _send_screenshot(stack, fake_waha, number, "")
    fake_waha.wait_for(lambda seen: "¿En qué tienda ocurre?" in joined(texts_to(seen, chat)), 30)
    said = texts_to(fake_waha.requests, chat)
    assert said[0] == "Recibí su archivo; lo adjuntaré al ticket."
    assert "la tienda, el sistema afectado y una descripción" in joined(said)  # all to ask


# --- voice notes -----------------------------------------------------------------------------

def test_a_voice_note_is_transcribed_and_handled_as_text(llm_stack, fake_llm, fake_meta, number):
    media_id = f"77{number[-6:]}"
    audio = b"OggS fake opus " + number.encode()
    fake_meta.files[f"/download/{media_id}"] = (audio, "audio/ogg")
    voice = {"from": number, "id": f"wamid.V{number}", "timestamp": str(int(time.time())),
             "type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "x",
                                        "id": media_id, "voice": True}}
    assert post_meta(llm_stack.rasa_url, meta_delivery([voice]), META_SECRET).status_code == 200

    def bodies(seen):
        """What the user read: texts, and the text of messages with reply buttons."""
        found = []
        for r in seen:
            body = r["body"] or {}
            if body.get("to") == number and body.get("type") == "text":
                found.append(body["text"]["body"])
            elif body.get("to") == number and body.get("type") == "interactive":
                found.append(body["interactive"]["body"]["text"])
        return found

    fake_meta.wait_for(lambda seen: any("¿Los datos son correctos?" in b for b in bodies(seen)), 30)
    said = bodies(fake_meta.requests)
    assert said[0] == f"Entendí: «{HEARD}»"
    assert "Tienda 42 (Avenida)" in said[-1] and "POS / caja" in said[-1]
    assert not any("nota de voz" in b for b in said)
    [request] = [r for r in fake_llm.fake.requests_to("/audio/transcriptions")
                 if r.files["file"][2] == audio]
    assert request.form["model"] == "whisper-1" and request.form["language"] == "es"


def test_a_voice_note_the_model_cannot_transcribe_asks_to_write(llm_stack, fake_llm, fake_meta,
                                                               number):
    fake_llm.fake.transcriptions.push(Reply.server_error(500), Reply.server_error(500))
    media_id = f"78{number[-6:]}"
    fake_meta.files[f"/download/{media_id}"] = (b"OggS other " + number.encode(), "audio/ogg")
    voice = {"from": number, "id": f"wamid.W{number}", "timestamp": str(int(time.time())),
             "type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "y",
                                        "id": media_id, "voice": True}}
    assert post_meta(llm_stack.rasa_url, meta_delivery([voice]), META_SECRET).status_code == 200
    fake_meta.wait_for(lambda seen: any(
        r["body"] and r["body"].get("to") == number and "nota de voz" in
        r["body"].get("text", {}).get("body", "") for r in seen), 30)
    assert not any(r["body"] and r["body"].get("to") == number and "Entendí" in
                   r["body"].get("text", {}).get("body", "") for r in fake_meta.requests)


# --- known fixes -----------------------------------------------------------------------------

KNOWN = "se trabó el papel en la impresora fiscal"


def test_a_known_fix_that_solves_the_incident_opens_no_ticket(llm_stack, sender, llm_redis_url):
    texts = llm_stack.texts(sender, KNOWN)
    assert texts[-1].startswith("¿En qué tienda ocurre?")
    texts = llm_stack.texts(sender, "tienda 42")
    suggestion = joined(texts)
    assert suggestion.startswith("¿Ya probó esto? Según el artículo «")
    assert suggestion.endswith("¿Se solucionó el problema?")
    assert "¿Los datos son correctos?" not in suggestion

    texts = llm_stack.texts(sender, "/affirm")  # the «Se solucionó» button
    assert texts == ["Me alegro de que se haya solucionado. No he abierto ningún ticket; si "
                     "vuelve a ocurrir, escríbame por aquí."]
    from helpdesk.tickets import Ledger

    assert Ledger(llm_stack.database_url).recent_for(sender, 5) == []
    counts = redis.Redis.from_url(llm_redis_url).hgetall(
        f"helpdesk:known_fix:deflections:{time.strftime('%Y-%m', time.gmtime())}")
    assert int(counts[b"total"]) >= 1
    assert int(counts[b"impresora-fiscal-errores-frecuentes.md"]) >= 1

    # the next incident of the same conversation starts afresh
    texts = llm_stack.texts(sender, "se cayó el POS en la tienda 42, no podemos vender")
    assert "¿Los datos son correctos?" in joined(texts)


def test_a_declined_known_fix_goes_on_to_the_ticket(stack, sender, bot_ledger):
    stack.texts(sender, KNOWN)
    texts = stack.texts(sender, "tienda 42")
    assert joined(texts).startswith("¿Ya probó esto?")
    texts = stack.texts(sender, "/deny")  # «Abrir ticket»
    assert "¿Los datos son correctos?" in joined(texts)
    texts = stack.texts(sender, "sí")
    reference = REFERENCE.search(joined(texts)).group(0)
    assert bot_ledger.find(reference).description == KNOWN
