"""The REST channel (`/webhooks/rest/webhook`) with the project's gate in front of Rasa.

For development and tests: off unless REST_CHANNEL_ENABLED=true (then `POST /webhook` is not
there at all: 404, nothing reaches Rasa; `/` and `/health` stay for monitoring), and when on
every message needs `Authorization: Bearer
<REST_CHANNEL_TOKEN>` (or the generated `var/secrets/rest_channel_token`), compared in
constant time; without it 401 JSON and nothing reaches Rasa. Whoever holds the token is a
tester: they may write as any sender and send "/intent" texts (Rasa's intent triggers); the
WhatsApp channels never pass those (connectors/whatsapp/turn.py).

Same wire format as Rasa's own REST channel (`{"sender", "message", "metadata"}` in, a JSON
list of bot messages out, or one JSON object a line with `?stream=true`), so `make shell`
(scripts/shell.py) and any REST client that sends the header work. On top of it:

- bad input gets a clear answer: non-JSON 400, a missing sender 400, a body over the limit
  413, empty text an explanation, an over-long text cut to the configured length;
- `metadata` keeps only the keys REST testers may set (REST_METADATA: who is writing, a
  correlation id), as short strings; everything else (`media`, `is_external`, `channel`, ...)
  is what the channels and Rasa set, which the actions trust, and is dropped and logged;
  `input_channel` is always "rest", so a REST message never claims a WhatsApp route;
- every message gets a correlation id, carried in its metadata to the action server;
- a user who opted out (BAJA) gets no messages, except in the turn where they opt back in;
- `GET /webhooks/rest/health` reports Redis, the ledger and the action server.
"""
import asyncio
import hmac
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import rasa_tuning
from helpdesk.config import catalog
from helpdesk.health import check_all
import os

from helpdesk.logs import METADATA_KEY, apply_logging_file, correlation, new_correlation_id
from helpdesk.whatsapp import AsyncOptOutRegistry
from helpdesk.settings import load_settings, rest_channel_enabled, rest_channel_token

logger = logging.getLogger(__name__)

# what Rasa receives instead of an empty message: an intent the domain answers
EMPTY_MESSAGE = "/help"
# metadata a REST client may set, each with the form its value must have (actions/common.py
# `reporter` reads the first two)
REST_METADATA = {
    "sender_name": re.compile(r"[^\x00-\x1f\x7f]{1,100}"),
    "sender_phone": re.compile(r"[0-9]{6,15}", re.ASCII),
    METADATA_KEY: re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII),
}
BEARER = "bearer "


def rest_metadata(metadata: Dict[str, Any]) -> Dict[str, Any]:
    """The REST_METADATA keys of `metadata` whose values have their form; the rest dropped."""
    kept = {key: value for key, value in metadata.items()
            if key in REST_METADATA and isinstance(value, str) and REST_METADATA[key].fullmatch(value)}
    dropped = sorted(str(key)[:40] for key in metadata if key not in kept)
    if dropped:
        logger.info("REST metadata dropped", extra={"keys": dropped[:20]})
    return kept


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GatedRestInput(InputChannel):
    @classmethod
    def name(cls) -> Text:
        return "rest"

    def __init__(self) -> None:
        rasa_tuning.apply()
        self.settings = load_settings()
        self._token = rest_channel_token(self.settings).encode()
        self._optout: Optional[AsyncOptOutRegistry] = None

    def authorized(self, request: Request) -> bool:
        """`Authorization: Bearer <REST channel token>`, compared in constant time."""
        header = request.headers.get("Authorization") or ""
        given = header[len(BEARER):].strip() if header[:len(BEARER)].lower() == BEARER else ""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self._token)

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "InputChannel":
        return cls()

    def optout(self) -> AsyncOptOutRegistry:
        if self._optout is None:
            self._optout = AsyncOptOutRegistry.from_url(self.settings.redis_url)
        return self._optout

    async def _is_opted_out(self, sender_id: str) -> bool:
        try:
            return await self.optout().is_opted_out(sender_id)
        except Exception:
            # Redis down: answering is better than silence; the failure is logged
            logger.exception("opt-out check failed; answering anyway")
            return False

    def parse(self, request: Request) -> Dict[str, Any]:
        limits = catalog().dialogue
        body = request.body or b""
        if len(body) > limits.max_body_bytes:
            raise BadRequest(413, f"body larger than {limits.max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "body is not valid JSON")
        if not isinstance(payload, dict):
            raise BadRequest(400, "body must be a JSON object")
        sender = payload.get("sender")
        if isinstance(sender, (int, float)) and not isinstance(sender, bool):
            sender = str(sender)
        if not isinstance(sender, str) or not sender.strip():
            raise BadRequest(400, "'sender' is required (a non-empty string)")
        text = payload.get("message")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise BadRequest(400, "'message' must be a string")
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise BadRequest(400, "'metadata' must be a JSON object")
        text = text.strip()
        if not text:
            text = EMPTY_MESSAGE
        elif len(text) > limits.max_message_chars:
            logger.info("message cut", extra={"chars": len(text), "kept": limits.max_message_chars})
            text = text[: limits.max_message_chars]
        return {
            "sender": sender.strip(),
            "text": text,
            "metadata": rest_metadata(metadata),
            "input_channel": self.name(),
        }

    async def handle(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]], parsed: Dict[str, Any]
    ) -> List[Dict[str, Any]]:
        """Runs one turn and returns what may be sent to the user."""
        sender = parsed["sender"]
        metadata = dict(parsed["metadata"])
        correlation_id = metadata.get(METADATA_KEY) or new_correlation_id()
        metadata[METADATA_KEY] = correlation_id
        with correlation(correlation_id):
            started = time.perf_counter()
            logger.info(
                "message received",
                extra={"conversation_id": sender, "chars": len(parsed["text"])},
            )
            opted_out_before = await self._is_opted_out(sender)
            collector = CollectingOutputChannel()
            try:
                await on_new_message(
                    UserMessage(
                        parsed["text"],
                        collector,
                        sender,
                        input_channel=parsed["input_channel"],
                        metadata=metadata,
                    )
                )
            except asyncio.CancelledError:
                logger.error("turn cancelled (response timeout)")
            except Exception:
                logger.exception("turn failed")
            messages = collector.messages
            if opted_out_before and await self._is_opted_out(sender):
                logger.info("user opted out; replies withheld", extra={"withheld": len(messages)})
                messages = []
            logger.info(
                "turn done",
                extra={
                    "replies": len(messages),
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return messages

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        hooks = Blueprint("gated_rest_webhook", __name__)

        @hooks.listener("after_server_start")
        async def structured_logs(app: Any, loop: Any) -> None:
            path = os.environ.get("HELPDESK_LOGGING_CONFIG")
            if path:
                apply_logging_file(path)

        @hooks.route("/", methods=["GET"])
        async def alive(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @hooks.route("/health", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            report = await check_all(self.settings)
            return response.json(report, status=200 if report["status"] == "ok" else 503)

        if not rest_channel_enabled():
            logger.info("REST channel off (REST_CHANNEL_ENABLED=true in .env turns it on)")
            return hooks

        @hooks.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if not self.authorized(request):
                logger.info("REST message refused: missing or wrong token", extra={"status": 401})
                return response.json({"error": "missing or wrong token (Authorization: Bearer "
                                               "<REST_CHANNEL_TOKEN>)"}, status=401)
            try:
                parsed = self.parse(request)
            except BadRequest as error:
                logger.info("bad request", extra={"status": error.status, "error": error.message})
                return response.json({"error": error.message}, status=error.status)
            messages = await self.handle(on_new_message, parsed)
            if request.args.get("stream", "").lower() == "true":

                async def stream(resp: Any) -> None:
                    for message in messages:
                        await resp.write(json.dumps(message) + "\n")

                return response.stream(stream, content_type="text/event-stream")
            return response.json(messages)

        return hooks

