"""Drill: a handoff whose mark is gone (issue 13). The conversation is paused in the real Rasa
server but its Redis mark expired, or was never written because its Chatwoot write was
dead-lettered; before, "resolved" was ignored and nothing else could hand it back, so the bot
stayed silent for ever. Each way back must work without the mark: the agent resolving it in
Chatwoot, the operator's `python -m workers.chatwoot_jobs resume <id>`, and the maximum pause
(config/chatwoot.yml handoff.max_pause_seconds; the job the handoff scheduled is made due now).

The session stack (tests/stack.py: Redis, the action server, the Rasa server, the fake WAHA and
Chatwoot), a real RQ worker in burst mode for each step; the steps are
tests/integration/handback_steps.py.
"""

import pytest
from rq.registry import ScheduledJobRegistry

from helpdesk import handoff, redis_keys
from tests.integration.handback_steps import (
    EXPIRED,
    RESUMED,
    assert_back_with_the_bot,
    hand_over,
    operator_resume,
    resolve,
    run_worker,
    write_while_paused,
)
from tests.integration.whatsapp_fixtures import (  # noqa: F401 - fixtures
    _fresh_waha,
    client,
    number,
)

pytestmark = pytest.mark.usefixtures("stack")


@pytest.mark.parametrize("way", ["agent resolves", "operator command", "maximum pause"])
def test_a_paused_conversation_without_its_mark_is_resumable(stack, fake_waha, fake_chatwoot, client,
                                                             bot_ledger, number, way):
    conversation = hand_over(stack, fake_waha, fake_chatwoot, client, number)
    since = handoff.marked_since(client, number)
    write_while_paused(stack, fake_waha, number, ["gracias, espero"])
    client.delete(redis_keys.handoff_requested(number))  # expired, or its write dead-lettered

    if way == "agent resolves":
        resolve(stack, fake_chatwoot, conversation, expected="resuming if paused")
        run_worker(stack)
        told = RESUMED
    elif way == "operator command":
        operator_resume(stack, number)
        told = RESUMED
    else:
        # the job the handoff scheduled, made due now: as if the configured pause had passed
        [job_id] = [j for j in ScheduledJobRegistry("chatwoot", connection=client).get_job_ids()
                    if j.startswith(f"handoff-expiry-{number}-")]
        assert handoff.schedule_expiry(client, number, since, 0.001, [1, 1]) == job_id
        run_worker(stack)
        told = EXPIRED

    assert_back_with_the_bot(stack, fake_waha, client, bot_ledger, number, told)

