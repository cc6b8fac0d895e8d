"""Drill: WAHA cannot resolve a sender's @lid (its lids API answers `"pn": null`, as NOWEB
sessions do, devlikeapro/waha#1712), while the message itself carries the number (GOWS
`_data.Info.SenderAlt`). The promise: an opted-out user writing from their lid is still the
opted-out number at acceptance and hears nothing; their later messages without the field are
the same conversation, under the number (issue 12). Before the fix the lid was a user of its
own: the message was accepted and answered."""
import random
import time

import pytest

from tests.integration.whatsapp_payloads import new_id, post_waha, texts_to, waha_message
from tests.stack import WAHA_HMAC

pytestmark = pytest.mark.usefixtures("stack")


def gows_message(lid: str, body: str, alt=None):
    """A GOWS `message` event from an @lid sender, `SenderAlt` = alt (None: no `Info`)."""
    mid = f"false_{lid}_3AC{new_id()}"
    data = {"Info": {"Chat": lid, "Sender": lid, "IsFromMe": False, "IsGroup": False,
                     "AddressingMode": "", "SenderAlt": alt, "RecipientAlt": "",
                     "ID": mid.split("_")[2], "Type": "text", "PushName": "Lu"},
            "Message": {"conversation": body}} if alt is not None else {"pushName": "Lu"}
    event = waha_message("0", body, message_id=mid, **{"from": lid, "to": None, "_data": data})
    event["engine"] = "GOWS"
    return event


def wait_until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.2)


def user_events(stack, conversation):
    return [e for e in stack.tracker(conversation)["events"] if e["event"] == "user"]


def test_an_opted_out_number_behind_an_unresolvable_lid_stays_opted_out(stack, fake_waha):
    fake_waha.clear()
    number = "54911" + "".join(random.choice("0123456789") for _ in range(8))
    lid_digits = "7" + "".join(random.choice("0123456789") for _ in range(13))
    lid = f"{lid_digits}@lid"
    assert lid not in fake_waha.lids  # WAHA answers {"lid": …, "pn": null}

    answer = post_waha(stack.rasa_url, waha_message(number, "BAJA"), WAHA_HMAC)
    assert answer.json().get("accepted") == 1
    wait_until(lambda: texts_to(fake_waha.requests, f"{number}@c.us"))  # opted out, told so

    answer = post_waha(stack.rasa_url, gows_message(lid, "hola, ¿siguen ahí?",
                                                    alt=f"{number}@s.whatsapp.net"), WAHA_HMAC)
    assert answer.json() == {"status": "ok", "opted_out": 1, "ignored": 0}

    # back in from the lid, this time without the field: the same number's conversation
    answer = post_waha(stack.rasa_url, gows_message(lid, "ALTA"), WAHA_HMAC)
    assert answer.json().get("accepted") == 1
    wait_until(lambda: len(user_events(stack, number)) == 2)
    wait_until(lambda: texts_to(fake_waha.requests, lid))  # the answer goes where they wrote
    time.sleep(1.5)  # anything (wrongly) still on its way
    assert [e["parse_data"]["intent"]["name"] for e in user_events(stack, number)] == [
        "opt_out", "opt_in"]
    assert user_events(stack, lid_digits) == []  # the lid was never a user of its own
    assert len(texts_to(fake_waha.requests, lid)) == 1
