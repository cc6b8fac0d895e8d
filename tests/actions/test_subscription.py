"""action_opt_out and action_opt_in: the opt-out set on the session's real Redis, the ticket
form cleared, and an unreachable Redis told to the user."""
import time

import pytest

from actions.subscription import ActionOptIn, ActionOptOut
from helpdesk import redis_keys
from tests.actions.helpers import (
    SENDER,
    FRESH_TICKET_SLOTS,
    TICKET_SLOTS,
    OTHER,
    Conversation,
    in_ticket_form,
    rendered,
    responses,
    run,
    slot_events,
)


def test_opt_out_adds_the_sender_to_the_redis_set(optout_redis, domain):
    optout_redis.sadd(redis_keys.opted_out_set(), OTHER)
    conversation = Conversation().user("BAJA", "opt_out")

    events, dispatcher = run(ActionOptOut(), conversation.tracker(), domain)

    assert optout_redis.sismember(redis_keys.opted_out_set(), SENDER)
    assert optout_redis.smembers(redis_keys.opted_out_set()) == {SENDER.encode(), OTHER.encode()}
    assert responses(dispatcher) == ["utter_opted_out"]
    assert slot_events(events) == FRESH_TICKET_SLOTS


def test_opt_out_inside_the_form_clears_the_ticket(optout_redis, domain):
    conversation = in_ticket_form(Conversation())
    conversation.user("STOP", "opt_out")

    events, _ = run(ActionOptOut(), conversation.tracker(), domain)

    assert optout_redis.sismember(redis_keys.opted_out_set(), SENDER)
    after = conversation.apply(events).tracker().slots
    assert all(after[name] == FRESH_TICKET_SLOTS[name] for name in TICKET_SLOTS)


def test_opt_in_removes_the_sender_from_the_redis_set(optout_redis, domain):
    optout_redis.sadd(redis_keys.opted_out_set(), SENDER, OTHER)
    conversation = Conversation().user("ALTA", "opt_in")

    events, dispatcher = run(ActionOptIn(), conversation.tracker(), domain)

    assert optout_redis.smembers(redis_keys.opted_out_set()) == {OTHER.encode()}
    assert responses(dispatcher) == ["utter_opted_in"]
    # nothing collected while the bot was silent carries on
    assert slot_events(events) == FRESH_TICKET_SLOTS


def test_opt_out_then_opt_in(optout_redis, domain):
    conversation = Conversation().user("BAJA", "opt_out")
    run(ActionOptOut(), conversation.tracker(), domain)
    assert optout_redis.sismember(redis_keys.opted_out_set(), SENDER)

    conversation.action("action_opt_out").action("action_listen").user("ALTA", "opt_in")
    _, dispatcher = run(ActionOptIn(), conversation.tracker(), domain)

    assert not optout_redis.sismember(redis_keys.opted_out_set(), SENDER)
    assert responses(dispatcher) == ["utter_opted_in"]


@pytest.mark.parametrize("action, intent", [(ActionOptOut, "opt_out"), (ActionOptIn, "opt_in")])
def test_unreachable_redis_tells_the_user(unreachable_redis, domain, action, intent):
    conversation = in_ticket_form(Conversation())
    conversation.user("BAJA" if intent == "opt_out" else "ALTA", intent)

    started = time.monotonic()
    events, dispatcher = run(action(), conversation.tracker(), domain)

    assert time.monotonic() - started < 5
    assert responses(dispatcher) == ["utter_opt_unavailable"]
    assert rendered(dispatcher.messages[0])["text"].startswith("No he podido guardar su preferencia")
    assert events == []
