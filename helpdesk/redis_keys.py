"""Every Redis key the project writes, in one place, under one prefix."""

PREFIX = "helpdesk"


def opted_out_set() -> str:
    """Set of conversation ids (senders) that asked not to receive messages."""
    return f"{PREFIX}:opted_out"


def opted_out_restored() -> str:
    """Marker: the opted-out set holds the ledger's opt-outs (missing after a Redis loss)."""
    return f"{PREFIX}:opted_out:restored"


def handoff_requested(conversation_id: str) -> str:
    return f"{PREFIX}:handoff:{conversation_id}"


def group_context(conversation_id: str) -> str:
    """List: a group participant's recent messages the bot read and did not answer (JSON
    {text, at}, newest last), for the ticket of their next report (helpdesk/whatsapp/
    group_context.py); not in the tracker."""
    return f"{PREFIX}:group_context:{conversation_id}"


def route(conversation_id: str) -> str:
    """Hash: where a conversation's replies go (helpdesk.whatsapp.conversations.Route)."""
    return f"{PREFIX}:route:{conversation_id}"


# --- WhatsApp channels ----------------------------------------------------------------


def inbound_stream() -> str:
    """Stream: the inbound log before it was split into partitions (read until drained)."""
    return f"{PREFIX}:inbound"


def inbound_partition(partition: int) -> str:
    """Stream: accepted inbound messages of one partition, waiting for (or in) their turn."""
    return f"{PREFIX}:inbound:{{{partition}}}"


def inbound_lease(partition: str) -> str:
    """String: the Rasa server reading one inbound partition ("legacy": the old stream)."""
    return f"{PREFIX}:inbound_lease:{partition}"


def inbound_starts(partition: int) -> str:
    """Hash: entry id → how many times its turn was started (a crash loop is parked)."""
    return f"{PREFIX}:inbound_starts:{{{partition}}}"


def inbound_parked() -> str:
    """Stream: inbound messages whose turn kept failing, kept for a person (dead letters)."""
    return f"{PREFIX}:inbound_parked"


def inbound_servers() -> str:
    """Sorted set: running Rasa servers by their last heartbeat (Redis clock, ms)."""
    return f"{PREFIX}:inbound_servers"


def inbound_seen(channel: str, message_id: str) -> str:
    """Dedupe marker of one provider message id (SET NX with a TTL)."""
    return f"{PREFIX}:seen:{channel}:{message_id}"


def inbound_edit(channel: str, message_id: str) -> str:
    """The text a user's edit gave one of their messages, for its turn if it has not run yet
    (TTL: the dedupe window)."""
    return f"{PREFIX}:edited:{channel}:{message_id}"


def media_fetches() -> str:
    """Stream: WAHA media files to fetch, recorded when their message is accepted (read by
    the fetchers of every process serving the webhook through a consumer group)."""
    return f"{PREFIX}:media_fetches"


def media_fetched(channel: str, message_id: str) -> str:
    """String (JSON): one message's media fetch: pending, the stored media, or the error."""
    return f"{PREFIX}:media_fetched:{channel}:{message_id}"


def rate_counter(conversation_id: str) -> str:
    return f"{PREFIX}:rate:{conversation_id}"


def rate_cooldown(conversation_id: str) -> str:
    return f"{PREFIX}:rate_pause:{conversation_id}"


def reply_sent(channel: str, message_id: str, position: int) -> str:
    """Marker: the n-th reply of the turn of one user message was sent (a re-run after a
    crash skips it)."""
    return f"{PREFIX}:replied:{channel}:{message_id}:{position}"


def actions_outage_told(conversation_id: str) -> str:
    """Marker: the user was told their message waits for the action server (once an outage)."""
    return f"{PREFIX}:actions_outage_told:{conversation_id}"


def outbox(channel: str, chat_id: str) -> str:
    """List: messages for one chat not yet delivered, oldest first."""
    return f"{PREFIX}:outbox:{channel}:{chat_id}"


def outbox_parked() -> str:
    """Stream: outgoing WhatsApp messages that could not be delivered, kept for a person."""
    return f"{PREFIX}:outbox_parked"


def gateway_session(channel: str) -> str:
    """Hash: the gateway's WhatsApp session as it last reported it (status, at, since)."""
    return f"{PREFIX}:gateway_session:{channel}"


def outbox_due() -> str:
    """Sorted set: outbox keys by the time of their next delivery attempt."""
    return f"{PREFIX}:outbox_due"


def outbox_lock(outbox_key: str) -> str:
    return f"{outbox_key}:lock"


def offered_buttons(conversation_id: str) -> str:
    """The buttons last offered to a conversation, to map "1"/"2"/a title to a payload."""
    return f"{PREFIX}:buttons:{conversation_id}"


def lid_number(lid: str) -> str:
    """A WAHA @lid id's phone number, once WAHA told us."""
    return f"{PREFIX}:lid:{lid}"


def direct_alias(conversation_id: str) -> str:
    """A direct chat that continues a group conversation (groups.ask_in: direct)."""
    return f"{PREFIX}:alias:{conversation_id}"


def sent_message(channel: str, message_id: str) -> str:
    """What we sent under a provider id, for late failure statuses (Meta 131047)."""
    return f"{PREFIX}:sent:{channel}:{message_id}"


def counters() -> str:
    """Hash of channel counters (messages in/out, failures by code)."""
    return f"{PREFIX}:counters"


# --- LLM usage, budgets and cache --------------------------------------------------------


def llm_usage_conversation(conversation_id: str) -> str:
    """Hash: tokens, cost and calls of one conversation's LLM uses (expires with its window)."""
    return f"{PREFIX}:llm:usage:conv:{conversation_id}"


def llm_usage_month(month: str) -> str:
    """Hash: tokens, cost, calls and outcomes of one UTC month ("2025-06"), by use too."""
    return f"{PREFIX}:llm:usage:month:{month}"


def llm_usage_total() -> str:
    """Hash: the same counters since the start, for monotonic metrics."""
    return f"{PREFIX}:llm:usage:total"


def llm_alert_sent(kind: str, scope: str) -> str:
    """Marker that an LLM budget alert was logged for a month or a conversation (SET NX)."""
    return f"{PREFIX}:llm:alert:{kind}:{scope}"


def llm_cache(use: str, digest: str) -> str:
    """A cached LLM answer of one use, by a digest of its inputs, model and prompt version."""
    return f"{PREFIX}:llm:cache:{use}:{digest}"


# --- circuit breakers (helpdesk.circuit), one per backend ("zoho", "chatwoot") -----------
def circuit(backend: str) -> str:
    """Hash: failures, open_until, reason of a backend's circuit breaker."""
    return f"{PREFIX}:circuit:{backend}"


def circuit_probe(backend: str) -> str:
    """The one trial call allowed while a circuit is half-open (SET NX with a TTL)."""
    return f"{PREFIX}:circuit:{backend}:probe"


# --- Zoho Desk (helpdesk.zoho, workers.zoho_jobs) -----------------------------------------
def zoho_access_token() -> str:
    """Hash: the shared OAuth access token and its expiry (epoch seconds)."""
    return f"{PREFIX}:zoho:access_token"


def zoho_token_lock() -> str:
    """Lock held while one process refreshes the access token."""
    return f"{PREFIX}:zoho:access_token:lock"


def zoho_token_refreshes() -> str:
    """Sorted set of recent refresh times (Zoho allows 10 in 10 minutes)."""
    return f"{PREFIX}:zoho:access_token:refreshes"


def zoho_check() -> str:
    """JSON: the outcome of the last `make zoho-check` (helpdesk.zoho.check), for readiness."""
    return f"{PREFIX}:zoho:check"


def zoho_contact(phone: str) -> str:
    """A reporter's Zoho contact id, by phone digits."""
    return f"{PREFIX}:zoho:contact:{phone}"


def zoho_delivery_lock(ticket_id: str) -> str:
    """Held while one job delivers a ticket: two runs never create it twice."""
    return f"{PREFIX}:zoho:deliver:{ticket_id}"


def zoho_addition_lock(addition_id: str) -> str:
    return f"{PREFIX}:zoho:addition:{addition_id}"


def periodic_run(job_id: str) -> str:
    """Marks one run of a periodic job (SET NX): a time slot runs once."""
    return f"{PREFIX}:periodic:{job_id}"


def human_notice_sent(dedupe_key: str) -> str:
    """A notice to the support team about one condition, sent once per window."""
    return f"{PREFIX}:human_notice:{dedupe_key}"


# --- Chatwoot mirror and handoff ---------------------------------------------------------
# (handoff_requested(conversation_id) above marks a conversation that is with a person.)


def chatwoot_conversation(conversation_id: str) -> str:
    """Hash: the Chatwoot contact and conversation that mirror one WhatsApp conversation."""
    return f"{PREFIX}:chatwoot:conv:{conversation_id}"


def chatwoot_owner(chatwoot_conversation_id: object) -> str:
    """The WhatsApp conversation id a Chatwoot conversation (its display id) mirrors."""
    return f"{PREFIX}:chatwoot:owner:{chatwoot_conversation_id}"


def chatwoot_outbox(conversation_id: str) -> str:
    """List: what is still to be written to Chatwoot for one conversation, oldest first."""
    return f"{PREFIX}:chatwoot:outbox:{conversation_id}"


def chatwoot_outbox_lock(conversation_id: str) -> str:
    """The job (id) that writes a conversation's Chatwoot outbox right now."""
    return f"{PREFIX}:chatwoot:outbox_lock:{conversation_id}"


def chatwoot_outbox_attempts(conversation_id: str) -> str:
    """Hash: failed attempts of outbox entries, by entry id."""
    return f"{PREFIX}:chatwoot:outbox_attempts:{conversation_id}"


def chatwoot_dead_letters() -> str:
    """List: mirror entries Chatwoot refused for good (4xx), kept for operators."""
    return f"{PREFIX}:chatwoot:dead"


def chatwoot_posted(chatwoot_message_id: object) -> str:
    """Marker: a Chatwoot message we created (its webhook echo is never relayed)."""
    return f"{PREFIX}:chatwoot:posted:{chatwoot_message_id}"


def chatwoot_self() -> str:
    """Hash: type and id of the Chatwoot user our API token writes as."""
    return f"{PREFIX}:chatwoot:self"


def chatwoot_webhook_seen(key: str) -> str:
    """Dedupe marker of a Chatwoot webhook delivery (message id or delivery id)."""
    return f"{PREFIX}:chatwoot:seen:{key}"


def chatwoot_ticket_noted(ticket_id: str, number: str) -> str:
    """Marker: the private note of a ticket at this number was posted."""
    return f"{PREFIX}:chatwoot:ticket_noted:{ticket_id}:{number}"


def handoff_resume_claim(conversation_id: str) -> str:
    """The job handing a conversation back to the bot (one at a time)."""
    return f"{PREFIX}:handoff:resuming:{conversation_id}"


def enqueue_guard(job_id: str) -> str:
    """Held for a moment while one process checks and enqueues a job with a fixed id."""
    return f"{PREFIX}:enqueue:{job_id}"


def zoho_addition_done(addition_id: str) -> str:
    """Set once a comment or file is in Zoho: the same addition queued again is not re-sent."""
    return f"{PREFIX}:zoho:addition_done:{addition_id}"


def chatwoot_drain_queued(conversation_id: str) -> str:
    """Marker: a drain job for this conversation's Chatwoot outbox is queued and not started."""
    return f"{PREFIX}:chatwoot:drain_queued:{conversation_id}"


def known_fix_deflections(month: str) -> str:
    """Hash of one UTC month (YYYY-MM): "total" and one field per article path, counting the
    known-fix suggestions that solved an incident without a ticket."""
    return f"{PREFIX}:known_fix:deflections:{month}"


# --- follow-ups (helpdesk.followups, workers.followup_jobs) -------------------------------
def followup_state(conversation_id: str) -> str:
    """Hash: the anchor (user's last message id) and the pending follow-up and close jobs."""
    return f"{PREFIX}:followup:{conversation_id}"


def followup_lock(conversation_id: str) -> str:
    """Held while one process reads and changes a conversation's follow-ups."""
    return f"{PREFIX}:followup:{conversation_id}:lock"


# --- Rasa's conversation history (helpdesk/trackers/) ---------------------------------------


def tracker_events(conversation_id: str) -> str:
    """List: a conversation's Rasa events, oldest first, one JSON object each (appended only)."""
    return f"{PREFIX}:tracker:events:{conversation_id}"


def tracker_meta(conversation_id: str) -> str:
    """Hash: where the current session starts in `tracker_events`, how many events retention
    removed from its head, the state after the last event, and a version bumped per save."""
    return f"{PREFIX}:tracker:meta:{conversation_id}"


def tracker_meta_pattern() -> str:
    return f"{PREFIX}:tracker:meta:*"


# --- metrics (helpdesk/metrics/) ------------------------------------------------------------
def metrics_histogram(name: str) -> str:
    """Hash: one shared histogram's bucket counts, sums and counts by label values, written
    by every process that observes it (helpdesk.metrics.shared), read at scrape time."""
    return f"{PREFIX}:metrics:histogram:{name}"


def chatwoot_drain_job(conversation_id: str) -> str:
    """The id of the latest drain job queued for this conversation's Chatwoot outbox."""
    return f"{PREFIX}:chatwoot:drain_job:{conversation_id}"
