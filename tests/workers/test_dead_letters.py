"""The operator command `python -m workers.dead_letters` lists and re-queues dead letters."""
import asyncio
import json
import subprocess
import sys

import redis.asyncio as aioredis

from rq.registry import FailedJobRegistry

from helpdesk import redis_keys, whatsapp
from helpdesk.logs import mask_phone
from helpdesk.tickets import DELIVERED, FAILED
from helpdesk.config import channel_config, zoho_config
from helpdesk.zoho import DEFAULT_QUEUE, ZOHO_QUEUE, delivery_job_id, enqueue_addition
from tests.conftest import PROJECT
from tests.workers.zoho_support import run_burst, world  # noqa: F401

FIELD_ERRORS = [{"fieldName": "/classification", "errorType": "invalid"}]


def dead_letters(world, *args):
    return subprocess.run([sys.executable, "-m", "workers.dead_letters", *args], cwd=PROJECT, env=world.env,
                          capture_output=True, text=True, timeout=60)


def rejected(world, started):
    world.zoho.reject(1, FIELD_ERRORS)
    record = world.submit(started=started)
    world.enqueue(record)
    run_burst(world.env)
    assert world.ledger.get(record.id).state == FAILED
    return record


def test_list_shows_failed_tickets_with_zohos_errors(world):
    record = rejected(world, 1.0)

    listed = dead_letters(world, "list")
    assert listed.returncode == 0, listed.stderr
    assert "Failed tickets: 1" in listed.stdout
    assert record.reference in listed.stdout and "rejected" in listed.stdout
    assert "/classification: invalid" in listed.stdout
    assert "Notices not delivered to the support team: 1" in listed.stdout

    as_json = json.loads(dead_letters(world, "list", "--json").stdout)
    [ticket] = as_json["tickets"]
    assert ticket["ticket_id"] == record.id and ticket["field_errors"] == FIELD_ERRORS
    assert as_json["jobs"] == []  # the ticket's failed job is the ticket's entry
    [notice] = as_json["unsent_notices"]
    assert notice["kind"] == "ticket_rejected"


def test_requeue_by_reference_delivers_it_once(world):
    record = rejected(world, 1.0)  # the portal's picklist was fixed meanwhile

    requeued = dead_letters(world, "requeue", record.reference)
    assert requeued.returncode == 0, requeued.stderr
    assert record.reference in requeued.stdout
    assert world.ledger.get(record.id).state == "pending_delivery"
    assert world.ledger.get(record.id).attempts == 0
    assert delivery_job_id(record.id) not in FailedJobRegistry(ZOHO_QUEUE, connection=world.redis).get_job_ids()
    run_burst(world.env)

    assert world.ledger.get(record.id).state == DELIVERED
    assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert "Failed tickets: 0" in dead_letters(world, "list").stdout


def test_requeue_all_and_failed_jobs(world):
    first, second = rejected(world, 1.0), rejected(world, 2.0)
    third = world.submit(started=3.0)
    world.enqueue(third)
    run_burst(world.env)
    late = world.tmp / "var" / "media" / "la" / "late.jpg"  # where the channel stores files
    enqueue_addition(world.redis, third.id, zoho_config(), attachment_path=str(late))
    run_burst(world.env)  # the file is not there yet: the addition fails
    jobs = json.loads(dead_letters(world, "list", "--json").stdout)["jobs"]
    assert [j["function"] for j in jobs] == ["workers.zoho_jobs.add_to_ticket"]
    late.parent.mkdir(parents=True)
    late.write_bytes(b"\xff\xd8\xff" + b"0" * 100)

    done = dead_letters(world, "requeue-all")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 3
    run_burst(world.env)

    for record in (first, second):
        assert world.ledger.get(record.id).state == DELIVERED
        assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert [a["name"] for a in world.zoho.attachments[world.ledger.get(third.id).zoho_ticket_id]] == ["late.jpg"]
    for queue in (ZOHO_QUEUE, DEFAULT_QUEUE):
        assert FailedJobRegistry(queue, connection=world.redis).get_job_ids() == []


def test_unknown_ids_and_usage(world):
    missing = dead_letters(world, "requeue", "HD-NOPE00")
    assert missing.returncode == 1 and "no failed ticket or failed job" in missing.stderr
    assert dead_letters(world).returncode == 2
    assert dead_letters(world, "requeue").returncode == 2


def test_notices_lists_what_the_support_team_was_told(world):
    record = rejected(world, 1.0)
    shown = dead_letters(world, "notices")
    assert shown.returncode == 0
    assert "ticket_rejected" in shown.stdout and "NOT SENT" in shown.stdout and record.reference in shown.stdout


def _park_one(world, text: str = "la caja 3 no enciende") -> str:
    """A message parked as the Rasa server parks one (helpdesk.whatsapp.park)."""
    message = whatsapp.InboundMessage(channel="waha", message_id="false_5491155550000@c.us_X1",
                                      conversation_id="5491155550000",
                                      chat_id="5491155550000@c.us", kind="text", text=text)
    partitions = channel_config().inbound_partitions
    partition = whatsapp.partition_of(message.conversation_id, partitions)

    async def park() -> str:
        client = aioredis.Redis.from_url(world.env["REDIS_URL"])
        try:
            await whatsapp.ensure_group(client, partition)
            entry_id = await client.xadd(whatsapp.stream(partition), {"m": message.to_json()})
            return await whatsapp.park(client, partition, entry_id.decode(), message.to_json(),
                                       "3 attempts failed; the last: ConnectionError: boom")
        finally:
            await client.close()

    return asyncio.run(park())


def test_parked_messages_are_listed_replayed_and_the_support_team_told(world):
    parked_id = _park_one(world)
    whatsapp.enqueue_notice(world.redis, "inbound_parked", {
        "id": parked_id, "who": mask_phone("5491155550000"),
        "reason": "3 attempts failed; the last: ConnectionError: boom"},
        once_per=f"inbound_parked:{parked_id}")
    run_burst(world.env)
    [notice] = [n for n in world.ledger.human_notices()
                if n["kind"] == "whatsapp_inbound_parked"]
    assert parked_id in notice["text"] and "549****00" in notice["text"]
    assert "5491155550000" not in notice["text"]  # the number masked

    listed = dead_letters(world, "inbound")
    assert listed.returncode == 0, listed.stderr
    assert parked_id in listed.stdout and "549****00" in listed.stdout
    assert "la caja 3 no enciende" in listed.stdout and "ConnectionError" in listed.stdout
    assert "Parked WhatsApp messages: 1" in dead_letters(world, "list").stdout
    [entry] = json.loads(dead_letters(world, "inbound", "--json").stdout)
    assert entry["id"] == parked_id and entry["readable"] is True

    replayed = dead_letters(world, "replay-inbound", parked_id)
    assert replayed.returncode == 0 and "queued again" in replayed.stdout
    partitions = channel_config().inbound_partitions
    stream = whatsapp.stream(whatsapp.partition_of("5491155550000", partitions))
    [(_id, fields)] = world.redis.xrange(stream)
    assert whatsapp.InboundMessage.from_json(fields[b"m"]).text == "la caja 3 no enciende"
    assert dead_letters(world, "inbound", "--json").stdout.strip() == "[]"
    again = dead_letters(world, "replay-inbound", parked_id)
    assert again.returncode == 1 and "no parked message" in again.stderr


def test_undelivered_messages_are_listed_and_sent_again(world):
    message = {"channel": "waha", "chat_id": "5491155550000@c.us",
               "conversation_id": "5491155550000", "kind": "text",
               "text": "Su ticket es HD-ABC123", "mentions": [], "attempt": 9, "queued_at": 1.0}
    parked_id = world.redis.xadd(redis_keys.outbox_parked(), {
        "m": json.dumps(message), "reason": "not delivered in 24.0 h (9 attempts)",
        "parked_at": "1.0"}).decode()

    listed = dead_letters(world, "outbound")
    assert listed.returncode == 0, listed.stderr
    assert parked_id in listed.stdout and "HD-ABC123" in listed.stdout
    assert "549****00" in listed.stdout and "5491155550000" not in listed.stdout
    assert "WhatsApp messages not delivered: 1" in dead_letters(world, "list").stdout

    replayed = dead_letters(world, "replay-outbound", parked_id)
    assert replayed.returncode == 0, replayed.stderr
    [queued] = [json.loads(raw) for raw in
                world.redis.lrange(redis_keys.outbox("waha", "5491155550000@c.us"), 0, -1)]
    assert queued["text"] == "Su ticket es HD-ABC123" and queued["attempt"] == 0
    assert world.redis.zscore(redis_keys.outbox_due(), redis_keys.outbox("waha", "5491155550000@c.us"))
    assert dead_letters(world, "outbound", "--json").stdout.strip() == "[]"
    assert dead_letters(world, "replay-outbound", parked_id).returncode == 1
