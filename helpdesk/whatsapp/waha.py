"""The one client for WAHA's HTTP API (docs/whatsapp-wire-formats.md, A4).

Async (aiohttp): it runs in the Rasa server's event loop. Every call carries `X-Api-Key`
when a key is set and has a timeout; WAHA answers 201 to sends. Errors become
`GatewayError`s that say whether a retry can help. No call follows a redirect by itself
(aiohttp would carry `X-Api-Key` to wherever it points): an API answer of 3xx is an error,
and media redirects are followed by hand on the same host only (gateway.fetch_media).

Media (`media.url` in the payload) comes only from WAHA_BASE_URL's scheme, host and port,
with the key, or from a host in MEDIA_ALLOWED_HOSTS (WAHA's S3 storage), without it.
"""
import asyncio
import logging
from urllib.parse import quote
from typing import Any, Dict, List, Optional, Tuple

import aiohttp

from helpdesk.whatsapp.gateway import (
    GatewayError,
    MediaHosts,
    SessionHolder,
    fetch_media,
    parse_origin,
    parse_origins,
    transient_status,
)
from helpdesk.settings import WahaSettings

logger = logging.getLogger(__name__)


class WahaClient:
    def __init__(self, settings: WahaSettings, timeout_seconds: float = 10) -> None:
        self.settings = settings
        self.sessions = SessionHolder(timeout_seconds)
        # refuses a bad MEDIA_ALLOWED_HOSTS entry when the channel starts (ConfigError)
        self.media_hosts = MediaHosts(
            keyed=frozenset({parse_origin(settings.base_url, "WAHA_BASE_URL", base_url=True)}),
            extra=parse_origins(settings.media_hosts, "MEDIA_ALLOWED_HOSTS"),
        )

    def _headers(self) -> Dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.settings.api_key:
            headers["X-Api-Key"] = self.settings.api_key
        return headers

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url}{path}"

    async def _post(self, path: str, body: Dict[str, Any], method: str = "POST") -> Any:
        body = {"session": self.settings.session, **body}
        try:
            async with self.sessions.get().request(
                method, self._url(path), json=body, headers=self._headers(),
                allow_redirects=False,
            ) as response:
                text = await response.text()
                if response.status >= 300:
                    raise GatewayError(
                        f"WAHA {path} answered {response.status}: {text[:200]}",
                        status=response.status,
                        # 422: the session is not WORKING (starting, waiting for its QR code)
                        transient=transient_status(response.status) or response.status == 422,
                        credentials=response.status in (401, 403),
                    )
                try:
                    return await response.json(content_type=None) if text else None
                except ValueError:
                    return None
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise GatewayError(f"WAHA {path} unreachable: {error!r}", transient=True) from error

    async def send_text(self, chat_id: str, text: str, mentions: Optional[List[str]] = None,
                        reply_to: Optional[str] = None) -> Optional[str]:
        body: Dict[str, Any] = {"chatId": chat_id, "text": text, "linkPreview": False}
        if mentions:
            body["mentions"] = mentions
        if reply_to:
            body["reply_to"] = reply_to
        return _sent_id(await self._post("/api/sendText", body))

    async def send_file(self, chat_id: str, url: str, caption: str = "", image: bool = False,
                        filename: Optional[str] = None, mimetype: Optional[str] = None
                        ) -> Optional[str]:
        file: Dict[str, Any] = {"url": url}
        if filename:
            file["filename"] = filename
        if mimetype:
            file["mimetype"] = mimetype
        body = {"chatId": chat_id, "file": file, "caption": caption}
        path = "/api/sendImage" if image else "/api/sendFile"
        return _sent_id(await self._post(path, body))

    async def react(self, message_id: str, emoji: str) -> None:
        """Put (or with "" take back) the bot's reaction on a message: PUT /api/reaction."""
        await self._post("/api/reaction", {"messageId": message_id, "reaction": emoji},
                         method="PUT")

    async def send_seen(self, chat_id: str, message_id: Optional[str] = None,
                        participant: Optional[str] = None) -> None:
        body: Dict[str, Any] = {"chatId": chat_id}
        if message_id:
            body["messageIds"] = [message_id]
        if participant:
            body["participant"] = participant
        await self._post("/api/sendSeen", body)

    async def typing(self, chat_id: str, on: bool) -> None:
        await self._post("/api/startTyping" if on else "/api/stopTyping", {"chatId": chat_id})

    async def download(self, url: str, max_bytes: int) -> Tuple[bytes, Optional[str]]:
        """A media file by its `media.url` (WAHA deletes it after 180 s), used as given but
        only from WAHA's own host (with the key) or an allowed one (without)."""
        return await fetch_media(self.sessions.get(), url, self.media_hosts, self._key(),
                                 max_bytes)

    def _key(self) -> Dict[str, str]:
        return {"X-Api-Key": self.settings.api_key} if self.settings.api_key else {}

    async def number_for_lid(self, lid: str) -> Optional[str]:
        """The phone jid behind an `@lid` id, or None when WAHA does not know it."""
        # the lid comes from a payload: one path segment, whatever it holds ("../", "?")
        path = f"/api/{self.settings.session}/lids/{quote(lid, safe='@')}"
        try:
            async with self.sessions.get().get(self._url(path), headers=self._headers(),
                                               allow_redirects=False) as response:
                if response.status != 200:
                    return None
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            logger.info("lid lookup failed")
            return None
        pn = data.get("pn") if isinstance(data, dict) else None
        return pn if isinstance(pn, str) and pn else None

    async def close(self) -> None:
        await self.sessions.close()


def _sent_id(answer: Any) -> Optional[str]:
    """The sent message's id: WAHA documents a WAMessage; engines return their own object."""
    if not isinstance(answer, dict):
        return None
    value = answer.get("id")
    if isinstance(value, dict):
        value = value.get("_serialized") or value.get("id")
    return value if isinstance(value, str) else None
