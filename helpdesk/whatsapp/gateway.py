"""What the WhatsApp gateway clients (WAHA, Meta) have in common: errors that say whether a
retry can help, one lazily created aiohttp session per client and event loop, and the media
fetch every client makes through `fetch_media`: only from the hosts a `MediaHosts` allows,
the gateway's key only to the gateway's own hosts, redirects followed by hand and only on
the same host.

A payload names the media URL, and a payload can be forged or replayed: without these
checks the bot would request any address it is given (internal ones included) and hand the
gateway's key to whoever answers.
"""
import asyncio
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, Optional, Tuple

import aiohttp
from yarl import URL

from helpdesk.errors import ConfigError

# (scheme, host, port): what "the same host" means for media, as a browser's origin
Origin = Tuple[str, str, int]

# same-host redirects followed by hand before the fetch gives up
MAX_MEDIA_REDIRECTS = 3
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class GatewayError(Exception):
    """A send or fetch that failed.

    transient: a retry later may succeed (5xx, timeouts, connection refused, rate limits, the
    WhatsApp session not working, credentials refused);
    credentials: the gateway refused our key or token: every message waits for an operator,
    who is told (transient too: the message is not at fault);
    reengagement: Meta 131047, the user's 24-hour window is closed (a template is needed);
    otherwise permanent: retrying the same request cannot help.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, code: Any = None,
                 transient: bool = False, reengagement: bool = False,
                 credentials: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.transient = transient or credentials
        self.reengagement = reengagement
        self.credentials = credentials


class MediaError(GatewayError):
    """A media file that cannot be fetched (gone, expired) or is not acceptable."""

    def __init__(self, message: str, *, too_large: bool = False, refused: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.too_large = too_large
        # refused: not fetched at all (a host or a redirect outside the allowed ones) or
        # refused by content (a type the channel does not take)
        self.refused = refused


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


# --- where media may come from --------------------------------------------------------------

def url_origin(url: URL) -> Optional[Origin]:
    """The (scheme, host, port) of an absolute http(s) URL without user info, else None."""
    if not url.is_absolute() or url.scheme not in ("http", "https") or not url.host \
            or url.user is not None or url.password is not None:
        return None
    return url.scheme, url.host.lower().rstrip("."), int(url.port or 0)


def origin_text(origin: Optional[Origin]) -> str:
    """For logs: scheme, host and port only (a media URL's path and query can carry a
    signature or a token, so a log line never has them)."""
    return f"{origin[0]}://{origin[1]}:{origin[2]}" if origin else "an invalid URL"


def parse_origin(entry: str, where: str, base_url: bool = False) -> Origin:
    """An operator's host entry: `https://host[:port]`, `http://host:port`, or a bare
    `host[:port]` (https). Paths, queries and user info are refused: it names a host.
    With `base_url` (WAHA_BASE_URL, META_GRAPH_URL) a path is fine: its origin counts."""
    text = entry.strip()
    if not text:
        raise ConfigError(f"{where}: an empty host entry")
    if "://" not in text:
        text = f"https://{text}"
    try:
        url = URL(text)
        origin = url_origin(url)
    except ValueError as error:
        raise ConfigError(f"{where}: {entry!r} is not a host ({error})") from None
    if origin is None or url.query_string or url.fragment \
            or (url.path not in ("", "/") and not base_url):
        raise ConfigError(f"{where}: {entry!r} must be a host like https://files.example.com "
                          "(scheme, host and port only)")
    return origin


def parse_origins(entries: Iterable[str], where: str) -> FrozenSet[Origin]:
    return frozenset(parse_origin(entry, where) for entry in entries)


@dataclass(frozen=True)
class MediaHosts:
    """The hosts media may come from.

    keyed: the gateway's own hosts; the only ones that get the gateway's key.
    extra: hosts the operator lists (MEDIA_ALLOWED_HOSTS, such as their S3 bucket): fetched
    without any key.
    """

    keyed: FrozenSet[Origin]
    extra: FrozenSet[Origin] = frozenset()

    def allows(self, origin: Optional[Origin]) -> bool:
        return origin is not None and (origin in self.keyed or origin in self.extra)

    def gets_key(self, origin: Optional[Origin]) -> bool:
        return origin is not None and origin in self.keyed


def _checked_url(raw: Any, hosts: MediaHosts, what: str) -> Tuple[URL, Origin]:
    """The URL to request, parsed once by the same parser aiohttp uses (no second parser to
    disagree about the host), or a refusal naming only the host."""
    if isinstance(raw, URL):
        url = raw
    else:
        if not isinstance(raw, str) or not raw or any(ch.isspace() or ord(ch) < 32 for ch in raw):
            raise MediaError(f"{what}: not a usable URL", refused=True)
        try:
            url = URL(raw)
        except (ValueError, TypeError):
            raise MediaError(f"{what}: not a usable URL", refused=True) from None
    try:
        origin = url_origin(url)
    except ValueError:  # a port out of range
        origin = None
    if not hosts.allows(origin):
        raise MediaError(f"{what}: host {origin_text(origin)} is not an allowed media host",
                         refused=True)
    return url, origin


async def fetch_media(session: aiohttp.ClientSession, raw_url: Any, hosts: MediaHosts,
                      key_headers: Dict[str, str], max_bytes: int,
                      what: str = "media") -> Tuple[bytes, Optional[str]]:
    """GET a media file: (bytes, Content-Type without parameters).

    Only from an allowed host; `key_headers` (the gateway's key) only to a keyed host;
    redirects not followed by aiohttp but here, at most MAX_MEDIA_REDIRECTS and only to the
    same scheme, host and port (a redirect elsewhere is refused, not followed)."""
    url, origin = _checked_url(raw_url, hosts, what)
    for _ in range(MAX_MEDIA_REDIRECTS + 1):
        headers = dict(key_headers) if hosts.gets_key(origin) else {}
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location") or ""
                    try:
                        target = url.join(URL(location))
                        target_origin = url_origin(target)
                    except ValueError:
                        target, target_origin = None, None
                    if target is None or target_origin != origin:
                        raise MediaError(
                            f"{what}: {origin_text(origin)} redirected to "
                            f"{origin_text(target_origin)}; not followed", refused=True,
                            status=response.status)
                    url = target
                    continue
                if response.status >= 300:
                    raise MediaError(
                        f"{what} answered {response.status}",
                        status=response.status,
                        transient=transient_status(response.status),
                    )
                content_type = (response.headers.get("Content-Type") or "").split(";")[0]
                return await read_limited(response, max_bytes), content_type.strip() or None
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            # the error's type only: some aiohttp errors repeat the whole URL
            raise MediaError(f"{what} from {origin_text(origin)} unreachable: "
                             f"{type(error).__name__}", transient=True) from error
    raise MediaError(f"{what}: more than {MAX_MEDIA_REDIRECTS} redirects on "
                     f"{origin_text(origin)}", refused=True)
