"""What arrives after a ticket was created goes to the same Zoho ticket: files uploaded with
the delivery, a later comment ("también falla la caja 3"), another photo; never a new ticket."""
from pathlib import Path

from helpdesk.tickets import DELIVERED
from helpdesk.config import zoho_config
from helpdesk.zoho import enqueue_addition
from tests.actions.helpers import paths_outside_media
from tests.workers.zoho_support import background_workers, run_burst, wait_until, world  # noqa: F401


def photo(tmp: Path, name: str = "error caja.jpg", size: int = 30_000) -> Path:
    """A file the channel stored: under the media directory (`var/media/`, the world's
    HELPDESK_VAR_DIR), the only place uploads come from."""
    folder = tmp / "var" / "media" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(i % 251 for i in range(size)))
    return path


def delivered(world, **kwargs):
    record = world.submit(**kwargs)
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.state == DELIVERED
    return record


def test_the_tickets_files_are_uploaded_after_its_creation(world):
    first, second = photo(world.tmp), photo(world.tmp, "ticket.pdf", 5000)
    record = delivered(world, attachments=[str(first), str(second)])

    uploaded = world.zoho.attachments[record.zoho_ticket_id]
    assert sorted(a["name"] for a in uploaded) == ["error caja.jpg", "ticket.pdf"]
    by_name = {a["name"]: a for a in uploaded}
    assert world.zoho.attachment_bytes[by_name["error caja.jpg"]["id"]] == first.read_bytes()
    assert by_name["ticket.pdf"]["_content_type"] == "application/pdf"
    assert all(a["isPublic"] is False for a in uploaded)
    assert len(world.zoho.tickets) == 1


def test_a_comment_goes_to_the_existing_ticket(world):
    record = delivered(world)
    enqueue_addition(world.redis, record.id, zoho_config(), comment_text="también falla la caja 3",
                     addition_id="msg-wamid-1")
    # the same message handled twice (a redelivery) is one comment
    enqueue_addition(world.redis, record.id, zoho_config(), comment_text="también falla la caja 3",
                     addition_id="msg-wamid-1")

    run_burst(world.env)

    [comment] = world.zoho.comments[record.zoho_ticket_id]
    assert comment["content"].startswith("también falla la caja 3")
    assert comment["isPublic"] is False
    assert len(world.zoho.tickets) == 1
    assert len(world.zoho.calls("POST", "/tickets")) == 1
    # and queued again after it was added: still one comment
    enqueue_addition(world.redis, record.id, zoho_config(), comment_text="también falla la caja 3",
                     addition_id="msg-wamid-1")
    run_burst(world.env)
    assert len(world.zoho.comments[record.zoho_ticket_id]) == 1


def test_another_photo_later_is_uploaded_to_the_same_ticket(world):
    record = delivered(world)
    later = photo(world.tmp, "segunda foto.png", 12_000)
    enqueue_addition(world.redis, record.id, zoho_config(), attachment_path=str(later))
    run_burst(world.env)
    [attachment] = world.zoho.attachments[record.zoho_ticket_id]
    assert attachment["name"] == "segunda foto.png" and attachment["size"] == str(later.stat().st_size)
    assert len(world.zoho.tickets) == 1


def test_an_addition_waits_for_the_tickets_delivery(world, background_workers):
    world.zoho.fail(2, status=503, method="POST", path="/tickets")
    world.reconfigure(delivery={"retry_intervals": [2]})
    record = world.submit()
    world.enqueue(record)
    enqueue_addition(world.redis, record.id, zoho_config(), comment_text="ahora tampoco imprime",
                     addition_id="msg-2")
    background_workers()
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, what="delivery")
    zoho_id = world.ledger.get(record.id).zoho_ticket_id
    wait_until(lambda: world.zoho.comments.get(zoho_id), 15, what="the comment")
    assert len(world.zoho.tickets) == 1
    assert [c["content"].split("\n")[0] for c in world.zoho.comments[zoho_id]] == ["ahora tampoco imprime"]


def test_a_comment_whose_answer_was_lost_is_not_posted_twice(world):
    record = delivered(world)
    world.zoho.fail(1, status=502, method="POST", path=f"/tickets/{record.zoho_ticket_id}/comments", after=True)
    enqueue_addition(world.redis, record.id, zoho_config(), comment_text="la caja 3 tampoco",
                     addition_id="msg-3")
    run_burst(world.env)
    assert len(world.zoho.comments[record.zoho_ticket_id]) == 1
    assert len(world.zoho.calls("POST", f"/tickets/{record.zoho_ticket_id}/comments")) == 1
    assert world.zoho.calls("GET", f"/tickets/{record.zoho_ticket_id}/comments")  # it looked first


def test_a_file_that_is_gone_tells_a_human(world):
    record = delivered(world)
    enqueue_addition(world.redis, record.id, zoho_config(), attachment_path=str(world.tmp / "var" / "media" / "ab" / "borrada.jpg"))
    run_burst(world.env)
    [notice] = world.ledger.human_notices()
    assert notice["kind"] == "addition_failed" and "borrada.jpg" in notice["text"]
    assert world.zoho.attachments == {}


def test_a_path_outside_the_media_directory_is_never_uploaded(world):
    """A ledger row naming `.env`, /proc/self/environ, `../` or a symlink out of the media
    directory (an old row, a forged call before the actions checked): nothing of it reaches
    Zoho, the ticket's own file does, and the skip is logged with the ticket id."""
    hostile = paths_outside_media(world.tmp / "var")
    good = photo(world.tmp)
    record = world.submit(attachments=[*hostile, str(good)])
    world.enqueue(record)
    enqueue_addition(world.redis, record.id, zoho_config(), attachment_path=str(world.tmp / "secret.txt"))

    finished = run_burst(world.env)

    record = world.ledger.get(record.id)
    assert record.state == DELIVERED
    uploaded = world.zoho.attachments[record.zoho_ticket_id]
    assert [a["name"] for a in uploaded] == ["error caja.jpg"]
    assert all(b"SECRET" not in data for data in world.zoho.attachment_bytes.values())
    refusals = [line for line in finished.stderr.splitlines() if '"msg": "attachment refused' in line]
    assert len(refusals) == len(hostile) + 1 and all(record.id in line for line in refusals)
    assert not any("secret.txt" in line or ".env" in line for line in refusals)
    assert world.ledger.human_notices() == []
