"""`WahaClient` (helpdesk/whatsapp/waha.py) against the fake WAHA and a second loopback
server: where a `media.url` from a payload is fetched from, who gets `X-Api-Key`, and what a
redirect gets. A payload can be forged or replayed, so its URL is only trusted as far as the
host it names: WAHA_BASE_URL's (with the key) or one in MEDIA_ALLOWED_HOSTS (without)."""
import asyncio
from typing import Any, Iterator, Tuple

import pytest

from helpdesk.errors import ConfigError
from helpdesk.settings import WahaSettings
from helpdesk.whatsapp import GatewayError, MediaError, WahaClient
from tests.fakes.gateways import FakeObjectStore, FakeWaha

KEY = "waha-key"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
FILE = "/api/files/default/false_5491122334455@c.us_AAAA.jpg"
MAX = 1 << 20


@pytest.fixture
def waha() -> Iterator[FakeWaha]:
    with FakeWaha(api_key=KEY) as server:
        server.files[FILE] = (JPEG, "image/jpeg")
        yield server


@pytest.fixture(params=["127.0.0.1", "127.0.0.2"], ids=["other-port", "other-address"])
def elsewhere(request) -> Iterator[FakeObjectStore]:
    """A second loopback server: another port on 127.0.0.1, or 127.0.0.2 (loopback too)."""
    with FakeObjectStore(host=request.param) as server:
        server.files["/internal/secret"] = (b"internal data", "text/plain")
        server.files[FILE] = (JPEG, "image/jpeg")
        yield server


def client_for(waha: FakeWaha, *extra_hosts: str) -> WahaClient:
    return WahaClient(WahaSettings(base_url=waha.url, api_key=KEY, session="default",
                                   hmac_key=None, media_hosts=tuple(extra_hosts)), 3)


def download(client: WahaClient, url: str) -> Tuple[bytes, Any]:
    async def scenario():
        try:
            return await client.download(url, MAX)
        finally:
            await client.close()

    return asyncio.run(scenario())


def keys_seen(server: Any):
    return [r["headers"].get("X-Api-Key") for r in server.requests]


def test_media_from_waha_itself_is_fetched_with_the_key(waha):
    data, content_type = download(client_for(waha), f"{waha.url}{FILE}")
    assert data == JPEG and content_type == "image/jpeg"
    assert keys_seen(waha) == [KEY]


def test_a_media_url_on_another_server_is_not_fetched_and_never_gets_the_key(waha, elsewhere):
    for path in ("/internal/secret", FILE):
        with pytest.raises(MediaError) as refused:
            download(client_for(waha), f"{elsewhere.url}{path}?token=abc")
        assert refused.value.refused and not refused.value.transient
        # the refusal names the host, never the path or query (they can carry a signature)
        assert elsewhere.url.split("//")[1] in str(refused.value)
        assert path not in str(refused.value) and "token=abc" not in str(refused.value)
    assert elsewhere.requests == []
    assert waha.requests == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}@127.0.0.2:{port}/api/files/x.jpg",  # user info hiding the host
    "ftp://127.0.0.1:{port}/api/files/x.jpg",
    "/api/files/x.jpg",
    "http://127.0.0.1:{port}/api/files/x.jpg\r\nX-Injected: 1",
    "",
])
def test_urls_that_are_not_plainly_on_the_gateway_are_refused(waha, url):
    with pytest.raises(MediaError) as refused:
        download(client_for(waha), url.format(port=waha.port))
    assert refused.value.refused
    assert waha.requests == []


def test_a_redirect_from_waha_to_another_server_is_not_followed(waha, elsewhere):
    waha.redirects[FILE] = (302, f"{elsewhere.url}/internal/secret")
    with pytest.raises(MediaError) as refused:
        download(client_for(waha), f"{waha.url}{FILE}")
    assert refused.value.refused and refused.value.status == 302
    assert elsewhere.requests == []
    assert keys_seen(waha) == [KEY]


def test_a_redirect_to_an_allowed_extra_host_is_not_followed_either(waha, elsewhere):
    waha.redirects[FILE] = (307, f"{elsewhere.url}{FILE}")
    with pytest.raises(MediaError):
        download(client_for(waha, elsewhere.url), f"{waha.url}{FILE}")
    assert elsewhere.requests == []


def test_a_same_host_redirect_is_followed_a_few_times_with_the_key(waha):
    waha.redirects["/api/files/old.jpg"] = (301, FILE)  # relative Location, same host
    data, _ = download(client_for(waha), f"{waha.url}/api/files/old.jpg")
    assert data == JPEG
    assert keys_seen(waha) == [KEY, KEY]

    waha.clear()
    for n in range(5):  # a loop on the same host ends
        waha.redirects[f"/api/files/{n}.jpg"] = (302, f"{waha.url}/api/files/{n + 1}.jpg")
    with pytest.raises(MediaError) as looped:
        download(client_for(waha), f"{waha.url}/api/files/0.jpg")
    assert looped.value.refused and "redirects" in str(looped.value)
    assert len(waha.requests) == 4


def test_an_allowed_extra_host_gets_the_request_but_not_the_key(waha, elsewhere):
    presigned = f"{elsewhere.url}{FILE}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab12"
    data, content_type = download(client_for(waha, elsewhere.url), presigned)
    assert data == JPEG and content_type == "image/jpeg"
    assert len(elsewhere.requests) == 1
    headers = {name.lower() for name in elsewhere.requests[0]["headers"]}
    assert "x-api-key" not in headers and "authorization" not in headers
    assert waha.requests == []


def test_api_calls_do_not_follow_a_redirect_with_the_key(waha, elsewhere):
    """aiohttp follows redirects by itself and keeps custom headers such as X-Api-Key."""
    waha.redirects["/api/sendText"] = (302, f"{elsewhere.url}/api/sendText")
    waha.redirects["/api/default/lids/123@lid"] = (302, f"{elsewhere.url}/lids")

    async def scenario():
        client = client_for(waha)
        try:
            with pytest.raises(GatewayError) as refused:
                await client.send_text("5491122334455@c.us", "hola")
            assert not refused.value.transient
            assert await client.number_for_lid("123@lid") is None
        finally:
            await client.close()

    asyncio.run(scenario())
    assert elsewhere.requests == []


@pytest.mark.parametrize("entry", ["https://bucket.example.com/path", "ftp://files.example.com",
                                   "https://user:pass@files.example.com", "https://h:99999"])
def test_a_bad_media_allowed_hosts_entry_stops_the_client(waha, entry):
    with pytest.raises(ConfigError) as bad:
        client_for(waha, entry)
    assert "MEDIA_ALLOWED_HOSTS" in str(bad.value)


def test_a_lid_from_a_payload_stays_one_path_segment(waha):
    async def scenario():
        client = client_for(waha)
        try:
            await client.number_for_lid("../../sendText?x=1@lid")
        finally:
            await client.close()

    asyncio.run(scenario())
    [call] = waha.requests
    prefix = "/api/default/lids/"
    assert call["path"].startswith(prefix) and "/" not in call["path"][len(prefix):]
    assert call["path"].endswith("@lid") and call["query"] == {}
