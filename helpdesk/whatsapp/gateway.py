"""What the WhatsApp gateway clients (WAHA, Meta) have in common: errors that say whether a
retry can help, and one lazily created aiohttp session per client and event loop."""
import asyncio
from typing import Any, Optional

import aiohttp


class GatewayError(Exception):
    """A send or fetch that failed.

    transient: a retry later may succeed (5xx, timeouts, connection refused, rate limits);
    reengagement: Meta 131047, the user's 24-hour window is closed (a template is needed);
    otherwise permanent: retrying the same request cannot help.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, code: Any = None,
                 transient: bool = False, reengagement: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.transient = transient
        self.reengagement = reengagement


class MediaError(GatewayError):
    """A media file that cannot be fetched (gone, expired) or is not acceptable."""

    def __init__(self, message: str, *, too_large: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.too_large = too_large


class SessionHolder:
    """One aiohttp session per event loop (tests and benchmarks run several loops)."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: Optional[aiohttp.ClientSession] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


async def read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, refusing more than `max_bytes` without reading it all into memory."""
    length = response.content_length
    if length is not None and length > max_bytes:
        raise MediaError(f"file of {length} bytes is over {max_bytes}", too_large=True)
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise MediaError(f"file is over {max_bytes} bytes", too_large=True)
        chunks.append(chunk)
    return b"".join(chunks)
