"""`MetaClient`'s media fetch (helpdesk/whatsapp/meta.py, docs/whatsapp-wire-formats.md B5)
against fake Graph API servers on loopback: the lookup gives a download URL, which is fetched
with the Bearer token only on the Graph host or Meta's download hosts (lookaside.fbsbx.com,
META_MEDIA_HOSTS), without it on a host in MEDIA_ALLOWED_HOSTS, and not at all elsewhere."""
import asyncio
from typing import Any, Iterator

import pytest

from helpdesk.settings import MetaSettings
from helpdesk.whatsapp import GatewayError, MediaError, MetaClient
from helpdesk.whatsapp.meta import META_DOWNLOAD_HOSTS
from tests.fakes.gateways import FakeMeta, FakeObjectStore

TOKEN = "meta-token"
PHONE_ID = "106540352242922"
OGG = b"OggS\x00\x02" + b"\x00" * 40
MEDIA_ID = "2621233374848975"
MAX = 1 << 20


@pytest.fixture
def graph() -> Iterator[FakeMeta]:
    with FakeMeta(token=TOKEN, phone_number_id=PHONE_ID) as server:
        server.files[f"/download/{MEDIA_ID}"] = (OGG, "audio/ogg")
        yield server


@pytest.fixture
def cdn() -> Iterator[FakeMeta]:
    """Meta's download host: another address than the Graph API's, as lookaside.fbsbx.com."""
    with FakeMeta(token=TOKEN, phone_number_id=PHONE_ID, host="127.0.0.2") as server:
        server.files[f"/download/{MEDIA_ID}"] = (OGG, "audio/ogg")
        yield server


@pytest.fixture
def elsewhere() -> Iterator[FakeObjectStore]:
    with FakeObjectStore(host="127.0.0.2") as server:
        server.files[f"/download/{MEDIA_ID}"] = (OGG, "audio/ogg")
        yield server


def client_for(graph: FakeMeta, cdn_hosts=(), media_hosts=()) -> MetaClient:
    return MetaClient(MetaSettings(access_token=TOKEN, app_secret=None, verify_token=None,
                                   phone_number_id=PHONE_ID, graph_url=graph.url,
                                   api_version="v21.0", media_hosts=tuple(media_hosts),
                                   cdn_hosts=tuple(cdn_hosts)), 3)


def download(client: MetaClient, media_id: str = MEDIA_ID) -> Any:
    async def scenario():
        try:
            return await client.download(media_id, MAX)
        finally:
            await client.close()

    return asyncio.run(scenario())


def bearers(server: Any):
    return [r["headers"].get("Authorization") for r in server.requests]


def test_lookaside_is_a_built_in_download_host():
    assert "https://lookaside.fbsbx.com" in META_DOWNLOAD_HOSTS


def test_both_steps_on_the_graph_host_carry_the_token(graph):
    data, mime = download(client_for(graph))
    assert (data, mime) == (OGG, "audio/ogg")
    assert bearers(graph) == [f"Bearer {TOKEN}"] * 2


def test_the_download_on_a_meta_download_host_gets_the_token(graph, cdn):
    graph.download_url = cdn.url
    data, _ = download(client_for(graph, cdn_hosts=[cdn.url]))
    assert data == OGG
    assert bearers(cdn) == [f"Bearer {TOKEN}"]


def test_a_download_url_on_another_host_is_not_fetched_and_gets_no_token(graph, elsewhere):
    graph.download_url = elsewhere.url
    with pytest.raises(MediaError) as refused:
        download(client_for(graph))
    assert refused.value.refused
    assert elsewhere.requests == []
    assert len(graph.requests) == 1  # the lookup only


def test_a_download_url_on_an_allowed_extra_host_gets_no_token(graph, elsewhere):
    graph.download_url = elsewhere.url
    data, _ = download(client_for(graph, media_hosts=[elsewhere.url]))
    assert data == OGG
    headers = {name.lower() for name in elsewhere.requests[0]["headers"]}
    assert "authorization" not in headers


def test_a_redirect_from_the_download_host_to_another_is_not_followed(graph, elsewhere):
    graph.redirects[f"/download/{MEDIA_ID}"] = (302, f"{elsewhere.url}/download/{MEDIA_ID}")
    with pytest.raises(MediaError) as refused:
        download(client_for(graph))
    assert refused.value.refused
    assert elsewhere.requests == []


def test_the_lookup_does_not_follow_a_redirect(graph, elsewhere):
    graph.redirects[f"/v21.0/{MEDIA_ID}"] = (302, f"{elsewhere.url}/v21.0/{MEDIA_ID}")
    with pytest.raises(MediaError):
        download(client_for(graph))
    assert elsewhere.requests == []


def test_sends_do_not_follow_a_redirect_with_the_token(graph, elsewhere):
    graph.redirects[f"/v21.0/{PHONE_ID}/messages"] = (307, f"{elsewhere.url}/messages")

    async def scenario():
        client = client_for(graph)
        try:
            with pytest.raises(GatewayError):
                await client.send_text("5491122334455", "hola")
        finally:
            await client.close()

    asyncio.run(scenario())
    assert elsewhere.requests == []


@pytest.mark.parametrize("media_id", ["../../me", "123?fields=access_token", "١٢٣", ""])
def test_a_media_id_that_is_not_digits_is_not_looked_up(graph, media_id):
    with pytest.raises(MediaError) as refused:
        download(client_for(graph), media_id)
    assert refused.value.refused
    assert graph.requests == []
