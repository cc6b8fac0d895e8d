"""The one client for Meta's WhatsApp Cloud API (docs/whatsapp-wire-formats.md, B4-B6).

Async (aiohttp): it runs in the Rasa server's event loop. Bearer token and a timeout on every
call. Graph errors become `GatewayError`s: rate limits (130429, 131056) and 5xx are
transient, 131047 (the 24-hour window is closed) asks for a template, the rest is permanent.
No call follows a redirect by itself (the token would go along).

Media is Meta's two-step fetch (docs/whatsapp-wire-formats.md B5): the Graph API gives a URL
for a media id, and that URL needs the Bearer token too. The token goes only to the Graph
host (META_GRAPH_URL) and Meta's download hosts (`META_DOWNLOAD_HOSTS`, extended by
META_MEDIA_HOSTS); a URL on a host in MEDIA_ALLOWED_HOSTS is fetched without it, and any
other is not fetched.
"""
import asyncio
import logging
from typing import Any, Dict, Optional, Tuple

import aiohttp

from helpdesk.whatsapp.gateway import (
    GatewayError,
    MediaError,
    MediaHosts,
    SessionHolder,
    fetch_media,
    parse_origin,
    parse_origins,
    transient_status,
)
from helpdesk.settings import MetaSettings

logger = logging.getLogger(__name__)

TRANSIENT_CODES = {130429, 131056, 131000, 1, 2, 4, 80007}
REENGAGEMENT_CODE = 131047
TOKEN_CODE = 190
# where the URL the Graph API gives for a media id points (B5: lookaside.fbsbx.com); the
# operator adds hosts with META_MEDIA_HOSTS should Meta answer with another
META_DOWNLOAD_HOSTS = ("https://lookaside.fbsbx.com",)


def error_from_graph(status: int, body: Any) -> GatewayError:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else str(body)[:200]
    return GatewayError(
        f"Meta answered {status} (code {code}): {message}",
        status=status,
        code=code,
        transient=code in TRANSIENT_CODES or (code is None and transient_status(status))
        or status >= 500,
        reengagement=code == REENGAGEMENT_CODE,
        # 190: the access token expired or was revoked; 401 without a code likewise
        credentials=code == TOKEN_CODE or (code is None and status == 401),
    )


class MetaClient:
    def __init__(self, settings: MetaSettings, timeout_seconds: float = 10) -> None:
        self.settings = settings
        self.sessions = SessionHolder(timeout_seconds)
        # refuses a bad host entry when the channel starts (ConfigError)
        self.media_hosts = MediaHosts(
            keyed=frozenset({parse_origin(settings.graph_url, "META_GRAPH_URL", base_url=True)})
            | parse_origins(META_DOWNLOAD_HOSTS, "META_DOWNLOAD_HOSTS")
            | parse_origins(settings.cdn_hosts, "META_MEDIA_HOSTS"),
            extra=parse_origins(settings.media_hosts, "MEDIA_ALLOWED_HOSTS"),
        )

    @property
    def _base(self) -> str:
        return f"{self.settings.graph_url}/{self.settings.api_version}"

    def _headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token}"}

    async def _post_messages(self, body: Dict[str, Any]) -> Any:
        url = f"{self._base}/{self.settings.phone_number_id}/messages"
        try:
            async with self.sessions.get().post(url, json=body, headers=self._headers(),
                                                allow_redirects=False) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                if response.status >= 300 or (isinstance(answer, dict) and "error" in answer):
                    raise error_from_graph(response.status, answer)
                return answer
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise GatewayError(f"Meta unreachable: {error!r}", transient=True) from error

    async def send(self, to: str, message: Dict[str, Any],
                   reply_to: Optional[str] = None) -> Optional[str]:
        """`message` is the type-specific part: {"type": "text", "text": {...}} etc."""
        body: Dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            **message,
        }
        if reply_to:
            body["context"] = {"message_id": reply_to}
        answer = await self._post_messages(body)
        messages = answer.get("messages") if isinstance(answer, dict) else None
        if messages and isinstance(messages[0], dict):
            return messages[0].get("id")
        return None

    async def send_text(self, to: str, text: str) -> Optional[str]:
        return await self.send(to, {"type": "text", "text": {"preview_url": False, "body": text}})

    async def send_template(self, to: str, name: str, language: str) -> Optional[str]:
        return await self.send(
            to, {"type": "template", "template": {"name": name, "language": {"code": language}}}
        )

    async def mark_read(self, message_id: str, typing: bool = False) -> None:
        body: Dict[str, Any] = {
            "messaging_product": "whatsapp", "status": "read", "message_id": message_id,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        await self._post_messages(body)

    async def download(self, media_id: str, max_bytes: int) -> Tuple[bytes, Optional[str]]:
        """Meta's two-step fetch: the media's URL (valid minutes), then the bytes."""
        if not (isinstance(media_id, str) and media_id.isascii() and media_id.isdigit()
                and len(media_id) <= 32):
            # Meta's media ids are digits; anything else would change the Graph URL's path
            raise MediaError("media id is not a Meta media id", refused=True)
        session = self.sessions.get()
        try:
            async with session.get(
                f"{self._base}/{media_id}",
                params={"phone_number_id": self.settings.phone_number_id},
                headers=self._headers(),
                allow_redirects=False,
            ) as response:
                try:
                    info = await response.json(content_type=None)
                except ValueError:
                    info = None
                if response.status != 200 or not isinstance(info, dict) or not info.get("url"):
                    raise MediaError(
                        f"media {media_id} lookup answered {response.status}",
                        status=response.status,
                        transient=transient_status(response.status),
                    )
            size = info.get("file_size")
            if size is not None and str(size).isdigit() and int(size) > max_bytes:
                raise MediaError(f"file of {size} bytes is over {max_bytes}", too_large=True)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise MediaError(f"media {media_id} lookup unreachable: {type(error).__name__}",
                             transient=True) from error
        data, content_type = await fetch_media(session, info["url"], self.media_hosts,
                                               self._headers(), max_bytes, what="media download")
        return data, info.get("mime_type") or content_type

    async def close(self) -> None:
        await self.sessions.close()
