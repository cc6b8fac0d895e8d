"""The media fetch queue and its fetcher (connectors/whatsapp/media_fetch.py), through the
WAHA channel with the test Redis behind it and the fake WAHA serving (and deleting) files:
a signed image message is queued at acceptance with no download in the acknowledgement; the
fetcher stores it and records it; a gone file, a file over the limit and a file on another
host are recorded as errors (the latter never fetched); a fetch left by a dead consumer is
taken over; the fetcher never runs more downloads at once than configured; the turn uses the
record, waits for a pending one, and fetches itself when there is none."""
import asyncio
import dataclasses
import json
import threading
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from connectors.waha import WahaInput
from connectors.whatsapp import media_fetch
from connectors.whatsapp.media_fetch import GROUP, MediaFetcher
from helpdesk import redis_keys
from helpdesk.config import load_channel_config
from helpdesk.whatsapp import InboundMessage, Media
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    CHANNELS_YML,
    USER,
    WAHA_HMAC_KEY,
    channel_env,
    fake_waha,
    fresh,
    run,
    tiny_config,
    wait_until,
    waha_event,
    waha_payload,
    waha_settings,
    waha_signed,
    webhook_request,
)
from tests.fakes.gateways import FakeObjectStore

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32
UNAVAILABLE = load_channel_config(CHANNELS_YML).text("media_unavailable")


@pytest.fixture
def media_env(channel_env, monkeypatch, tmp_path) -> Iterator[Path]:
    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path))
    yield tmp_path / "media"


def image(url: str, message_id: str = "m1") -> InboundMessage:
    return InboundMessage(channel="waha", message_id=message_id, conversation_id=USER,
                          chat_id=f"{USER}@c.us", kind="media", text="",
                          media=Media(kind="image", mime_type="image/jpeg", url=url))


def scenario(fake_waha, work, **config: Any) -> Any:
    """Run `work(channel, fetcher)` on a fresh WAHA channel and a fetcher with quick timings."""
    async def run_it():
        channel = fresh(WahaInput, waha_settings(fake_waha.url, hmac_key=WAHA_HMAC_KEY))
        channel.config = tiny_config(**{"media_fetch_claim_seconds": 0.5, **config})
        fetcher = MediaFetcher(channel.shared.media, channel.config,
                               channel.shared.media_fetchers, block_ms=100)
        try:
            return await work(channel, fetcher)
        finally:
            await fetcher.stop()
            await channel.client.close()
            await channel.shared.redis.close()

    return run(run_it())


async def record_of(channel, message_id: str) -> Dict[str, Any]:
    raw = await channel.shared.redis.get(redis_keys.media_fetched("waha", message_id))
    return json.loads(raw) if raw else {}


def test_an_accepted_image_is_queued_at_acceptance_then_fetched_stored_and_recorded(
        media_env, fake_waha, redis_client):
    url = fake_waha.serve_file("/api/files/default/a.jpg", JPEG, "image/jpeg")
    payload = waha_payload(body="", hasMedia=True,
                           media={"url": url, "mimetype": "image/jpeg", "error": None})
    body = json.dumps(waha_event(payload)).encode()

    async def work(channel, fetcher):
        answer = await channel.receive(webhook_request(waha_signed(body), body))
        assert json.loads(answer.body)["accepted"] == 1
        # the acknowledgement did not download anything; it left a job and a pending record
        assert fake_waha.calls("/api/files/default/a.jpg") == []
        assert (await record_of(channel, payload["id"]))["state"] == "pending"
        assert await channel.shared.redis.xlen(redis_keys.media_fetches()) == 1
        # a redelivery of the same message is a duplicate: no second job
        await channel.receive(webhook_request(waha_signed(body), body))
        assert await channel.shared.redis.xlen(redis_keys.media_fetches()) == 1
        fetcher.start()
        await wait_until(_state_is(channel, payload["id"], "stored"))
        record = await record_of(channel, payload["id"])
        ttl = await channel.shared.redis.ttl(redis_keys.media_fetched("waha", payload["id"]))
        left = await channel.shared.redis.xlen(redis_keys.media_fetches())
        return record, ttl, left

    record, ttl, left = scenario(fake_waha, work)
    stored = record["media"]
    assert Path(stored["path"]).read_bytes() == JPEG
    assert Path(stored["path"]).parent.parent == media_env
    assert stored["mime_type"] == "image/jpeg" and stored["kind"] == "image"
    assert 0 < ttl <= load_channel_config(CHANNELS_YML).dedupe_ttl_seconds
    assert left == 0  # the job is acknowledged and deleted
    assert len(fake_waha.calls("/api/files/default/a.jpg")) == 1
    assert media_counts(redis_client) == {"media_stored_waha": 1}  # media_downloads_total


def media_counts(client) -> dict:
    return {k.decode(): int(v) for k, v in client.hgetall(redis_keys.counters()).items()
            if k.startswith(b"media_")}


def _state_is(channel, message_id: str, state: str):
    async def check():
        return (await record_of(channel, message_id)).get("state") == state
    return check


def test_an_image_over_the_rate_limit_is_recorded_and_queued_too(media_env, fake_waha,
                                                                  redis_client):
    urls = [fake_waha.serve_file(f"/api/files/default/r{i}.jpg", JPEG + bytes([i]), "image/jpeg")
            for i in range(3)]
    payloads = [waha_payload(body="", hasMedia=True,
                             media={"url": url, "mimetype": "image/jpeg", "error": None})
                for url in urls]

    async def work(channel, fetcher):
        channel.shared.log.rate_messages = 1  # the second message is over the limit
        outcomes = []
        for payload in payloads:
            body = json.dumps(waha_event(payload)).encode()
            answer = await channel.receive(webhook_request(waha_signed(body), body))
            outcomes.append(json.loads(answer.body))
        fetcher.start()
        for payload in payloads:
            await wait_until(_state_is(channel, payload["id"], "stored"))
        return outcomes

    outcomes = scenario(fake_waha, work)
    assert outcomes[0].get("accepted") == 1
    assert outcomes[1].get("rate_limited_first") == 1 and outcomes[2].get("rate_limited") == 1


def test_a_text_message_and_a_media_error_are_not_queued(media_env, fake_waha, redis_client):
    text = json.dumps(waha_event(waha_payload(body="hola"))).encode()
    broken = json.dumps(waha_event(waha_payload(body="", hasMedia=True, media=None))).encode()

    async def work(channel, fetcher):
        for body in (text, broken):
            answer = await channel.receive(webhook_request(waha_signed(body), body))
            assert json.loads(answer.body)["accepted"] == 1
        return await channel.shared.redis.exists(redis_keys.media_fetches())

    assert scenario(fake_waha, work) == 0


def test_gone_too_large_and_foreign_files_are_recorded_as_errors(media_env, fake_waha,
                                                                 redis_client):
    big = fake_waha.serve_file("/api/files/default/big.jpg", JPEG + b"\x00" * 500, "image/jpeg")
    gone = fake_waha.serve_file("/api/files/default/gone.jpg", JPEG, "image/jpeg", lifetime=0)
    with FakeObjectStore(host="127.0.0.2") as other:
        other.files["/x.jpg"] = (JPEG, "image/jpeg")

        async def work(channel, fetcher):
            for message_id, url in (("gone", gone), ("big", big),
                                    ("foreign", f"{other.url}/x.jpg")):
                assert await channel.shared.media.enqueue(image(url, message_id))
            fetcher.start()
            for message_id in ("gone", "big", "foreign"):
                await wait_until(_state_is(channel, message_id, "error"))
            return {m: await record_of(channel, m) for m in ("gone", "big", "foreign")}

        records = scenario(fake_waha, work, media_max_bytes=len(JPEG) + 10)
        assert other.requests == []  # another host is never asked
    assert records["gone"]["status"] == 404 and not records["gone"]["too_large"]
    assert records["big"]["too_large"] is True
    assert records["foreign"]["refused"] is True
    # a host at most, never a media URL (it can carry a signature)
    assert all("/x.jpg" not in r["error"] and "/api/files" not in r["error"]
               for r in records.values())
    assert not media_env.exists()
    assert media_counts(redis_client) == {"media_failed_waha": 3}


def test_a_fetch_left_by_a_dead_consumer_is_taken_over(media_env, fake_waha, redis_client):
    url = fake_waha.serve_file("/api/files/default/left.jpg", JPEG, "image/jpeg")

    async def work(channel, fetcher):
        redis = channel.shared.redis
        await channel.shared.media.enqueue(image(url, "left"))
        await channel.shared.media.ensure_group()
        # a process reads the job and dies before fetching: it stays pending on its name
        read = await redis.xreadgroup(GROUP, "dead-process", {redis_keys.media_fetches(): ">"},
                                      count=1)
        assert read and len(read[0][1]) == 1
        fetcher.start()
        await wait_until(_state_is(channel, "left", "stored"))
        pending = await redis.xpending(redis_keys.media_fetches(), GROUP)
        return pending["pending"]

    assert scenario(fake_waha, work) == 0
    assert len(fake_waha.calls("/api/files/default/left.jpg")) == 1


def test_no_more_downloads_at_once_than_the_concurrency(media_env, fake_waha, redis_client):
    in_flight = {"now": 0, "most": 0}
    lock = threading.Lock()
    original = fake_waha.handle_get

    def counting(handler):
        with lock:
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])
        try:
            return original(handler)
        finally:
            with lock:
                in_flight["now"] -= 1

    fake_waha.handle_get = counting
    fake_waha.file_delay_seconds = 0.3
    urls = [fake_waha.serve_file(f"/api/files/default/c{i}.jpg", JPEG + bytes([i]), "image/jpeg")
            for i in range(6)]

    async def work(channel, fetcher):
        for i, url in enumerate(urls):
            await channel.shared.media.enqueue(image(url, f"c{i}"))
        fetcher.start()
        for i in range(6):
            await wait_until(_state_is(channel, f"c{i}", "stored"))

    scenario(fake_waha, work, media_fetch_concurrency=2)
    assert in_flight["most"] == 2


# --- the turn's side ------------------------------------------------------------------------

def test_the_turn_uses_the_record_even_after_waha_deleted_the_file(media_env, fake_waha,
                                                                  redis_client):
    url = fake_waha.serve_file("/api/files/default/t.jpg", JPEG, "image/jpeg", lifetime=2)

    async def work(channel, fetcher):
        message = image(url, "t")
        await channel.shared.media.enqueue(message)
        fetcher.start()
        await wait_until(_state_is(channel, "t", "stored"))
        await fetcher.stop()
        fake_waha.file_expiry["/api/files/default/t.jpg"] = 0  # WAHA deletes it now
        return await channel._download(message)

    stored = scenario(fake_waha, work)
    assert Path(stored["path"]).read_bytes() == JPEG
    assert len(fake_waha.calls("/api/files/default/t.jpg")) == 1  # the turn did not fetch
    assert fake_waha.texts() == []


def test_the_turn_waits_for_a_fetch_under_way(media_env, fake_waha, redis_client):
    fake_waha.file_delay_seconds = 1
    url = fake_waha.serve_file("/api/files/default/w.jpg", JPEG, "image/jpeg")

    async def work(channel, fetcher):
        message = image(url, "w")
        await channel.shared.media.enqueue(message)
        fetcher.start()
        await fake_waha.wait_for_async(lambda seen: len(seen) >= 1)  # the download started
        return await channel._download(message)

    stored = scenario(fake_waha, work, media_fetch_wait_seconds=20)
    assert Path(stored["path"]).read_bytes() == JPEG
    assert len(fake_waha.calls("/api/files/default/w.jpg")) == 1  # one download, the fetcher's


def test_the_turn_fetches_itself_without_a_record_or_after_the_wait(media_env, fake_waha,
                                                                    redis_client):
    url = fake_waha.serve_file("/api/files/default/n.jpg", JPEG, "image/jpeg")

    async def work(channel, fetcher):
        # no record (accepted before the queue existed): fetched here, as before
        first = await channel._download(image(url, "none"))
        # a pending fetch nobody runs: after the wait, fetched here
        stuck = image(url, "stuck")
        await channel.shared.media.enqueue(stuck)
        second = await channel._download(stuck)
        return first, second

    first, second = scenario(fake_waha, work, media_fetch_wait_seconds=0.3)
    assert first["sha256"] == second["sha256"] and Path(first["path"]).read_bytes() == JPEG
    assert len(fake_waha.calls("/api/files/default/n.jpg")) == 2
    assert media_counts(redis_client) == {"media_stored_waha": 2}  # each fetch counted once


def test_a_recorded_error_tells_the_user_without_fetching_again(media_env, fake_waha,
                                                                redis_client):
    url = fake_waha.serve_file("/api/files/default/e.jpg", JPEG, "image/jpeg", lifetime=0)

    async def work(channel, fetcher):
        message = image(url, "e")
        await channel.shared.media.enqueue(message)
        fetcher.start()
        await wait_until(_state_is(channel, "e", "error"))
        await fetcher.stop()
        return await channel._download(message)

    assert scenario(fake_waha, work) is None
    assert fake_waha.texts(f"{USER}@c.us") == [UNAVAILABLE]
    assert len(fake_waha.calls("/api/files/default/e.jpg")) == 1
    assert media_counts(redis_client) == {"media_failed_waha": 1}  # the fetcher's, not twice
