"""Drill: a store sends 25 photos in one second while its ticket is being collected.

Must hold: the rate limit (20 messages a minute) stops the bot from answering the flood, but
loses nothing. Every photo is stored and joins the ticket's attachments; the messages over
the limit are on the tracker with no reply after them, and the user hears the rate-limit
notice once.

Before, the 6 messages over the limit were dropped at the webhook (their dedupe key set,
nothing recorded): 6 of the 26 photos never reached the ticket.

The session's real Rasa server, action server and WAHA channel; files served by the fake WAHA.
"""
import time

import requests

from helpdesk.config import channel_config
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message
from tests.stack import WAHA_HMAC, api_headers


def _tracker(stack, number):
    answer = requests.get(f"{stack.rasa_url}/conversations/{number}/tracker",
                          headers=api_headers(), timeout=30)
    answer.raise_for_status()
    return answer.json()


def _photo(fake_waha, number, n):
    path = f"/api/files/default/{number}-{n}.jpg"
    fake_waha.files[path] = (b"\xff\xd8\xff photo %d of " % n + number.encode(), "image/jpeg")
    return {"url": f"{fake_waha.url}{path}", "mimetype": "image/jpeg", "filename": None,
            "error": None}


def test_twenty_five_photos_in_a_second_are_all_kept_and_the_flood_is_not_answered(
        stack, fake_waha):
    number = "5491166620002"
    chat = f"{number}@c.us"
    fake_waha.clear()
    answer = post_waha(stack.rasa_url, waha_message(
        number, "no imprime la fiscal de la tienda 42, sale este error",
        media=_photo(fake_waha, number, 0)), WAHA_HMAC)
    assert answer.json().get("accepted") == 1
    fake_waha.wait_for(lambda seen: any("¿Los datos son correctos?" in t
                                        for t in texts_to(seen, chat)), 60)

    started = time.monotonic()
    events = [waha_message(number, "", media=_photo(fake_waha, number, n))
              for n in range(1, 26)]
    outcomes = {}
    with requests.Session() as session:
        for event in events:
            reply = post_waha(stack.rasa_url, event, WAHA_HMAC, session=session)
            assert reply.status_code == 200
            outcome = next(k for k, v in reply.json().items() if k != "status" and v)
            outcomes[event["payload"]["id"]] = outcome
    sent_in = time.monotonic() - started
    over = [mid for mid, outcome in outcomes.items() if outcome.startswith("rate_limited")]
    # the first message counted: 19 photos within the limit, 6 over it
    assert len(over) == 6 and list(outcomes.values()).count("accepted") == 19

    every_id = {e["payload"]["id"] for e in events}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tracker = _tracker(stack, number)
        on_tracker = {e.get("message_id") for e in tracker["events"] if e["event"] == "user"}
        if every_id <= on_tracker:
            break
        time.sleep(1)
    assert every_id <= on_tracker, f"{len(every_id - on_tracker)} photos never recorded"
    time.sleep(2)  # the last turns' replies, and anything (wrongly) still on its way
    tracker = _tracker(stack, number)

    # every photo is a stored file of the ticket being collected: the first and the 25
    attachments = tracker["slots"]["attachments"]
    assert len(attachments) == 26 and len(set(attachments)) == 26
    for path in attachments:
        with open(path, "rb") as stored:
            assert stored.read().startswith(b"\xff\xd8\xff photo ")

    # the messages over the limit got no answer: nothing follows them but the next message
    user_events = [i for i, e in enumerate(tracker["events"]) if e["event"] == "user"]
    for index in user_events:
        if tracker["events"][index].get("message_id") in over:
            following = tracker["events"][index + 1:]
            until_next = following[:next((i for i, e in enumerate(following)
                                          if e["event"] == "user"), len(following))]
            assert [e for e in until_next if e["event"] in ("bot", "action")] == []
    notice = channel_config().text("rate_limited")
    assert texts_to(fake_waha.requests, chat).count(notice) == 1
    print(f"25 photos posted in {sent_in:.2f} s; 6 over the limit recorded, 26 attachments")
