"""The REST channel (`/webhooks/rest/webhook`) with the project's gate in front of Rasa.

Same wire format as Rasa's own REST channel (`{"sender", "message", "metadata"}` in, a JSON
list of bot messages out, or one JSON object a line with `?stream=true`), so `rasa shell`'s
console, `make shell` and any REST client work unchanged. On top of it:

- bad input gets a clear answer: non-JSON 400, a missing sender 400, a body over the limit
  413, empty text an explanation, an over-long text cut to the configured length;
- every message gets a correlation id, carried in its metadata to the action server;
- a user who opted out (BAJA) gets no messages, except in the turn where they opt back in;
- `GET /webhooks/rest/health` reports Redis, the ledger and the action server.
"""
import asyncio
import json
import logging
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
from helpdesk.settings import load_settings

logger = logging.getLogger(__name__)

# what Rasa receives instead of an empty message: an intent the domain answers
EMPTY_MESSAGE = "/help"


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
        self._optout: Optional[AsyncOptOutRegistry] = None

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
        input_channel = payload.get("input_channel")
        return {
            "sender": sender.strip(),
            "text": text,
            "metadata": metadata,
            "input_channel": input_channel if isinstance(input_channel, str) else self.name(),
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

        @hooks.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
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

